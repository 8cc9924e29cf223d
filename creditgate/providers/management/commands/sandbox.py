"""Run the provider emulator on its own (the demo's far end when CREDITGATE_SANDBOX is on)."""

from __future__ import annotations

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from creditgate.providers.sandbox import SandboxServer
from creditgate.providers.sandbox.state import ERROR_KINDS, OUTAGE_KINDS, PROVIDERS


class Command(BaseCommand):
    help = "Run the local emulator of the OpenAI and Runware HTTP APIs."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765,
                            help="Default 8765, the port in the default CREDITGATE_SANDBOX_URL.")
        parser.add_argument("--latency-ms", type=int, default=0)
        parser.add_argument("--error-rate", type=float, default=0.0, help="0..1, per provider request.")
        parser.add_argument("--error-kind", choices=ERROR_KINDS, default="server_error")
        parser.add_argument("--api-key", default="sandbox", help="The only key the emulator accepts.")
        parser.add_argument("--outage", action="append", default=[], metavar="PROVIDER=KIND",
                            help=f"Every generation call to PROVIDER ({', '.join(PROVIDERS)}) fails with KIND "
                                 f"({', '.join(OUTAGE_KINDS)}); repeatable. Change it later with POST "
                                 '/_sandbox/config {"outages": {...}}.')
        parser.add_argument("--drop-model", action="append", default=[], metavar="MODEL",
                            help="The provider no longer offers MODEL: gone from its model list, refused when "
                                 "called; repeatable.")

    def handle(self, *args, **options):
        outages = dict(item.partition("=")[::2] for item in options["outage"])
        try:
            server = SandboxServer(host=options["host"], port=options["port"], latency_ms=options["latency_ms"],
                                   error_rate=options["error_rate"], error_kind=options["error_kind"],
                                   api_key=options["api_key"], outages=outages,
                                   dropped_models=options["drop_model"],
                                   # The secret this installation's web processes expect (a random one
                                   # with DEBUG off, where no sandboxed Stripe event is accepted).
                                   stripe_webhook_secret=settings.CREDITGATE_SANDBOX_STRIPE_WEBHOOK_SECRET or None)
        except (OSError, ValueError) as exc:
            raise CommandError(f"Could not start the sandbox: {exc}") from exc
        # The handlers before the line that says the sandbox is up: whoever reads that line may stop it at once.
        stopped = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopped.set())
        server.start()
        self.stdout.write(f"Provider sandbox on {server.url} (OpenAI at {server.url}/openai/v1, "
                          f"Runware at {server.url}/runware/v1); knobs: POST {server.url}/_sandbox/config. "
                          "Ctrl-C to stop.")
        stopped.wait()
        server.stop()
        self.stdout.write("Sandbox stopped.")
