from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.utils.http import parse_etags
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from creditgate.providers.ai_config import ai_config_snapshot_get

# Browsers and proxies may keep a copy but must ask again every time: a change in the admin shows
# on the very next request, and asking again is cheap (a 304 against the ETag).
_CACHE_CONTROL = "no-cache"


def _etag_matches(header: str, etag: str) -> bool:
    # Weak comparison (RFC 9110 13.1.2): a proxy may have weakened our strong ETag.
    candidates = parse_etags(header)
    return "*" in candidates or etag in (c.removeprefix("W/") for c in candidates)


class AIConfigApi(APIView):
    """Everything the page shows: the tiers that can be served now and their prices, the text
    model, the image style and the limits. Anyone may read it."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    # Component names of their own: every API's nested "OutputSerializer" would otherwise be "Output".
    @extend_schema_serializer(component_name="AIConfig")
    class OutputSerializer(serializers.Serializer):
        # Documents the shape for the OpenAPI schema; the body itself is prebuilt JSON.
        @extend_schema_serializer(component_name="AIConfigImageQuality")
        class ImageQualitySerializer(serializers.Serializer):
            tier = serializers.CharField()
            credits_per_image = serializers.IntegerField()
            # DRF's serializer metaclass pops declared fields off the class, so this never shadows
            # Field.label at run time; the stubs see a class attribute of another type.
            label = serializers.CharField()  # type: ignore[assignment]

        image_qualities = ImageQualitySerializer(many=True, help_text="Served tiers, cheapest first.")
        text_model = serializers.CharField(allow_null=True)
        image_style = serializers.CharField()
        max_images = serializers.IntegerField(help_text="Images per article (max_in_article_images).")
        max_images_per_request = serializers.IntegerField()
        tokens_per_credit = serializers.IntegerField(allow_null=True)

    def dispatch(self, request, *args, **kwargs):
        # The read path skips DRF's request wrapping, authentication, permissions and content
        # negotiation: it is public, has no input and answers prebuilt JSON, and it is the hottest
        # endpoint (every page load). Other methods go through DRF so a 405 or an OPTIONS answer
        # keeps the API's shape.
        if request.method in ("GET", "HEAD"):
            return self.get(request)
        return super().dispatch(request, *args, **kwargs)

    @extend_schema(responses={200: OutputSerializer, 304: OpenApiResponse(description="Not modified (If-None-Match).")})
    def get(self, request: HttpRequest) -> HttpResponse:
        snapshot = ai_config_snapshot_get()
        header = request.META.get("HTTP_IF_NONE_MATCH")  # not request.headers: it copies every header
        response: HttpResponse
        if header and _etag_matches(header, snapshot.etag):
            response = HttpResponseNotModified()
        else:
            body = b"" if request.method == "HEAD" else snapshot.body
            response = HttpResponse(body, content_type="application/json")
            if request.method == "HEAD":
                response["Content-Length"] = str(len(snapshot.body))
        response["ETag"] = snapshot.etag
        response["Cache-Control"] = _CACHE_CONTROL
        return response
