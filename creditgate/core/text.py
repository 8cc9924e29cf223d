"""Text a person must be able to see: a prompt, an API key's name.

After removing whitespace, control and format characters (Unicode's categories Cc, Cf, Zs, Zl, Zp:
spaces, line breaks, NUL and the other controls, zero-width spaces and joiners, the byte order
mark, bidirectional marks, tag characters...), something must be left. `"\u200b\u200b"` or
`"\ufeff"` is as blank as `"   "`.

The rule is a regular expression over the code points listed below, written out rather than with
Unicode property escapes (`\\p{Cf}`), which neither Python's `re` nor most OpenAPI tools
understand; test_text.py checks the list against the running Python's Unicode database. The
schema declares the same expression as the field's `pattern`, less the few format characters
beyond the Basic Multilingual Plane (tags, U+E0001...; musical and hieroglyph format controls):
drf-spectacular writes such a character as `\\U000e0001`, which no ECMAScript regex (JSON
Schema's dialect) reads. So the schema's pattern is the rule exactly for every text of BMP
characters; the server also refuses a text whose only "visible" characters are those.
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


def _class(ranges) -> str:
    # \uXXXX in the Basic Multilingual Plane: the same in Python's re and in ECMAScript; the
    # character itself above it (Python's re only).
    def char(code: int) -> str:
        return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)

    return "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges)


def _visible(ranges) -> str:
    """Any text without NUL that has at least one character outside `ranges`."""
    return rf"^[^\u0000]*[^{_class(ranges)}][^\u0000]*$"


VISIBLE_PATTERN = _visible(INVISIBLE_RANGES)  # the rule: the server's check
SCHEMA_PATTERN = _visible([r for r in INVISIBLE_RANGES if r[1] <= 0xFFFF])  # the schema's (see above)

_VISIBLE = re.compile(VISIBLE_PATTERN)


def has_visible_character(value) -> bool:
    return isinstance(value, str) and _VISIBLE.search(value) is not None


class VisibleTextValidator(RegexValidator):
    """Checks the whole rule; its `regex`, which drf-spectacular declares as the `pattern`, is the
    schema's part of it."""

    regex = SCHEMA_PATTERN
    message = "This field needs a visible character."

    def __call__(self, value):
        super().__call__(value)
        if not has_visible_character(value):
            super().__call__("")  # the same ValidationError, message and code


visible_text = VisibleTextValidator()
