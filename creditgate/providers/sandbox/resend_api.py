"""Emulation of Resend's send-email endpoint (`POST /resend/emails`), with its response and error
shapes, recording every email it accepted (`SandboxServer.requests("resend.emails")`).

Knob: `fail_next` (`POST /_sandbox/resend/fail_next {"n": 2}`): the next N sends answer Resend's
500, so a test sees the service retry. An `Idempotency-Key` seen before returns the first email's
id and records nothing, as Resend does.
"""

from __future__ import annotations

import threading
import uuid

from creditgate.providers.sandbox.state import SandboxState
from creditgate.providers.sandbox.wire import Call, Reply


class ResendSandbox:
    def __init__(self, state: SandboxState):
        self.state = state
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.fail_next = 0
            self.idempotent: dict[str, str] = {}

    def handle(self, call: Call, path: str) -> Reply | None:
        if call.method == "POST" and path == "/resend/emails":
            return self._send(call)
        if call.method == "POST" and path == "/_sandbox/resend/fail_next":
            try:
                n = int((call.json() or {}).get("n", 1))
            except (ValueError, TypeError, AttributeError):
                return Reply(400, {"error": "n must be a whole number"}, slow=False)
            with self.lock:
                self.fail_next = max(0, n)
            return Reply(200, {"fail_next": n}, slow=False)
        return None

    @staticmethod
    def _error(status: int, name: str, message: str) -> Reply:
        return Reply(status, {"statusCode": status, "name": name, "message": message})

    def _send(self, call: Call) -> Reply:
        if not call.bearer():
            return self._error(401, "missing_api_key", "Missing API key in the authorization header")
        if call.bearer() != self.state.knobs.api_key:
            return self._error(403, "invalid_api_key", "API key is invalid")
        try:
            body = call.json()
        except ValueError:
            return self._error(400, "invalid_parameter", "Invalid JSON body")
        if not isinstance(body, dict):
            return self._error(422, "validation_error", "The body must be an object")
        for field in ("from", "to", "subject"):
            if not body.get(field):
                return self._error(422, "missing_required_field", f"Missing `{field}` field.")
        if not (body.get("text") or body.get("html")):
            return self._error(422, "missing_required_field", "Missing `html` or `text` field.")
        with self.lock:
            if self.fail_next:
                self.fail_next -= 1
                return self._error(500, "application_error", "An unexpected error occurred.")
            key = call.headers.get("idempotency-key")
            if key and key in self.idempotent:
                return Reply(200, {"id": self.idempotent[key]})
            email_id = str(uuid.uuid4())
            if key:
                self.idempotent[key] = email_id
        self.state.record("resend.emails", {**body, "id": email_id})
        return Reply(200, {"id": email_id})
