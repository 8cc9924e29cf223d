"""core/text.py: the visible-character rule's list of code points is Unicode's, and its one
pattern (the server's check and the schema's `pattern`) agrees with it character by character."""

import re
import sys
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from creditgate.core import text

INVISIBLE_CATEGORIES = {"Cc", "Cf", "Zs", "Zl", "Zp"}


def test_the_invisible_ranges_are_exactly_unicodes_cc_cf_and_z_categories():
    listed = {code for first, last in text.INVISIBLE_RANGES for code in range(first, last + 1)}
    unicode_says = {code for code in range(sys.maxunicode + 1)
                    if unicodedata.category(chr(code)) in INVISIBLE_CATEGORIES}
    assert listed == unicode_says, f"Unicode {unicodedata.unidata_version}: update core/text.py INVISIBLE_RANGES"


def test_a_single_character_is_visible_exactly_when_unicode_says_so():
    """The rule everywhere; the schema's pattern everywhere in the Basic Multilingual Plane (and
    it admits nothing the rule refuses there)."""
    rule, schema = re.compile(text.VISIBLE_PATTERN), re.compile(text.SCHEMA_PATTERN)
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if 0xD800 <= code <= 0xDFFF:
            continue  # lone surrogates: not text (refused by DRF's CharField before the pattern)
        visible = unicodedata.category(char) not in INVISIBLE_CATEGORIES
        assert (rule.search(char) is not None) == visible, hex(code)
        if code <= 0xFFFF:
            assert (schema.search(char) is not None) == visible, hex(code)


def test_the_schemas_pattern_is_plain_ascii_for_ecmascript_engines():
    """drf-spectacular writes a pattern as ASCII (backslashreplace): it must be ASCII already."""
    assert text.SCHEMA_PATTERN.isascii()
    assert re.compile(text.visible_text.regex).pattern == text.SCHEMA_PATTERN  # what drf-spectacular reads


def test_the_validator_checks_the_whole_rule():
    from django.core.exceptions import ValidationError

    for invisible in ("\U000e0041\U000e0042", "\u200b\U0001d173", ""):
        try:
            text.visible_text(invisible)
        except ValidationError as exc:
            assert exc.messages == ["This field needs a visible character."]
        else:
            raise AssertionError(repr(invisible))
    text.visible_text("\U000e0041x")


@settings(max_examples=300)
@given(st.text())
def test_the_pattern_is_the_rule(value):
    stripped = "".join(c for c in value if unicodedata.category(c) not in INVISIBLE_CATEGORIES)
    assert text.has_visible_character(value) == (bool(stripped) and "\x00" not in value)
