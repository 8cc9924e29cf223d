"""`manage.py serve_metrics --bind HOST:PORT`: the Prometheus metrics of this host's processes on
an address of their own, without the web app and without a token.

For a host that runs only Celery workers (gunicorn's /metrics adds up the processes of its own
host: they share PROMETHEUS_MULTIPROC_DIR), or to keep metrics off the public port altogether.
Bind it to a private address.
"""

import os
import threading

from django.core.management.base import BaseCommand, CommandError
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server


class Command(BaseCommand):
    help = "Serve this host's Prometheus metrics (every process in PROMETHEUS_MULTIPROC_DIR) on HOST:PORT."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1:9100", help="HOST:PORT (default 127.0.0.1:9100)")

    def handle(self, *args, bind, **options):
        host, _, port = bind.rpartition(":")
        if not host or not port.isdigit():
            raise CommandError(f"--bind must look like 127.0.0.1:9100, not {bind!r}")
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = REGISTRY  # this process only: useful for nothing but a try-out
            self.stderr.write("PROMETHEUS_MULTIPROC_DIR is not set: only this process's metrics are served.")
        server, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
        self.stdout.write(f"Serving metrics on http://{bind}/metrics")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
