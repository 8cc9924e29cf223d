"""The web's ASGI handler (creditgate.asgi) loads Django's and the libraries' middleware with their
hooks on the event loop (core.middleware.ON_THE_LOOP): an API request costs no thread hop in them,
and a login, which changes the session and leaves a message, still saves both (those hooks go to a
thread when they will touch the database). settings.MIDDLEWARE keeps Django's names for its checks."""

import re

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model

from creditgate.core import middleware

pytestmark = pytest.mark.django_db(transaction=True)  # the handler's threads use connections of their own


@pytest.fixture
def hooks_in_threads(monkeypatch):
    """The middleware hooks run in a thread during the test, by name."""
    names: list[str] = []
    real = middleware.sync_to_async

    def counting(fn, *args, **kwargs):
        names.append(getattr(fn, "__qualname__", repr(fn)))
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(middleware, "sync_to_async", counting)
    return names


def serve(script):
    """`script(client)` against a new ASGI handler as the web server runs it (cookies kept)."""
    async def run():
        # Django types an ASGI app's receive and send more narrowly than httpx does.
        transport = httpx.ASGITransport(app=middleware.ASGIHandler())  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await script(client)

    return async_to_sync(run)()


def test_an_api_request_runs_every_middleware_hook_on_the_loop(hooks_in_threads):
    response = serve(lambda client: client.get("/api/v1/system/ai-config/"))
    assert response.status_code == 200  # a hook that touched the ORM on the loop would have failed it
    assert response.headers["X-Frame-Options"] == "DENY" and "Content-Security-Policy" in response.headers
    assert [name for name in hooks_in_threads if ".process_" in name] == []
    assert "django.middleware.security.SecurityMiddleware" in settings.MIDDLEWARE  # put back


def test_a_login_through_the_asgi_handler_saves_its_session_and_its_message(hooks_in_threads):
    get_user_model().objects.create_user(username="alice", password="pw-123456789")

    async def log_in(client):
        login_page = await client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text)
        assert token is not None, login_page.text
        login = await client.post("/accounts/login/", data={"login": "alice", "password": "pw-123456789", "next": "/",
                                                             "csrfmiddlewaretoken": token[1]})
        return login_page, login, await client.get("/")

    login_page, login, page = serve(log_in)
    assert login_page.status_code == 200
    assert login.status_code == 302 and login.headers["Location"] == "/", login.text
    assert "messages" in login.cookies  # "Successfully signed in", stored for the next page
    assert page.status_code == 200  # logged in: the session was saved
    assert {"SessionMiddleware.process_response", "MessageMiddleware.process_response"} <= set(hooks_in_threads)
