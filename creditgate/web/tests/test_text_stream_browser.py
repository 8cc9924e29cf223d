"""The page's Text generator streams: POST /v1/chat/completions with the session, its pieces
written into the page as they arrive, a Stop button while it streams, and the charge shown at the
end. Against uvicorn (stream_env: the stream needs an ASGI server) and the provider sandbox,
whose pacing knob makes a stream slow enough to watch and to stop.

Every wait is on the page's own state (Playwright's expect and wait_for_function), never a sleep.
"""

from __future__ import annotations

import json
import re

import pytest

from creditgate.core.tests.polling import wait_for
from creditgate.generation.models import Job, JobKind, JobStatus
from creditgate.web.tests.test_page_browser import account_balance, log_in, make_user, shown_available

pytestmark = pytest.mark.browser
expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect

# In the page: the output's text length while the job's line still says it is writing (else
# false), so an observation is of the text being written, never of the finished one.
WRITING_LENGTH = """n => {
    const out = document.getElementById('text-output');
    const writing = document.getElementById('text-job-summary').textContent === 'Writing…'
        && !document.getElementById('stop-text').hidden;
    const length = out.textContent.length;
    return writing && out.checkVisibility() && length > n ? length : false;
}"""


def write(page, prompt: str) -> None:
    page.get_by_label("What should it write?").fill(prompt)
    page.get_by_role("button", name="Write").click()


def chat_requests(page) -> list[dict]:
    """The bodies the page POSTs to /v1/chat/completions, as it sends them."""
    sent: list[dict] = []
    page.on("request", lambda r: sent.append(json.loads(r.post_data or "{}"))
            if r.method == "POST" and r.url.endswith("/v1/chat/completions") else None)
    return sent


def text_job(user) -> Job:
    return Job.objects.filter(user=user, kind=JobKind.TEXT).latest("created_at")


def test_the_text_is_written_as_it_streams_and_ends_with_what_it_cost(stream_env, page, sandbox):
    sandbox.configure(stream_tokens_per_second=60)  # a few seconds: time to see it grow
    user = make_user("sara", 50)
    log_in(page, stream_env, user)
    before = shown_available(page)
    sent = chat_requests(page)

    write(page, "Write about the lighthouse keeper and his three cats.")

    # Two observations of the text growing, both while it is still being written.
    first = page.wait_for_function(WRITING_LENGTH, arg=0).json_value()
    second = page.wait_for_function(WRITING_LENGTH, arg=first).json_value()
    assert 0 < first < second
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    assert page.locator("#text-output").get_attribute("aria-busy") == "true"

    summary = page.locator("#text-job-summary")
    expect(summary).to_have_text(re.compile(r"^Done: \d+ tokens?; charged \d+ credits?\.$"), timeout=30_000)
    found = re.fullmatch(r"Done: (\d+) tokens?; charged (\d+) credits?\.", summary.inner_text())
    assert found, summary.inner_text()
    tokens, charged = int(found.group(1)), int(found.group(2))

    job = text_job(user)
    assert job.status == JobStatus.SUCCEEDED and job.streamed
    assert charged == job.credits_charged > 0
    assert tokens == job.total_tokens
    final = page.locator("#text-output").text_content()
    assert final == job.text and len(final) > second
    expect(page.locator("#bal-available")).to_have_text(str(before - charged))
    assert account_balance(user)["available"] == before - charged
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    assert page.locator("#text-output").get_attribute("aria-busy") is None
    # Screen readers heard the end (the live region), not each piece.
    expect(page.locator("#status")).to_have_text(summary.inner_text())
    assert sent == [{"model": "default", "messages": [{"role": "user", "content":
                                                       "Write about the lighthouse keeper and his three cats."}],
                     "stream": True, "stream_options": {"include_usage": True}}]
    # The history names the job as any text job, with the prompt as typed.
    charge = page.locator("#ledger-rows tr", has_text="Charged for Text")
    expect(charge).to_have_count(1)
    assert "“Write about the lighthouse keeper and his three cats.”" in charge.inner_text()
    # And its page, as any text job's.
    charge.get_by_role("link", name="Text").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Text")
    expect(page.get_by_test_id("job-prompt")).to_have_text("Write about the lighthouse keeper and his three cats.")
    expect(page.get_by_test_id("job-charged")).to_have_text(f"{charged} credit" + ("" if charged == 1 else "s"))
    expect(page.get_by_label("Generated text")).to_have_text(job.text)


def test_stop_ends_the_stream_and_shows_what_was_charged(stream_env, page, sandbox):
    sandbox.configure(stream_tokens_per_second=10)  # far from its end when Stop is clicked
    user = make_user("stan", 50)
    log_in(page, stream_env, user)
    before = shown_available(page)

    write(page, "Write a long story about a lighthouse.")
    page.wait_for_function(WRITING_LENGTH, arg=10)  # some text on the page
    stop = page.get_by_role("button", name="Stop")
    stop.click()

    summary = page.locator("#text-job-summary")
    expect(summary).to_have_text(re.compile(r"^Stopped: charged \d+ credits? for \d+ tokens?\.$"), timeout=30_000)
    found = re.fullmatch(r"Stopped: charged (\d+) credits? for (\d+) tokens?\.", summary.inner_text())
    assert found, summary.inner_text()
    charged, tokens = int(found.group(1)), int(found.group(2))
    expect(stop).to_be_hidden()

    job = text_job(user)
    assert job.status == JobStatus.PARTIAL and job.error_code == "stream_stopped"
    assert charged == job.credits_charged > 0
    assert tokens == job.total_tokens
    # The provider was stopped too: it did not write the whole answer.
    record = wait_for(lambda: sandbox.state.streams and sandbox.state.streams[-1].outcome != "streaming"
                      and sandbox.state.streams[-1], what="the sandbox to see the stream end")
    assert record.outcome == "client_gone" and record.tokens_sent < record.completion_tokens
    assert page.locator("#text-output").text_content() == job.text  # all that was charged for
    expect(page.locator("#bal-available")).to_have_text(str(before - charged))
    assert account_balance(user)["available"] == before - charged
    expect(page.locator("#status")).to_have_text(summary.inner_text())
    expect(page.get_by_role("button", name="Write")).to_be_enabled()


def test_a_provider_failing_mid_stream_says_so_and_what_the_text_so_far_cost(stream_env, page, sandbox):
    sandbox.configure(stream_error_after_tokens=5)
    user = make_user("fred", 50)
    log_in(page, stream_env, user)
    before = shown_available(page)

    write(page, "Write about harbours.")

    summary = page.locator("#text-job-summary")
    expect(summary).to_have_text(re.compile(r"^Cut short: .+ Charged \d+ credits? for \d+ tokens?\.$"),
                                 timeout=30_000)
    job = text_job(user)
    assert job.status == JobStatus.PARTIAL
    assert summary.inner_text().endswith(f"Charged {job.credits_charged} credit"
                                         f"{'' if job.credits_charged == 1 else 's'} for {job.total_tokens} tokens.")
    assert job.credits_charged > 0
    assert page.locator("#text-output").text_content() == job.text != ""
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.locator("#bal-available")).to_have_text(str(before - job.credits_charged))


def test_a_refusal_before_any_text_shows_the_servers_message(stream_env, page):
    user = make_user("nora", 0)
    log_in(page, stream_env, user)

    write(page, "Write about lighthouses.")

    # The 402 in OpenAI's shape, its message the page's own shortfall sentence.
    expect(page.get_by_role("alert")).to_have_text(re.compile(r"^This needs \d+ credits?; you have 0\.$"))
    expect(page.locator("#text-job")).to_be_hidden()
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.get_by_role("button", name="Write")).to_be_enabled()
    assert not Job.objects.filter(user=user).exists()
