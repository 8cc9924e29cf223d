"""GET /api/v1/credits/usage/: what the user's account spent (an owner), or the user's own jobs (a
member), per day or per tier.

Credits only: what the providers cost is the operator's business, not the user's. Days are UTC.
"""

from __future__ import annotations

import datetime as dt

from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from creditgate.catalog.models import QualityTier
from creditgate.core import dates
from creditgate.core.schema import error_response
from creditgate.generation import selectors as generation_selectors

MAX_DAYS = 366
DEFAULT_DAYS = 30
DATE_FORMATS = ["%Y-%m-%d"]
USAGE_LABELS = {**dict(QualityTier.choices), generation_selectors.TEXT_USAGE: "Text"}


# An empty query value means the parameter's default (DRF reads query strings like a form), so the
# schema admits "" beside a date.
DATE_OR_EMPTY = {"oneOf": [{"type": "string", "format": "date"}, {"type": "string", "maxLength": 0}]}


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class UsageQuerySerializer(serializers.Serializer):
    # Days from 1970-01-01 to 9998-12-31 (core/dates.py): 9999-12-31 has no day after it to count to.
    to = serializers.DateField(required=False, input_formats=DATE_FORMATS, validators=[dates.day_in_range])
    group = serializers.ChoiceField(choices=["day", "tier"], default="day")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateField(required=False, input_formats=DATE_FORMATS,  # a keyword in Python
                                               validators=[dates.day_in_range])
        return fields

    def validate(self, data):
        end = data.get("to") or _today()
        start = data.get("from") or dates.days_before(end, DEFAULT_DAYS - 1)
        if start > end:
            raise serializers.ValidationError({"from": [f"Must be on or before to ({end.isoformat()})."]})
        if (end - start).days + 1 > MAX_DAYS:
            raise serializers.ValidationError({"from": [f"The range may span at most {MAX_DAYS} days."]})
        return {"start": start, "end": end, "group": data["group"]}


@extend_schema_serializer(component_name="UsageDay")
class UsageDaySerializer(serializers.Serializer):
    date = serializers.DateField()
    credits = serializers.IntegerField()
    by_tier = serializers.DictField(child=serializers.IntegerField(),
                                    help_text="Credits per usage key (a tier or text); every key of `labels`.")


@extend_schema_serializer(component_name="UsageTier")
class UsageTierSerializer(serializers.Serializer):
    tier = serializers.CharField(help_text="basic, quality, premium, or text.")
    # DRF's serializer metaclass pops declared fields off the class, so this never shadows
    # Field.label at run time; the stubs see a class attribute of another type.
    label = serializers.CharField()  # type: ignore[assignment]
    credits = serializers.IntegerField()


@extend_schema_serializer(component_name="Usage")
class UsageSerializer(serializers.Serializer):
    # "from" cannot be an attribute name; get_fields adds it as for the query.
    to = serializers.DateField()
    group = serializers.ChoiceField(choices=["day", "tier"])
    timezone = serializers.CharField(help_text="Days are counted in this time zone (always UTC).")
    total = serializers.IntegerField(help_text="Credits charged in the range.")
    labels = serializers.DictField(child=serializers.CharField(),
                                   help_text="A display name per usage key that has spending in the range.")
    rows = PolymorphicProxySerializer(
        component_name="UsageRow", serializers=[UsageDaySerializer, UsageTierSerializer],
        resource_type_field_name=None, many=True,
        help_text="group=day: every day of the range, oldest first (days without spending included); "
                  "group=tier: each tier with spending.")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateField()
        return fields


def _usage_body(*, start: dt.date, end: dt.date, group: str, usage: dict[tuple, int]) -> dict:
    keys = [key for key in USAGE_LABELS if any(k[-1] == key for k in usage)]
    if group == "day":
        rows = []
        for n in range((end - start).days + 1):
            day = start + dt.timedelta(days=n)
            by_tier = {key: usage.get((day, key), 0) for key in keys}
            rows.append({"date": day.isoformat(), "credits": sum(by_tier.values()), "by_tier": by_tier})
    else:
        rows = [{"tier": key, "label": USAGE_LABELS[key], "credits": usage[(key,)]} for key in keys]
    return {"from": start.isoformat(), "to": end.isoformat(), "group": group, "timezone": "UTC",
            "total": sum(usage.values()), "labels": {key: USAGE_LABELS[key] for key in keys}, "rows": rows}


class UsageApi(APIView):
    @extend_schema(
        summary="Credits your account spent (an owner) or your own jobs spent (a member), per day or per tier",
        parameters=[
            OpenApiParameter("from", DATE_OR_EMPTY, description=f"First day (UTC), YYYY-MM-DD. Default (also when "
                                                                f"empty): {DEFAULT_DAYS - 1} days before `to`."),
            OpenApiParameter("to", DATE_OR_EMPTY, description="Last day (UTC), included, YYYY-MM-DD. Default (also "
                                                              f"when empty): today. At most {MAX_DAYS} days from "
                                                              f"`from`. Both days from {dates.FIRST_DAY} to "
                                                              f"{dates.LAST_DAY}."),
            OpenApiParameter("group", {"type": "string", "enum": ["day", "tier", ""]}, default="day",
                             description="Rows per day or per tier (empty: day)."),
        ],
        responses={200: UsageSerializer,
                   400: error_response("invalid_request: a date that is not YYYY-MM-DD or outside "
                                       f"{dates.FIRST_DAY}..{dates.LAST_DAY}, `from` after `to`, a range over "
                                       f"{MAX_DAYS} days, or a group other than day or tier; details name the "
                                       "parameter."),
                   401: error_response("not_authenticated")})
    def get(self, request):
        query = UsageQuerySerializer(data=request.query_params)  # an empty value means the default
        query.is_valid(raise_exception=True)
        start, end, group = query.validated_data["start"], query.validated_data["end"], query.validated_data["group"]
        usage = generation_selectors.usage_visible(user=request.user, start=start, end=end, by_day=group == "day")
        # Plain data already (dates as text); UsageSerializer describes it for the schema.
        return Response(_usage_body(start=start, end=end, group=group, usage=usage))
