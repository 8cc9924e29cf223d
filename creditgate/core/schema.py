"""OpenAPI pieces every API shares (drf-spectacular)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema_serializer
from rest_framework import serializers


@extend_schema_serializer(component_name="Error")
class ErrorSerializer(serializers.Serializer):
    """The one error shape (core.exception_handler): {"error": {"code", "message", "details"}}."""

    class ErrorBody(serializers.Serializer):
        code = serializers.CharField(help_text="Machine-readable, snake_case, e.g. invalid_request.")
        message = serializers.CharField(help_text="A sentence for a person.")
        details = serializers.DictField(help_text="For invalid_request: {field: [messages]}.")

    error = ErrorBody()


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ErrorSerializer, description=description)
