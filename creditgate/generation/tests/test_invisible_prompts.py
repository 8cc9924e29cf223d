"""Issue 22, item 6: a prompt needs a visible character. Whitespace, control and format characters
(Unicode Cc, Cf, Z*) alone are as blank as an empty prompt: a 400 naming `prompt`, nothing held,
nothing charged, on every generation endpoint and the estimate."""

import pytest

from creditgate.generation.tests.conftest import START_CREDITS, balance, counts

pytestmark = pytest.mark.usefixtures("gen_env")

INVISIBLE = ["\u200b\u200b", "\ufeff", " \u200b\t\u2060\n", "\u00ad\u200e\u202e", "\u3000\u00a0", "\x7f\x85",
             "\U000e0001\U000e0041"]

ENDPOINTS = [
    ("/api/v1/images/generations/", {"tier": "basic", "count": 1}),
    ("/api/v1/text/generations/", {"max_tokens": 50}),
    ("/api/v1/articles/generations/", {"tier": "basic", "image_count": 1, "max_tokens": 50}),
    ("/api/v1/credits/estimate/", {"kind": "text", "max_tokens": 50}),
    ("/api/v1/credits/estimate/", {"kind": "article", "tier": "basic", "max_tokens": 50}),
]


@pytest.mark.parametrize("prompt", INVISIBLE, ids=[p.encode("unicode_escape").decode() for p in INVISIBLE])
@pytest.mark.parametrize(("path", "rest"), ENDPOINTS, ids=["images", "text", "article", "estimate-text",
                                                           "estimate-article"])
def test_an_invisible_prompt_is_a_400_naming_the_prompt_and_holds_nothing(api, user, sandbox, path, rest, prompt):
    before = counts()
    response = api.post(path, {"prompt": prompt, **rest}, format="json", HTTP_IDEMPOTENCY_KEY=f"inv-{path}")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and list(error["details"]) == ["prompt"]
    assert counts() == before
    assert balance(user) == {"balance": START_CREDITS, "held": 0, "available": START_CREDITS}
    assert sum(sandbox.stats.values()) == 0  # no provider was called


@pytest.mark.parametrize("prompt", ["\u200bfox\u200b", "\ufeffa", "狐", "🦊", "x\u00ad"])
def test_a_prompt_with_one_visible_character_is_accepted(api, prompt):
    response = api.post("/api/v1/credits/estimate/", {"kind": "text", "prompt": prompt, "max_tokens": 50},
                        format="json")
    assert response.status_code == 200, response.content
