"""The credits API: the requesting user's balance, ledger and price estimates. Every view acts
on the user's own account, so no id in a URL can reach another account's data."""

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from creditgate.core.pagination import LargePagesPagination
from creditgate.core.serializer_fields import StrictCharField, StrictIntegerField
from creditgate.credits import selectors, services
from creditgate.credits.models import LedgerEntry


class BalanceApi(APIView):
    @extend_schema_serializer(component_name="Balance")
    class OutputSerializer(serializers.Serializer):
        balance = serializers.IntegerField()
        held = serializers.IntegerField()
        available = serializers.IntegerField()

    @extend_schema(responses=OutputSerializer)
    def get(self, request):
        account = services.account_for_user(user=request.user)
        return Response(self.OutputSerializer(selectors.balance_get(account=account)).data)


class TransactionListApi(APIView):
    @extend_schema_serializer(component_name="LedgerEntry")
    class OutputSerializer(serializers.ModelSerializer):
        class Meta:
            model = LedgerEntry
            fields = ["id", "kind", "amount", "available_delta", "held_delta", "available_after", "held_after",
                      "balance_after", "reason", "reference", "rate", "created_at"]

        balance_after = serializers.SerializerMethodField()

        def get_balance_after(self, entry) -> int:
            return entry.available_after + entry.held_after

    pagination_class = LargePagesPagination  # read by drf-spectacular too: the schema declares the page

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request):
        """Your account's ledger, newest first, paginated."""
        account = services.account_for_user(user=request.user)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.ledger_list(account=account), request, view=self)
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)


class EstimateApi(APIView):
    @extend_schema_serializer(component_name="EstimateRequest")
    class InputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=["image", "text"])
        tier = StrictCharField(required=False)
        count = StrictIntegerField(required=False)
        prompt = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
        max_tokens = StrictIntegerField(required=False, allow_null=True)

        def validate(self, data):
            needed = ["tier", "count"] if data["kind"] == "image" else ["prompt"]
            missing = {name: ["This field is required."] for name in needed if name not in data}
            if missing:
                raise serializers.ValidationError(missing)
            return data

    @extend_schema_serializer(component_name="Estimate")
    class OutputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=["image", "text"])
        credits = serializers.IntegerField(required=False, help_text="kind=image: what the images cost.")
        tier = serializers.CharField(required=False)
        count = serializers.IntegerField(required=False)
        credits_per_image = serializers.IntegerField(required=False)
        credits_max = serializers.IntegerField(required=False, help_text="kind=text: the most the text can cost.")
        max_tokens = serializers.IntegerField(required=False)
        tokens_per_credit = serializers.IntegerField(required=False)

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if data["kind"] == "image":
            _, price = selectors.quote_images(tier=data["tier"], count=data["count"])
            return Response({"kind": "image", "credits": price.credits, "tier": data["tier"], "count": data["count"],
                             "credits_per_image": price.rate["credits_per_image"]})
        _, price, max_tokens = selectors.quote_text(prompt=data["prompt"], max_tokens=data.get("max_tokens"))
        return Response({"kind": "text", "credits_max": price.credits, "max_tokens": max_tokens,
                         "tokens_per_credit": price.rate["tokens_per_credit"]})
