"""JSON-strict serializer fields: DRF's defaults coerce "5" to 5 and 5 to "5"; an API that
charges money should take what the contract says and name the field otherwise."""

from rest_framework import serializers
from rest_framework.fields import empty

from creditgate.core.text import visible_text


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "A whole number is required."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    default_error_messages = {"invalid": "A string is required."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class VisibleTextField(StrictCharField):
    """Text with a visible character (core/text.py: not only whitespace, control or format
    characters) and at most `max_length` characters as sent, so the schema's maxLength and pattern
    mean what they say; returned without its surrounding whitespace."""

    def __init__(self, **kwargs):
        super().__init__(trim_whitespace=False, validators=[visible_text], **kwargs)

    def run_validation(self, data=empty):
        value = super().run_validation(data)
        return value.strip() if isinstance(value, str) else value
