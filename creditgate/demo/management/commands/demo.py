"""`manage.py demo`: everything a newcomer needs to try the page, then serve it."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from creditgate.credits import services as credits_services
from creditgate.demo import services

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-pass-123"
DEMO_CREDITS = 500
# Webhooks to this machine, so the demo's webhooks can be tried with a local receiver
# (`python3 -m http.server 9000` and an endpoint http://127.0.0.1:9000/). Loopback only, and only
# with DEBUG: a production service never sends to its own host.
DEMO_WEBHOOK_NETWORKS = ["127.0.0.0/8", "::1/128"]


def demo_settings(*, port: int) -> dict:
    """What the demo changes in the settings of its own process (it serves the page itself, with no
    reloader, so they hold for every request): the public URL follows the port unless
    CREDITGATE_PUBLIC_URL is set, and with DEBUG webhooks may go to loopback."""
    changes: dict = {}
    if not os.environ.get("CREDITGATE_PUBLIC_URL"):
        changes["CREDITGATE_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    if settings.DEBUG:
        networks = list(settings.CREDITGATE_WEBHOOK_ALLOWED_NETWORKS)
        changes["CREDITGATE_WEBHOOK_ALLOWED_NETWORKS"] = networks + [
            n for n in DEMO_WEBHOOK_NETWORKS if n not in networks]
    return changes


class Command(BaseCommand):
    help = ("Migrate (which seeds the catalog), ensure the demo user with credits, start the provider "
            "sandbox, print the URL and the login, and serve the page on 127.0.0.1.")

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="Port to serve the page on (default 8000).")
        parser.add_argument("--no-serve", action="store_true",
                            help="Set up the database and the demo user, print the login, and exit.")
        parser.add_argument("--credits", type=int, default=DEMO_CREDITS,
                            help="Credits granted to the demo account the first time (default %(default)s).")

    def handle(self, *args, port: int, no_serve: bool, credits: int, **options):
        for name, value in demo_settings(port=port).items():
            setattr(settings, name, value)
        call_command("migrate", interactive=False, verbosity=0)
        user, _ = services.demo_login_ensure(username=DEMO_USERNAME, password=DEMO_PASSWORD)
        granted_now, available = credits_services.credits_grant_first(user=user, amount=credits, reason="demo grant")

        sandbox_line = "off (CREDITGATE_SANDBOX is false: providers need real keys)"
        if settings.CREDITGATE_SANDBOX:
            sandbox_line = settings.CREDITGATE_SANDBOX_URL
            if not no_serve:
                sandbox_line = self._start_sandbox()

        url = f"http://127.0.0.1:{port}/"
        granted = f"granted {granted_now} credits now" if granted_now else "already granted earlier"
        self.stdout.write(self.style.SUCCESS("creditgate demo is ready."))
        self.stdout.write(f"  Open:      {url}")
        self.stdout.write(f"  Username:  {DEMO_USERNAME}")
        self.stdout.write(f"  Password:  {DEMO_PASSWORD}")
        self.stdout.write(f"  Credits:   {available} available ({granted})")
        self.stdout.write(f"  Sandbox:   {sandbox_line}")
        self.stdout.write(f"  Links:     {settings.CREDITGATE_PUBLIC_URL} (CREDITGATE_PUBLIC_URL: emails, webhooks)")
        webhooks = ("also to loopback (127.0.0.1, ::1): demo mode, DEBUG is on" if settings.DEBUG
                    else "public addresses only (DEBUG is off)")
        self.stdout.write(f"  Webhooks:  {webhooks}")
        self.stdout.write(f"  Admin:     {url}admin/ (create a login with: manage.py createsuperuser)")
        if no_serve:
            return
        self.stdout.write("")
        self._serve(port)

    def _serve(self, port: int) -> None:
        """The ASGI app under uvicorn, as production serves it (creditgate/server.py), in this
        process: waits are async here too, and the settings changed above hold. Static files come
        through WhiteNoise, from the apps' directories with DEBUG. No reloader: it would re-run this
        command in a child process and start a second sandbox."""
        import uvicorn

        from creditgate.asgi import application
        from creditgate.server import UVICORN_CONFIG

        # Django's logging as configured (uvicorn's lines through it); requests are logged by
        # django-structlog, so no access log of uvicorn's own.
        uvicorn.run(application, host="127.0.0.1", port=port, log_config=None, access_log=False, **UVICORN_CONFIG)

    def _start_sandbox(self) -> str:
        from creditgate.providers.sandbox.server import SandboxServer

        sandbox_port = urlsplit(settings.CREDITGATE_SANDBOX_URL).port or 80
        try:
            SandboxServer(port=sandbox_port,
                          stripe_webhook_secret=settings.CREDITGATE_SANDBOX_STRIPE_WEBHOOK_SECRET or None).start()
        except OSError as exc:
            # Most often `manage.py sandbox` is already running on that port; use it.
            self.stderr.write(self.style.WARNING(
                f"Could not start the sandbox on port {sandbox_port} ({exc}); "
                "assuming one is already running there."))
            return f"{settings.CREDITGATE_SANDBOX_URL} (already running)"
        return f"{settings.CREDITGATE_SANDBOX_URL} (started; emulates OpenAI and Runware)"
