"""The credits API: the requesting user's balance and ledger (the price estimate prices generation
requests: generation.apis). Every view acts on the user's own account, so no id in a URL can
reach another account's data; a member sees the account's balance (shared) and only their own
jobs' ledger lines."""

from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from creditgate.core.pagination import LargePagesPagination
from creditgate.credits import selectors, services
from creditgate.credits.models import LedgerEntry


@extend_schema_serializer(component_name="UserRef")
class UserRefSerializer(serializers.Serializer):
    """Who: a user of the account (declared for the schema; written as a plain dict)."""

    id = serializers.IntegerField()
    username = serializers.CharField()


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
                      "balance_after", "reason", "reference", "rate", "user", "created_at"]

        balance_after = serializers.SerializerMethodField()
        user = serializers.SerializerMethodField()

        def get_balance_after(self, entry) -> int:
            return entry.available_after + entry.held_after

        @extend_schema_field(UserRefSerializer(allow_null=True, help_text=(
            "Who ran the job the line belongs to; null for the account's own lines (grants, purchases, "
            "refunds, take-backs, adjustments).")))
        def get_user(self, entry) -> dict | None:
            return {"id": entry.job_user_id, "username": entry.job_username} if entry.job_user_id else None

    pagination_class = LargePagesPagination  # read by drf-spectacular too: the schema declares the page

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request):
        """Your account's ledger, newest first, paginated: an owner sees every line, with who ran each job;
        a member the lines of their own jobs and the account's own lines (grants, purchases, refunds)."""
        viewer = services.member_for_user(user=request.user)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.ledger_visible(viewer=viewer), request, view=self)
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)
