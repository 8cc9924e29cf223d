"""The emulator's request and reply, independent of the HTTP server that carries them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# A body sent in pieces as it is made (Server-Sent Events). The server calls it with `send`, which
# writes one piece and flushes it, and raises BrokenPipeError or ConnectionResetError once the
# client has hung up. It returns whether the body ended properly: False cuts the connection
# without the body's end, as a connection that drops mid-answer.
Stream = Callable[[Callable[[bytes], None]], bool]


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    raw: bytes = b""

    def json(self) -> Any:
        """The parsed body, or raises ValueError (the emulators answer that with a 400)."""
        return json.loads(self.raw.decode("utf-8")) if self.raw else None

    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        return value[7:].strip() if value.lower().startswith("bearer ") else None


@dataclass
class Reply:
    status: int
    body: Any = None             # JSON-able, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    hang: bool = False           # answer only after the "timeout" wait: the client has given up by then
    slow: bool = True            # subject to the latency knob (provider work, not control or files)
    stream: Stream | None = None  # the body, sent in pieces (chunked) instead of `body`

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes | bytearray):
            return bytes(self.body)
        return json.dumps(self.body).encode() if self.body is not None else b""
