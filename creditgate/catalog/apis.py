from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from creditgate.catalog import services


class AIConfigApi(APIView):
    """Everything the page shows: servable tiers and their prices, the text model, limits."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request):
        return Response(services.ai_config_build())
