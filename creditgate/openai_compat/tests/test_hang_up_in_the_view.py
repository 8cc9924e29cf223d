"""A caller who hangs up while the view's thread still runs (Django cancels the async view): the
thread runs to its end all the same, and what it took for the wait that will never come (a wait
slot, a waiter) is given back, so the account's share of waits is whole again."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from rest_framework.response import Response

from creditgate.generation import apis as generation_apis
from creditgate.generation import waiting
from creditgate.openai_compat import apis


class _View:
    """A view whose thread blocks until the test lets it go on, then takes a wait slot and a waiter,
    as the chat view does."""

    cls = object
    initkwargs: dict = {}

    def __init__(self, account_id: int):
        self.account_id = account_id
        self.entered, self.go_on = threading.Event(), threading.Event()

    def __call__(self, request, *args, **kwargs):
        self.entered.set()
        assert self.go_on.wait(10)  # the caller hangs up meanwhile: the view goes on all the same
        slot = waiting.wait_slot_take(account_id=self.account_id)
        waiter = waiting.Waiter(uuid.uuid4())
        generation_apis.wait_noted(request, waiter=waiter, slot=slot)  # as the chat view notes them
        response = Response()
        response.v1 = ("chat", "job", True, slot, waiter, ())  # type: ignore[attr-defined]  # as the chat view does
        return response


@pytest.mark.django_db
def test_a_hang_up_during_the_chat_views_thread_gives_its_wait_slot_back(settings):
    settings.CREDITGATE_ACCOUNT_WAITS = 1  # one wait: a leaked slot would refuse the next one
    view = _View(account_id=424242)
    handled = []

    async def handler(request, pending):
        handled.append(pending)
        return Response()

    chat = apis._async_view(view, handler)

    class _Request:  # Django's request, which the DRF view sees as its `_request`
        @property
        def _request(self):
            return self

    async def scenario():
        task = asyncio.ensure_future(chat(_Request()))
        await asyncio.to_thread(view.entered.wait, 10)
        task.cancel()  # the caller hangs up while the thread is in the view
        await asyncio.sleep(0)
        view.go_on.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())

    assert handled == []  # nothing answers a caller who left
    waiting.wait_slot_take(account_id=424242).release()  # the slot came back: not TooManyWaits
    assert not waiting._waiters  # and no waiter is left registered
