"""The page through Django's test client: who may see it, and that it carries no catalog data
(every tier, price, limit and model name must reach the browser through the API)."""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.utils import timezone

from creditgate.catalog.models import AIModelConfig, GlobalIntegrationSettings, ImageTier, QualityTier


class _VisibleText(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _VisibleText()
    parser.feed(html)
    return " ".join(parser.parts)


def catalog_words() -> set[str]:
    """Every model name, display name and tier label the catalog holds right now."""
    words = set()
    for model in AIModelConfig.objects.all():
        words |= {model.model_name, model.display_name}
    words |= {label for _, label in QualityTier.choices}
    return words


@pytest.fixture
def logged_in(client, db):
    user = get_user_model().objects.create_user(username="alice", password="pw-123456789")
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_anonymous_user_is_sent_to_the_login_page(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


@pytest.mark.django_db
def test_login_page_has_labelled_fields_and_logs_in(client):
    get_user_model().objects.create_user(username="alice", password="pw-123456789")
    page = client.get("/accounts/login/?next=/")
    html = page.content.decode()
    assert page.status_code == 200
    assert '<label for="id_login">' in html and '<label for="id_password">' in html

    response = client.post("/accounts/login/", {"login": "alice", "password": "pw-123456789", "next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


@pytest.mark.django_db
def test_wrong_password_shows_an_error_and_stays_logged_out(client):
    get_user_model().objects.create_user(username="alice", password="pw-123456789")
    response = client.post("/accounts/login/", {"login": "alice", "password": "nope", "next": "/"})
    assert response.status_code == 200
    assert "you specified are not correct" in response.content.decode()  # django-allauth's words
    assert client.get("/").status_code == 302


def test_page_names_no_model_price_tier_or_limit(logged_in):
    assert AIModelConfig.objects.exists(), "the seeded catalog is what this test compares against"
    response = logged_in.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    text = visible_text(html)

    for word in catalog_words():
        assert word not in html, f"{word!r} is written into the page"
    # No number at all in what a user reads: prices, counts and limits only come from the API.
    assert not re.search(r"\d", text), f"a number is written into the page: {text!r}"
    prices = set(ImageTier.objects.values_list("credits_per_image", flat=True))
    limit = GlobalIntegrationSettings.objects.get().max_images_per_request
    for number in prices | {limit}:
        assert not re.search(rf"\b{number}\b", text), f"{number} (a price or the limit) is in the page"
    assert not re.search(r"<option[^>]*>", html), "the count options must come from the API"


def test_page_sets_the_csrf_cookie_its_script_sends(logged_in):
    response = logged_in.get("/")
    assert "csrftoken" in response.cookies


def test_page_has_the_accessibility_landmarks(logged_in):
    html = logged_in.get("/").content.decode()
    assert re.search(r'<fieldset id="tiers"[^>]*>\s*<legend>', html)
    assert 'aria-live="polite"' in html
    assert 'role="alert"' in html
    for field_id in ("count", "image-prompt", "text-prompt"):
        assert f'<label for="{field_id}">' in html
    assert 'name="viewport"' in html


@pytest.mark.django_db
def test_static_script_and_styles_name_no_model_or_tier():
    for asset in ("web/app.js", "web/app.css"):
        path = finders.find(asset)
        assert path, f"{asset} is not found by the static files finders"
        source = Path(path).read_text(encoding="utf-8")
        for word in catalog_words():
            assert not re.search(rf"\b{re.escape(word)}\b", source), f"{word!r} is written into {asset}"
        for tier in QualityTier.values:
            assert not re.search(rf"\b{tier}\b", source), f"tier {tier!r} is written into {asset}"


def _job_of(user, **fields):
    from creditgate.credits import services as credits_services
    from creditgate.generation.models import Job

    return Job.objects.create(account=credits_services.account_for_user(user=user), user=user, prompt="a fox",
                              idempotency_key=f"k-{user.pk}", request_fingerprint="f", **fields)


def test_a_job_page_shows_what_was_asked_and_charged(logged_in):
    user = get_user_model().objects.get(username="alice")
    job = _job_of(user, kind="image", tier="premium", image_count=3, status="partial", credits_held=45,
                  credits_charged=30, finished_at=timezone.now())
    html = logged_in.get(f"/jobs/{job.pk}/").content.decode()
    assert "<h1 id=\"job-title\">3 Premium images</h1>" in html
    assert "a fox" in html and "30 credits" in html and "0 of 3 delivered" in html


def test_another_accounts_job_page_is_a_404_and_anonymous_is_sent_to_log_in(logged_in, client):
    other = get_user_model().objects.create_user(username="bob")
    job = _job_of(other, kind="text")
    assert logged_in.get(f"/jobs/{job.pk}/").status_code == 404
    logged_in.logout()
    response = logged_in.get(f"/jobs/{job.pk}/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_favicon_ico_points_at_the_static_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"].startswith("/static/web/favicon") and response["Location"].endswith(".ico")
    assert finders.find("web/favicon.ico")
    assert "max-age=86400" in response["Cache-Control"]
