"""The webhooks API: owners register endpoints (the signing secret is shown once) and send test
events; every member of the account sees the endpoints and every delivery with its attempts."""

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from creditgate.core.pagination import LargePagesPagination
from creditgate.core.schema import error_response
from creditgate.core.serializer_fields import StrictCharField
from creditgate.credits import services as credits_services
from creditgate.credits.team_apis import FORBIDDEN, INVALID, TeamApi
from creditgate.webhooks import selectors, services
from creditgate.webhooks.models import DeliveryStatus, EventType

NOT_FOUND = error_response("not_found: no such endpoint or delivery in this account.")
# What webhooks.egress checks first, declared (the schema's pattern): an http(s) URL naming a host.
URL_SHAPE = RegexValidator(r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\s]+", message="Enter a valid http(s) URL.")
UUID_SHAPE = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"


class DeliveryQuerySerializer(serializers.Serializer):
    endpoint = serializers.RegexField(UUID_SHAPE, required=False, help_text="Only this endpoint's deliveries.")
    job = serializers.RegexField(UUID_SHAPE, required=False, help_text="Only this job's deliveries.")


@extend_schema_serializer(component_name="WebhookEndpoint")
class EndpointSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="Name it in a generation request's Webhook-Endpoint header.")
    url = serializers.URLField()
    description = serializers.CharField(allow_blank=True)
    all_jobs = serializers.BooleanField(help_text="true: hears of every job of the account; false: only of the "
                                                  "jobs whose request names it.")
    is_active = serializers.BooleanField()
    created_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="WebhookEndpointCreated")
class EndpointCreatedSerializer(EndpointSerializer):
    secret = serializers.CharField(help_text="The signing secret (whsec_…). Shown this once.")


@extend_schema_serializer(component_name="WebhookAttempt")
class AttemptSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField()
    status_code = serializers.IntegerField(allow_null=True, help_text="null: no answer (refused, unreachable, "
                                                                      "timed out).")
    ok = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True)
    response_excerpt = serializers.CharField(allow_blank=True, help_text="The start of the endpoint's answer.")


@extend_schema_serializer(component_name="WebhookDelivery")
class DeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event_id = serializers.CharField(help_text="The webhook-id header: the same on every attempt.")
    event_type = serializers.ChoiceField(choices=EventType.choices)
    endpoint = serializers.UUIDField(source="endpoint_id")
    job = serializers.UUIDField(source="job_id", allow_null=True)
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField(allow_blank=True)


@extend_schema_serializer(component_name="WebhookDeliveryDetail")
class DeliveryDetailSerializer(DeliverySerializer):
    attempt_log = AttemptSerializer(many=True, help_text="Every attempt, oldest first.")


class _WebhooksApi(TeamApi):
    def account(self, request):
        return credits_services.account_for_user(user=request.user)


class EndpointListApi(_WebhooksApi):
    @extend_schema_serializer(component_name="WebhookEndpointCreate")
    class InputSerializer(serializers.Serializer):
        url = StrictCharField(max_length=2000, validators=[URL_SHAPE],
                              help_text="http(s); its host must resolve to public addresses only.")
        description = StrictCharField(required=False, allow_blank=True, max_length=200)
        all_jobs = serializers.BooleanField(required=False, default=True)

    @extend_schema(responses=EndpointSerializer(many=True))
    def get(self, request):
        return Response(EndpointSerializer(selectors.endpoints_list(account=self.account(request)), many=True).data)

    @extend_schema(request=InputSerializer, responses={201: EndpointCreatedSerializer, 400: INVALID,
                                                       403: FORBIDDEN})
    def post(self, request):
        """Register an endpoint (owners). The answer holds its signing secret, shown this once."""
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint, secret = services.endpoint_create(actor=request.user, **serializer.validated_data)
        return Response({**EndpointSerializer(endpoint).data, "secret": secret}, status=status.HTTP_201_CREATED)


class EndpointDetailApi(_WebhooksApi):
    @extend_schema_serializer(component_name="WebhookEndpointUpdate")
    class InputSerializer(serializers.Serializer):
        url = StrictCharField(required=False, max_length=2000, validators=[URL_SHAPE])
        description = StrictCharField(required=False, allow_blank=True, max_length=200)
        all_jobs = serializers.BooleanField(required=False)
        is_active = serializers.BooleanField(required=False)

    @extend_schema(responses={200: EndpointSerializer, 404: NOT_FOUND})
    def get(self, request, endpoint_id):
        return Response(EndpointSerializer(selectors.endpoint_get(account=self.account(request),
                                                                  endpoint_id=endpoint_id)).data)

    @extend_schema(request=InputSerializer, responses={200: EndpointSerializer, 400: INVALID, 403: FORBIDDEN,
                                                       404: NOT_FOUND})
    def patch(self, request, endpoint_id):
        endpoint = selectors.endpoint_get(account=self.account(request), endpoint_id=endpoint_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = services.endpoint_update(actor=request.user, endpoint=endpoint, **serializer.validated_data)
        return Response(EndpointSerializer(endpoint).data)

    @extend_schema(responses={204: None, 403: FORBIDDEN, 404: NOT_FOUND})
    def delete(self, request, endpoint_id):
        """Remove the endpoint and its delivery log (owners)."""
        endpoint = selectors.endpoint_get(account=self.account(request), endpoint_id=endpoint_id)
        services.endpoint_delete(actor=request.user, endpoint=endpoint)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointTestApi(_WebhooksApi):
    @extend_schema(request=None, responses={202: DeliverySerializer, 403: FORBIDDEN, 404: NOT_FOUND})
    def post(self, request, endpoint_id):
        """Send a signed webhook.test event to the endpoint (owners); follow it in the deliveries."""
        endpoint = selectors.endpoint_get(account=self.account(request), endpoint_id=endpoint_id)
        delivery = services.test_event_send(actor=request.user, endpoint=endpoint)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class DeliveryListApi(_WebhooksApi):
    pagination_class = LargePagesPagination  # read by drf-spectacular too: the schema declares the page

    @extend_schema(parameters=[DeliveryQuerySerializer], responses={200: DeliverySerializer(many=True), 400: INVALID})
    def get(self, request):
        """The account's deliveries, newest first, paginated."""
        query = DeliveryQuerySerializer(data=request.query_params.dict())  # ?job= is invalid, not absent
        query.is_valid(raise_exception=True)
        deliveries = selectors.deliveries_list(account=self.account(request),
                                               endpoint_id=query.validated_data.get("endpoint"),
                                               job_id=query.validated_data.get("job"))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(deliveries, request, view=self)
        return paginator.get_paginated_response(DeliverySerializer(page, many=True).data)


class DeliveryDetailApi(_WebhooksApi):
    @extend_schema(responses={200: DeliveryDetailSerializer, 404: NOT_FOUND})
    def get(self, request, delivery_id):
        """One delivery with every attempt: when, how long, the endpoint's status and answer, or the error."""
        delivery = selectors.delivery_get(account=self.account(request), delivery_id=delivery_id)
        return Response(DeliveryDetailSerializer(delivery).data)
