"""Billing's API: the packs for sale, starting a checkout and reading it back, the low-balance
email setting, the shortfall owed, and Stripe's webhook. Every user view acts on the requesting
user's own account."""

from django.core.validators import RegexValidator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from creditgate.billing import selectors, services
from creditgate.billing.models import CheckoutStatus, EventOutcome
from creditgate.core.schema import error_response
from creditgate.core.serializer_fields import StrictCharField, StrictIntegerField
from creditgate.credits import services as credits_services

# The address's shape, declared in the schema as a pattern (a plain dot-atom address: what Django's
# EmailValidator, which also runs, accepts less quoted local parts, IP literals and IDN domains).
EMAIL_SHAPE = RegexValidator(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$",
    message="Enter a valid email address.")


@extend_schema_serializer(component_name="CreditPack")
class PackSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    credits = serializers.IntegerField(min_value=1)
    amount = serializers.IntegerField(source="price_amount", min_value=1,
                                      help_text="The price in the currency's smallest unit (cents for USD).")
    currency = serializers.CharField(help_text="ISO 4217, lower case.")
    price = serializers.CharField(source="price_display", help_text='For people, e.g. "5.00 USD".')


@extend_schema_serializer(component_name="Checkout")
class CheckoutSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=CheckoutStatus.choices,
                                     help_text="open: waiting for payment; paid: its credits were added; "
                                               "expired or failed: nothing was paid.")
    url = serializers.URLField(help_text="Stripe's payment page: send the user there.")
    pack = serializers.IntegerField(source="pack_id")
    credits = serializers.IntegerField()
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    price = serializers.CharField(source="amount_display")
    created_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)


class PackListApi(APIView):
    @extend_schema(responses={200: PackSerializer(many=True)},
                   description="The credit packs for sale (empty while payments cannot be taken).")
    def get(self, request):
        return Response(PackSerializer(selectors.packs_for_sale(), many=True).data)


class CheckoutApi(APIView):
    @extend_schema_serializer(component_name="CheckoutRequest")
    class InputSerializer(serializers.Serializer):
        pack = StrictIntegerField(help_text="The id of a pack from GET /api/v1/credits/packs/.")

    @extend_schema(request=InputSerializer, responses={
        201: CheckoutSerializer,
        400: error_response("invalid_request: no such pack for sale (`details.pack`)."),
        503: error_response("payments_unavailable: Stripe cannot be used right now; nothing was charged."),
    }, description="Start buying a pack: a Stripe Checkout Session. Credits are added when Stripe confirms the "
                   "payment (its webhook), never by the return to the page.")
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        checkout = services.checkout_create(user=request.user, pack_id=serializer.validated_data["pack"],
                                            site_url=request.build_absolute_uri("/"))
        return Response(CheckoutSerializer(checkout).data, status=status.HTTP_201_CREATED)


class CheckoutDetailApi(APIView):
    @extend_schema(responses={200: CheckoutSerializer, 404: error_response("not_found: no such checkout of yours.")})
    def get(self, request, checkout_id):
        return Response(CheckoutSerializer(selectors.checkout_get(user=request.user, checkout_id=checkout_id)).data)


class LowBalanceAlertApi(APIView):
    @extend_schema_serializer(component_name="LowBalanceAlertRequest")
    class InputSerializer(serializers.Serializer):
        threshold = StrictIntegerField(allow_null=True, min_value=1, max_value=10**12,
                                       help_text="Email when a charge leaves fewer available credits than this; "
                                                 "null switches the email off.")
        email = StrictCharField(required=False, allow_blank=True, max_length=254, validators=[EMAIL_SHAPE],
                                help_text="Where to send it; default: your profile's address.")

        def validate_email(self, value):
            return serializers.EmailField().run_validation(value) if value else value

    @extend_schema_serializer(component_name="LowBalanceAlert")
    class OutputSerializer(serializers.Serializer):
        threshold = serializers.IntegerField(allow_null=True)
        email = serializers.CharField(allow_blank=True, help_text="Where it goes: your profile's address until "
                                                                  "you set another.")
        armed = serializers.BooleanField(help_text="false while below the threshold after an email (or since it "
                                                   "was set): the next email waits for a top-up to the threshold.")

    @extend_schema(responses={200: OutputSerializer})
    def get(self, request):
        return Response(self.OutputSerializer(selectors.low_balance_alert_get(user=request.user)).data)

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer, 400: error_response(
        "invalid_request: a bad threshold or email, or no email anywhere (`details` names the field).")})
    def put(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        services.low_balance_alert_set(user=request.user, threshold=data["threshold"], email=data.get("email"))
        return Response(self.OutputSerializer(selectors.low_balance_alert_get(user=request.user)).data)


class ShortfallApi(APIView):
    @extend_schema_serializer(component_name="Shortfall")
    class OutputSerializer(serializers.Serializer):
        shortfall = serializers.IntegerField(
            min_value=0, help_text="Credits a refund or dispute took back after they were spent. While above 0, new "
                                   "work is refused (402 shortfall_owed); the next purchase pays it first.")

    @extend_schema(responses={200: OutputSerializer})
    def get(self, request):
        account = credits_services.account_for_user(user=request.user)
        return Response({"shortfall": selectors.shortfall_get(account=account)})


class StripeWebhookApi(APIView):
    """Stripe's events, authenticated by their signature (no session, no token, no CSRF)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema_serializer(component_name="WebhookReceived")
    class OutputSerializer(serializers.Serializer):
        received = serializers.BooleanField()
        event = serializers.CharField()
        type = serializers.CharField()
        outcome = serializers.ChoiceField(choices=EventOutcome.choices)
        duplicate = serializers.BooleanField(help_text="This event was delivered before: nothing was done again.")

    @extend_schema(
        request={"application/json": OpenApiTypes.OBJECT},
        parameters=[OpenApiParameter(
            "Stripe-Signature", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True,
            description="t=<unix time>,v1=<HMAC-SHA256 of `t.body` under the signing secret>")],
        responses={200: OutputSerializer,
                   400: error_response("invalid_signature: no, a wrong or a stale Stripe-Signature; nothing written."),
                   503: error_response("payments_unavailable: Stripe is not configured here.")},
        auth=[], description="Stripe's webhook endpoint. Every event that passes the signature check answers 200 "
                             "(Stripe stops retrying); one that could not be honoured is recorded and reported.")
    def post(self, request):
        result = services.stripe_webhook_handle(payload=request.body, signature=request.headers.get("Stripe-Signature"))
        return Response({"received": True, "event": result.event_id, "type": result.type, "outcome": result.outcome,
                         "duplicate": result.duplicate})
