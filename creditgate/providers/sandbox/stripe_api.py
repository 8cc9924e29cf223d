"""Emulation of the parts of Stripe that creditgate uses, for the official `stripe` SDK:

- `POST /stripe/v1/checkout/sessions` (form-encoded, as the SDK sends it) and
  `GET /stripe/v1/checkout/sessions/{id}`, with Stripe's object and error shapes, the bearer key
  check and Idempotency-Key replay;
- a hosted checkout page, `GET /stripe/pay/{id}`, with a Pay button a real browser can press
  (`POST /stripe/pay/{id}`, which answers with a redirect to the session's success URL);
- events signed as Stripe signs them (`Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
  "t.body" under the signing secret>`) POSTed to the service's webhook URL: the session completed,
  a charge refunded, a dispute opened or closed, a session expired.

Delivery knobs (`POST /_sandbox/stripe/config`, or `SandboxServer.stripe.configure`): `copies`
(each event delivered that many times at once, from as many threads), `hold` (keep events queued
until `POST /_sandbox/stripe/deliver {"order": "sent"|"reversed"}`, which is how a test reorders
them), `delay_ms` (deliver in the background that much later: the user's browser is back before
the webhook), `timestamp_offset_s` (sign with an older timestamp: a replay), `webhook_secret` (what
events are signed with; by default the one the sandbox was started with: the installation's
generated secret, settings.CREDITGATE_SANDBOX_STRIPE_WEBHOOK_SECRET, or a random one; never shown back),
`webhook_url` (default: the session's success URL's origin + /api/v1/webhooks/stripe/), and
`fail_creates` (the next N session creations answer Stripe's 500). Actions a test or the demo can
take like a user or Stripe would: `POST /_sandbox/stripe/pay {"session", "payment_status"?,
"amount_total"?, "currency"?}`, `/refund {"payment_intent", "amount"}`, `/dispute
{"payment_intent", "amount"}`, `/dispute_close {"dispute", "status": "won"|"lost"}`, `/expire {"session"}`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import html
import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass, fields
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from creditgate.providers.sandbox.state import SandboxState
from creditgate.providers.sandbox.wire import Call, Reply

WEBHOOK_PATH = "/api/v1/webhooks/stripe/"
API_VERSION = "2025-10-29.clover"
SESSION_TTL_S = 24 * 3600


@dataclass
class StripeKnobs:
    webhook_url: str = ""               # default: the success URL's origin + WEBHOOK_PATH
    webhook_secret: str = ""            # default: the StripeSandbox's own (never a constant)
    copies: int = 1
    hold: bool = False
    delay_ms: int = 0
    timestamp_offset_s: int = 0
    fail_creates: int = 0

    def validated(self) -> StripeKnobs:
        self.copies, self.delay_ms = int(self.copies), int(self.delay_ms)
        self.timestamp_offset_s, self.fail_creates = int(self.timestamp_offset_s), int(self.fail_creates)
        self.hold = bool(self.hold)
        if self.copies < 1 or self.delay_ms < 0 or self.fail_creates < 0:
            raise ValueError("copies must be at least 1; delay_ms and fail_creates not negative")
        return self


def sign(payload: str, secret: str, timestamp: int) -> str:
    """Stripe's webhook signature header for `payload` (Stripe's scheme, written out here rather
    than taken from the SDK, so the service's SDK check meets an independent implementation)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def parse_form(raw: bytes) -> dict:
    """Stripe's form encoding (`line_items[0][price_data][currency]=usd`) back into nested JSON."""
    root: dict = {}
    for key, value in parse_qsl(raw.decode("utf-8"), keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node):
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_lists(node[k]) for k in sorted(node, key=int)]
        return {k: _lists(v) for k, v in node.items()}
    return node


def _id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


class StripeSandbox:
    def __init__(self, state: SandboxState, *, webhook_secret: str | None = None):
        self.state = state
        # What it signs with unless a test sets another: given by whoever started it (the web
        # process must know it), else made up now, so that no constant secret signs anything.
        self.webhook_secret = webhook_secret or "whsec_" + secrets.token_hex(24)
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "lock", threading.Lock()):
            self.knobs = StripeKnobs(webhook_secret=self.webhook_secret)
            self.sessions: dict[str, dict] = {}
            self.idempotent: dict[str, str] = {}
            self.charges: dict[str, dict] = {}  # by payment intent
            self.disputes: dict[str, dict] = {}  # by id
            self.held: list[tuple[dict, str]] = []
            self.threads: list[threading.Thread] = []

    def configure(self, **changes: Any) -> StripeKnobs:
        names = {f.name for f in fields(StripeKnobs)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown Stripe knob(s): {', '.join(sorted(unknown))}")
        with self.lock:
            self.knobs = StripeKnobs(**{**asdict(self.knobs), **changes}).validated()
            return self.knobs

    # --- HTTP ---------------------------------------------------------------------------------

    def handle(self, call: Call, path: str, *, base_url: str) -> Reply | None:
        if call.method == "POST" and path == "/stripe/v1/checkout/sessions":
            return self._create(call, base_url=base_url)
        if path.startswith("/stripe/v1/checkout/sessions/") and call.method == "GET":
            return self._retrieve(call, path.rsplit("/", 1)[1])
        if path.startswith("/stripe/pay/"):
            session_id = path.rsplit("/", 1)[1]
            if call.method == "GET":
                return self._page(session_id)
            return self._pay_from_page(session_id)
        if path.startswith("/_sandbox/stripe/") and call.method == "POST":
            return self._control(path.rsplit("/", 1)[1], call)
        if path == "/_sandbox/stripe/sessions" and call.method == "GET":
            return Reply(200, {"sessions": list(self.sessions.values())}, slow=False)
        return None

    def _error(self, status: int, message: str, *, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> Reply:
        body = {"error": {"type": type_, "message": message, **({"param": param} if param else {}),
                          **({"code": code} if code else {})}}
        return Reply(status, body, headers={"Request-Id": f"req_{secrets.token_hex(7)}"})

    def _authorized(self, call: Call) -> Reply | None:
        key = call.bearer() or ""
        if key != self.state.knobs.api_key:
            shown = f"{key[:7]}{'*' * 8}{key[-4:]}" if len(key) > 12 else "***"
            return self._error(401, f"Invalid API Key provided: {shown}")
        return None

    def _create(self, call: Call, *, base_url: str) -> Reply:
        try:
            params = parse_form(call.raw)
        except (ValueError, UnicodeDecodeError):
            return self._error(400, "Invalid request body.")
        self.state.record("stripe.checkout.sessions.create", params)
        refused = self._authorized(call)
        if refused:
            return refused
        with self.lock:
            if self.knobs.fail_creates:
                self.knobs.fail_creates -= 1
                return self._error(500, "An unknown error occurred", type_="api_error")
            key = call.headers.get("idempotency-key")
            if key and key in self.idempotent:
                return Reply(200, self.sessions[self.idempotent[key]])
        items = params.get("line_items") or []
        if params.get("mode") != "payment" or not items:
            return self._error(400, "Missing required param: line_items.", param="line_items")
        try:
            price = items[0]["price_data"]
            amount = int(price["unit_amount"]) * int(items[0].get("quantity", 1))
            currency = price["currency"].lower()
            name = price["product_data"]["name"]
        except (KeyError, TypeError, ValueError):
            return self._error(400, "Invalid line_items[0][price_data].", param="line_items[0][price_data]")
        for required in ("success_url", "cancel_url"):
            if not params.get(required):
                return self._error(400, f"Missing required param: {required}.", param=required)
        session_id = _id("cs")
        now = int(time.time())
        session = {
            "id": session_id, "object": "checkout.session", "mode": "payment", "status": "open",
            "payment_status": "unpaid", "amount_total": amount, "amount_subtotal": amount, "currency": currency,
            "client_reference_id": params.get("client_reference_id"), "customer_email": params.get("customer_email"),
            "metadata": params.get("metadata") or {}, "success_url": params["success_url"],
            "cancel_url": params["cancel_url"], "payment_intent": None, "created": now,
            "expires_at": now + SESSION_TTL_S, "livemode": False, "url": f"{base_url}/stripe/pay/{session_id}",
            "line_items_preview": {"name": name, "description": (items[0]["price_data"]["product_data"]
                                                                 .get("description") or "")},
            "payment_intent_metadata": ((params.get("payment_intent_data") or {}).get("metadata") or {}),
        }
        with self.lock:
            self.sessions[session_id] = session
            if key:
                self.idempotent[key] = session_id
        return Reply(200, self._public(session))

    @staticmethod
    def _public(session: dict) -> dict:
        return {k: v for k, v in session.items() if k not in ("line_items_preview", "payment_intent_metadata")}

    def _retrieve(self, call: Call, session_id: str) -> Reply:
        refused = self._authorized(call)
        if refused:
            return refused
        session = self.sessions.get(session_id)
        if session is None:
            return self._error(404, f"No such checkout.session: '{session_id}'", param="session",
                               code="resource_missing")
        return Reply(200, self._public(session))

    def _page(self, session_id: str) -> Reply:
        session = self.sessions.get(session_id)
        if session is None:
            return Reply(404, b"<h1>No such checkout</h1>", content_type="text/html; charset=utf-8", slow=False)
        item = session["line_items_preview"]
        amount = session["amount_total"]
        price = f"{amount / 100:.2f} {session['currency'].upper()}"
        done = session["status"] != "open"
        page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Sandbox checkout</title>
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#1f2328}}
.card{{border:1px solid #d0d7de;border-radius:8px;padding:1.5rem}}button{{font-size:1rem;padding:.6rem 1.4rem;
background:#635bff;color:#fff;border:0;border-radius:6px;cursor:pointer}}.muted{{color:#57606a}}</style></head>
<body><div class="card"><p class="muted">Stripe sandbox (no real payment)</p>
<h1>{html.escape(item["name"])}</h1><p>{html.escape(item["description"])}</p>
<p>Total: <strong data-testid="checkout-total">{html.escape(price)}</strong></p>
{"<p>This checkout is " + html.escape(session["status"]) + ".</p>" if done else
 f'<form method="post" action="/stripe/pay/{html.escape(session_id)}">'
 f'<button type="submit">Pay {html.escape(price)}</button></form>'}
<p><a href="{html.escape(session["cancel_url"])}">Cancel and go back</a></p></div></body></html>"""
        return Reply(200, page.encode(), content_type="text/html; charset=utf-8", slow=False)

    def _pay_from_page(self, session_id: str) -> Reply:
        try:
            session = self.pay(session_id)
        except ValueError as exc:
            return Reply(409, str(exc).encode(), content_type="text/plain; charset=utf-8", slow=False)
        return Reply(303, b"", headers={"Location": session["success_url"]}, content_type="text/plain", slow=False)

    def _control(self, action: str, call: Call) -> Reply:
        try:
            body = call.json() or {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            if action == "config":
                knobs = asdict(self.configure(**body))
                return Reply(200, {"knobs": {**knobs, "webhook_secret": "(set)"}}, slow=False)
            if action == "pay":
                session = self.pay(str(body.get("session", "")), payment_status=body.get("payment_status", "paid"),
                                   amount_total=body.get("amount_total"), currency=body.get("currency"))
                return Reply(200, self._public(session), slow=False)
            if action == "refund":
                return Reply(200, self.refund(str(body.get("payment_intent", "")), int(body["amount"])), slow=False)
            if action == "dispute":
                return Reply(200, self.dispute(str(body.get("payment_intent", "")), int(body["amount"])), slow=False)
            if action == "dispute_close":
                return Reply(200, self.close_dispute(str(body.get("dispute", "")), str(body.get("status", ""))),
                             slow=False)
            if action == "expire":
                return Reply(200, self._public(self.expire(str(body.get("session", "")))), slow=False)
            if action == "deliver":
                return Reply(200, {"delivered": self.deliver_held(order=body.get("order", "sent"))}, slow=False)
        except (ValueError, TypeError, KeyError) as exc:
            return Reply(400, {"error": str(exc)}, slow=False)
        return Reply(404, {"error": f"No Stripe control route {action}"}, slow=False)

    # --- What a user or Stripe does ------------------------------------------------------------

    def pay(self, session_id: str, *, payment_status: str = "paid", amount_total: int | None = None,
            currency: str | None = None) -> dict:
        """The user pays on the checkout page: the session completes and its event goes out.
        `payment_status`, `amount_total`, `currency` let a test send what a misbehaving far end would."""
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None:
                raise ValueError(f"no such session {session_id!r}")
            if session["status"] != "open":
                raise ValueError(f"the session is {session['status']}")
            intent = _id("pi")
            session.update(status="complete", payment_status=payment_status, payment_intent=intent)
            charge = {"id": _id("ch"), "object": "charge", "amount": session["amount_total"], "amount_refunded": 0,
                      "currency": session["currency"], "payment_intent": intent, "refunded": False,
                      "metadata": session["payment_intent_metadata"], "disputed": False}
            self.charges[intent] = charge
            sent = dict(self._public(session))
        if amount_total is not None:
            sent["amount_total"] = amount_total
        if currency is not None:
            sent["currency"] = currency
        self.emit("checkout.session.completed", sent)
        return session

    def refund(self, payment_intent: str, amount: int) -> dict:
        with self.lock:
            charge = self.charges.get(payment_intent)
            if charge is None:
                raise ValueError(f"no charge for payment intent {payment_intent!r}")
            if amount < 1 or charge["amount_refunded"] + amount > charge["amount"]:
                raise ValueError("the refund exceeds what is left of the charge")
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] == charge["amount"]
            sent = dict(charge)
        self.emit("charge.refunded", sent)
        return sent

    def dispute(self, payment_intent: str, amount: int) -> dict:
        with self.lock:
            charge = self.charges.get(payment_intent)
            if charge is None:
                raise ValueError(f"no charge for payment intent {payment_intent!r}")
            charge["disputed"] = True
            dispute = {"id": _id("dp"), "object": "dispute", "amount": amount, "currency": charge["currency"],
                       "charge": charge["id"], "payment_intent": payment_intent, "status": "needs_response",
                       "reason": "fraudulent"}
            self.disputes[dispute["id"]] = dispute
        self.emit("charge.dispute.created", dispute)
        return dispute

    def close_dispute(self, dispute_id: str, status: str) -> dict:
        """The card network decides: `won` (the merchant keeps the money) or `lost`."""
        if status not in ("won", "lost", "warning_closed"):
            raise ValueError('status must be "won", "lost" or "warning_closed"')
        with self.lock:
            dispute = self.disputes.get(dispute_id)
            if dispute is None or dispute["status"] in ("won", "lost", "warning_closed"):
                raise ValueError(f"no open dispute {dispute_id!r}")
            dispute["status"] = status
            sent = dict(dispute)
        self.emit("charge.dispute.closed", sent)
        return sent

    def expire(self, session_id: str) -> dict:
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None or session["status"] != "open":
                raise ValueError(f"no open session {session_id!r}")
            session["status"] = "expired"
            sent = self._public(session)
        self.emit("checkout.session.expired", sent)
        return session

    # --- Events --------------------------------------------------------------------------------

    def emit(self, event_type: str, obj: dict) -> dict:
        event = {"id": _id("evt"), "object": "event", "api_version": API_VERSION, "created": int(time.time()),
                 "type": event_type, "livemode": False, "pending_webhooks": 1,
                 "request": {"id": None, "idempotency_key": None}, "data": {"object": obj}}
        url = self._webhook_url(obj)
        with self.lock:
            hold, delay = self.knobs.hold, self.knobs.delay_ms
            if hold:
                self.held.append((event, url))
                return event
        if delay:
            thread = threading.Thread(target=self._deliver_later, args=(event, url, delay), daemon=True)
            with self.lock:
                self.threads.append(thread)
            thread.start()
        else:
            self._deliver(event, url)
        return event

    def _webhook_url(self, obj: dict) -> str:
        if self.knobs.webhook_url:
            return self.knobs.webhook_url
        origin = None
        for session in self.sessions.values():
            if session["id"] == obj.get("id") or session["payment_intent"] == obj.get("payment_intent"):
                origin = session["success_url"]
        parts = urlsplit(origin or "")
        return f"{parts.scheme}://{parts.netloc}{WEBHOOK_PATH}" if parts.netloc else ""

    def _deliver_later(self, event: dict, url: str, delay_ms: int) -> None:
        time.sleep(delay_ms / 1000)
        self._deliver(event, url)

    def signed(self, event: dict) -> tuple[bytes, str]:
        """The body and Stripe-Signature header this sandbox would send for `event` now."""
        payload = json.dumps(event)
        timestamp = int(time.time()) - self.knobs.timestamp_offset_s
        return payload.encode(), sign(payload, self.knobs.webhook_secret, timestamp)

    def _deliver(self, event: dict, url: str) -> None:
        """POST the event `copies` times at once (one thread each), recording each answer."""
        body, signature = self.signed(event)
        copies = self.knobs.copies
        start = threading.Barrier(copies)

        def post() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                start.wait(timeout=5)
            try:
                response = requests.post(url, data=body, timeout=30, headers={
                    "Content-Type": "application/json; charset=utf-8", "Stripe-Signature": signature,
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"})
                status, answer = response.status_code, response.text[:500]
            except requests.RequestException as exc:
                status, answer = 0, f"{type(exc).__name__}: {exc}"
            self.state.record("stripe.webhooks", {"event": event["id"], "type": event["type"], "url": url,
                                                  "status": status, "answer": answer})

        threads = [threading.Thread(target=post, daemon=True) for _ in range(copies)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    def deliver_held(self, *, order: str = "sent") -> int:
        """Send the events kept by the `hold` knob, in the order sent or reversed."""
        if order not in ("sent", "reversed"):
            raise ValueError('order must be "sent" or "reversed"')
        with self.lock:
            held, self.held = self.held, []
        for event, url in (reversed(held) if order == "reversed" else held):
            self._deliver(event, url)
        return len(held)

    def take_held(self) -> list[dict]:
        """Remove and return the held events (a test then delivers them itself, signed by `signed`)."""
        with self.lock:
            held, self.held = self.held, []
        return [event for event, _ in held]

    def wait_deliveries(self, timeout: float = 30.0) -> None:
        """Block until delayed deliveries have gone out (tests)."""
        with self.lock:
            threads, self.threads = self.threads, []
        for thread in threads:
            thread.join(timeout=timeout)
