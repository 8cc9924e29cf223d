"""The ASGI application: what the web serves (gunicorn with uvicorn workers in production, uvicorn
in `manage.py demo`; creditgate/server.py)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditgate.settings")
django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application() does, then its handler:

from creditgate.core.middleware import ASGIHandler  # noqa: E402  # needs the apps loaded

# Django's, with its middleware hooks on the event loop (core.middleware says why).
application = ASGIHandler()
