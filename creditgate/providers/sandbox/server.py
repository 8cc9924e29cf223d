"""The provider emulator as a real HTTP server on a loopback port: OpenAI and Runware, and for
buying credits Stripe (stripe_api.py) and Resend (resend_api.py).

The real clients (the openai SDK over HTTPX2, our Runware client over requests) talk to it
unchanged; only the base URL differs. Knobs can be set in-process (`SandboxServer.configure`,
`fail_next`) or over HTTP (`POST /_sandbox/config`, `POST /_sandbox/fail_next`,
`POST /_sandbox/reset`, `GET /_sandbox/stats`) so a test or a demo in another process can steer it.

Chat completions with `"stream": true` answer as OpenAI streams (Server-Sent Events, chunked),
one chunk per token; the stream_* knobs pace, cut or break them, and each stream leaves a record
(`SandboxServer.streams()`, the "streams" of `GET /_sandbox/stats`) of what reached the client.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from creditgate.providers.sandbox import openai_api, runware_api
from creditgate.providers.sandbox.render import render_png
from creditgate.providers.sandbox.resend_api import ResendSandbox
from creditgate.providers.sandbox.state import Knobs, SandboxState
from creditgate.providers.sandbox.stripe_api import StripeSandbox
from creditgate.providers.sandbox.wire import Call, Reply

logger = logging.getLogger("creditgate.providers.sandbox")


class _Emulator(Protocol):
    def __call__(self, state: SandboxState, call: Call, *, base_url: str) -> Reply: ...


# Provider endpoints: path -> (the route their answers are logged under, the emulator).
PROVIDER_ROUTES: dict[str, tuple[str, _Emulator]] = {
    "/openai/v1/chat/completions": ("openai.chat.completions",
                                    lambda state, call, base_url: openai_api.chat_completions(state, call)),
    "/openai/v1/images/generations": ("openai.images.generations", openai_api.images_generations),
    "/runware/v1": ("runware", runware_api.handle),
}
IMAGE_PATH = re.compile(r"^/(openai|runware)/images/([0-9a-fA-F-]{8,64})\.png$")


class SandboxServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, stripe_webhook_secret: str | None = None,
                 **knobs: Any):
        """`stripe_webhook_secret`: what Stripe's events are signed with, the secret the service's
        webhook checks (settings.CREDITGATE_SANDBOX_STRIPE_WEBHOOK_SECRET); default: a random one."""
        unknown = set(knobs) - Knobs.names()
        if unknown:
            raise ValueError(f"unknown knob(s): {', '.join(sorted(unknown))}")
        self.state = SandboxState(initial=Knobs(**knobs))
        # Its own knobs: SandboxServer.stripe.configure(...)
        self.stripe = StripeSandbox(self.state, webhook_secret=stripe_webhook_secret)
        self.resend = ResendSandbox(self.state)
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.sandbox = self
        self._thread: threading.Thread | None = None

    # Lifecycle.

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="provider-sandbox", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self.state.release.set()  # let hanging "timeout" requests finish
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._httpd.socket.getsockname()[:2]  # = server_address, whose stub allows a bytes host
        return f"http://{host}:{port}"

    # Knobs and observations.

    @property
    def knobs(self) -> Knobs:
        return self.state.knobs

    def configure(self, **knobs: Any) -> Knobs:
        return self.state.configure(**knobs)

    def fail_next(self, n: int, kind: str, *, provider: str | None = None, after: int = 0) -> None:
        """The next `n` generation requests (to `provider` only, when given) fail with `kind`,
        once `after` more have gone through, whatever error_rate says."""
        self.state.fail_next(n, kind, provider=provider, after=after)

    def reset(self) -> None:
        self.state.reset()
        self.stripe.reset()
        self.resend.reset()

    @property
    def stats(self) -> dict[str, int]:
        """Requests seen per route, e.g. {"openai.images.generations": 8, "runware.imageInference": 1}."""
        return self.state.stats()

    def requests(self, route: str) -> list:
        """The JSON bodies (or Runware tasks) last received on a route, oldest first."""
        return self.state.recorded(route)

    def answers(self, route: str) -> list[dict]:
        """What each request on a provider route was answered, oldest first: {"status", "request_id"}
        (OpenAI's x-request-id; Runware's request ids are the taskUUIDs in `requests`)."""
        return self.state.answered(route)

    def streams(self) -> list[dict]:
        """One record per streamed chat completion, oldest first: {"request_id", "model",
        "prompt_tokens", "completion_tokens" (the whole answer's), "tokens_sent" (content chunks
        written without error), "outcome"}; outcome is "streaming" while it runs, then "completed",
        "client_gone" (a write failed: the client hung up, and the stream stopped), "dropped"
        (stream_drop_after_tokens) or "error" (stream_error_after_tokens). Also in GET /_sandbox/stats."""
        return self.state.stream_records()

    def wait_for_streams(self, count: int = 1, *, timeout: float = 10.0) -> list[dict]:
        """`streams()` once at least `count` streams have ended (TimeoutError after `timeout` s)."""
        return self.state.wait_for_streams(count, timeout=timeout)

    def last_request(self, route: str) -> Any:
        bodies = self.requests(route)
        return bodies[-1] if bodies else None

    # Routing.

    def dispatch(self, call: Call) -> Reply:
        path = call.path.split("?", 1)[0].rstrip("/") or "/"
        base = self.url
        if path.startswith(("/stripe/", "/_sandbox/stripe/")):
            reply = self.stripe.handle(call, path, base_url=base)
            if reply is not None:
                return reply
        if path.startswith(("/resend/", "/_sandbox/resend/")):
            reply = self.resend.handle(call, path)
            if reply is not None:
                return reply
        if call.method == "POST":
            if path in PROVIDER_ROUTES:
                route, handler = PROVIDER_ROUTES[path]
                reply = handler(self.state, call, base_url=base)
                self.state.record_answer(route, reply.status, reply.headers.get("x-request-id"))
                return reply
            if path.startswith("/_sandbox/"):
                return self._control(path, call)
        if call.method == "GET":
            if path == "/openai/v1/models":
                return openai_api.models_list(self.state, call)
            if path == "/_sandbox/stats":
                return Reply(200, {"counts": self.stats, "knobs": vars(self.knobs), "streams": self.streams(),
                                   "requests": {route: self.requests(route) for route in self.state.bodies},
                                   "answers": {route: self.answers(route) for route in self.state.answers}},
                             slow=False)
            match = IMAGE_PATH.match(path)
            if match:
                return self._image(match[1], match[2])
        return Reply(404, {"error": {"message": f"No route {call.method} {path}", "type": "invalid_request_error",
                                     "param": None, "code": "not_found"}}, slow=False)

    def _image(self, provider: str, image_id: str) -> Reply:
        self.state.record(f"{provider}.image_file")
        spec = self.state.image(image_id)
        if spec is None:
            return Reply(404, b"Not Found", content_type="text/plain", slow=False)
        png = render_png(prompt=spec.prompt, model=spec.model, width=spec.width, height=spec.height, seed=spec.seed)
        return Reply(200, png, content_type="image/png", slow=False)

    def _control(self, path: str, call: Call) -> Reply:
        try:
            body = call.json() or {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            if path == "/_sandbox/config":
                knobs = self.configure(**body)
            elif path == "/_sandbox/fail_next":
                self.fail_next(int(body.get("n", 1)), str(body.get("kind", "")), provider=body.get("provider"),
                               after=int(body.get("after", 0)))
                knobs = self.knobs
            elif path == "/_sandbox/reset":
                self.reset()
                knobs = self.knobs
            else:
                return Reply(404, {"error": f"No control route {path}"}, slow=False)
        except (ValueError, TypeError) as exc:
            return Reply(400, {"error": str(exc)}, slow=False)
        return Reply(200, {"knobs": vars(knobs)}, slow=False)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # fan-outs and benchmarks open many connections at once
    sandbox: SandboxServer


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, as the real APIs; every reply carries Content-Length, but a stream's (chunked).
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        call = Call(method=method, path=self.path, headers={k.lower(): v for k, v in self.headers.items()}, raw=raw)
        sandbox = self.server.sandbox
        try:
            reply = sandbox.dispatch(call)
        except Exception:  # an emulator bug must look like a provider 500, not a hung client
            logger.exception("sandbox: %s %s failed", method, self.path)
            reply = Reply(500, {"error": {"message": "Sandbox internal error.", "type": "server_error",
                                          "param": None, "code": None}})
        if reply.slow and sandbox.knobs.latency_ms:
            time.sleep(sandbox.knobs.latency_ms / 1000)
        if reply.hang:
            sandbox.state.hang()
        if reply.stream is not None:
            self._stream(reply)
            return
        payload = reply.encoded()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a "timeout"): exactly what was being emulated

    def _stream(self, reply: Reply) -> None:
        """A streamed reply in HTTP/1.1 chunked framing, each piece written and flushed on its own
        (wfile is unbuffered), so the client reads it as it comes. A reply whose body did not end
        properly loses its connection without the last chunk, which a client sees as a dropped
        connection; a client that hung up is noticed at the next write, and the stream stops."""
        assert reply.stream is not None
        self.close_connection = True  # a stream that ended early leaves nothing to reuse

        def send(piece: bytes) -> None:
            self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            self.wfile.flush()

        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            ended = reply.stream(send)
            if ended:
                self.wfile.write(b"0\r\n\r\n")
                self.close_connection = False
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up (the emulator's stream has recorded it)

    def log_message(self, format: str, *args) -> None:
        logger.debug("sandbox: %s", format % args)

