"""Text a person must be able to see: a prompt, an API key's name.

After removing whitespace, control and format characters (Unicode's categories Cc, Cf, Zs, Zl, Zp:
spaces, line breaks, NUL and the other controls, zero-width spaces and joiners, the byte order
mark, bidirectional marks...), something must be left. `"\u200b\u200b"` or `"\ufeff"` is as blank
as `"   "`.

One regular expression says it, for the server's check and for the schema's `pattern` alike, so
the schema accepts exactly what the server does. It is written with the code points listed below
rather than Unicode property escapes (`\\p{Cf}`), which neither Python's `re` nor most OpenAPI
tools understand; test_text.py checks the list against the running Python's Unicode database.
"""

from __future__ import annotations

import re

from django.core.validators import RegexValidator

# Every code point of the categories Cc, Cf, Zs, Zl and Zp (Unicode 14.0, Python 3.11), as ranges.
INVISIBLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x0020), (0x007F, 0x00A0), (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C),
    (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2), (0x1680, 0x1680),
    (0x180E, 0x180E), (0x2000, 0x200F), (0x2028, 0x202F), (0x205F, 0x2064), (0x2066, 0x206F),
    (0x3000, 0x3000), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD),
    (0x13430, 0x13438), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)


def _char(code: int) -> str:
    # \uXXXX in the Basic Multilingual Plane (the same in Python's re and in ECMAScript's regular
    # expressions, which JSON Schema's `pattern` uses); the character itself above it.
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)


INVISIBLE_CLASS = "".join(_char(a) if a == b else f"{_char(a)}-{_char(b)}" for a, b in INVISIBLE_RANGES)

# Any text without NUL that has at least one character outside those categories.
VISIBLE_PATTERN = rf"^[^\u0000]*[^{INVISIBLE_CLASS}][^\u0000]*$"

_VISIBLE = re.compile(VISIBLE_PATTERN)
visible_text = RegexValidator(_VISIBLE, message="This field needs a visible character.")


def has_visible_character(value) -> bool:
    return isinstance(value, str) and _VISIBLE.search(value) is not None
