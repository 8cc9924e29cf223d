"""The ASGI application: what the web serves (gunicorn with uvicorn workers in production, uvicorn
in `manage.py demo`; creditgate/server.py)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditgate.settings")
django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application() does, then its handler:

from creditgate.core.middleware import ASGIHandler  # noqa: E402  # needs the apps loaded
from creditgate.providers.base import loop_clients_close  # noqa: E402

# Django's, with its middleware hooks on the event loop (core.middleware says why).
django_application = ASGIHandler()


async def application(scope, receive, send):
    """Django's handler, and the ASGI lifespan, which Django does not answer: at the server's
    shutdown, the provider clients built on its loop (a streamed run's) are closed before the
    loop ends, so none is collected unclosed (aiohttp logs each such session as an error)."""
    if scope["type"] != "lifespan":
        return await django_application(scope, receive, send)
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await loop_clients_close()
            await send({"type": "lifespan.shutdown.complete"})
            return
