"""The ASGI application: what the web serves (gunicorn with uvicorn workers in production, uvicorn
in `manage.py demo`; creditgate/server.py)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditgate.settings")
application = get_asgi_application()
