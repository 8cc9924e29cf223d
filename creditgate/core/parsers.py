"""The API's JSON parser: DRF's, with a bound on nesting.

Python's `json` recurses once per level, so a 2 KB body of `[` nested 1,000 deep overflows the
interpreter's recursion limit (a RecursionError, a 500) before any serializer sees it; a body just
under that depth parses, and then every recursive walk over it (serializers, renderers, logging)
risks the same. No request of this API nests deeper than a few levels, so a body nested deeper than
`MAX_DEPTH` is refused as an invalid request before it is parsed.

Hand-written, not a library: the standard `json` module has no depth option, and orjson's fixed
limit (1,024) is above Python's own. The check is one regex pass in C over the body's strings and
brackets, and is skipped altogether when the body does not even hold `MAX_DEPTH` brackets.
"""

from __future__ import annotations

import codecs
import re

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json

from creditgate.core.errors import InvalidRequest

MAX_DEPTH = 32

# A JSON string (unrolled, so it runs in linear time even when unterminated), or one bracket.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def json_depth_exceeds(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether `text` opens more than `limit` arrays/objects inside one another (brackets inside
    strings do not count)."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for token in _TOKEN.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


class BoundedJSONParser(JSONParser):
    """DRF's JSONParser (same media type, same strictness about NaN), refusing deep nesting."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        if json_depth_exceeds(text):
            raise InvalidRequest(f"The request body nests arrays or objects deeper than {MAX_DEPTH} levels.",
                                 details={"max_depth": MAX_DEPTH})
        parse_constant = json.strict_constant if self.strict else None
        try:
            return json.loads(text, parse_constant=parse_constant)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
