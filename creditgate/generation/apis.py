"""Generation endpoints: validate the shape, call one service, return the job (202)."""

from collections.abc import Callable

from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from creditgate.core.schema import error_response
from creditgate.core.serializer_fields import StrictCharField, StrictIntegerField
from creditgate.credits.authentication import request_api_key
from creditgate.generation import selectors, services, waiting
from creditgate.generation.models import FINAL_STATUSES, Job, JobImage

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
    description="Same key and body: the same job, charged once. Same key, other body: 409.")
WEBHOOK_HEADER = OpenApiParameter(
    "Webhook-Endpoint", {"type": "string", "format": "uuid"}, OpenApiParameter.HEADER, required=False,
    description="The id of one of the account's active webhook endpoints: it receives a signed job.finished event "
                "when the job is final (besides the endpoints that receive every job). Unknown: 400, nothing held.")

PREFER_HEADER = OpenApiParameter(
    "Prefer", str, OpenApiParameter.HEADER, required=False,
    description=f"`wait=N` (RFC 7240): answer once the job is final, 200 with the final job, or after N seconds "
                f"(at most {waiting.MAX_WAIT_SECONDS}), 202 with the job as it is then. Answered with "
                f"`Preference-Applied: wait=N` (N as capped).")
WAIT_PARAM = OpenApiParameter(
    "wait", {"type": "integer", "minimum": 0}, OpenApiParameter.QUERY, required=False,
    description=f"Long poll: answer once the job is final or after this many seconds (at most "
                f"{waiting.MAX_WAIT_SECONDS}; larger values are capped). 0 or absent: at once.")


@extend_schema_serializer(component_name="Job")
class JobOutputSerializer(serializers.Serializer):
    # A plain Serializer, not a ModelSerializer: it is on every POST's path to the 202, and
    # ModelSerializer introspects the model on every instantiation.
    id = serializers.UUIDField()
    kind = serializers.CharField()
    status = serializers.CharField()
    prompt = serializers.CharField()
    tier = serializers.SerializerMethodField()
    count = serializers.SerializerMethodField()
    max_tokens = serializers.IntegerField(allow_null=True)
    credits_held = serializers.IntegerField()
    credits_charged = serializers.IntegerField()
    images_requested = serializers.IntegerField(source="image_count")
    images_delivered = serializers.SerializerMethodField()
    images = serializers.SerializerMethodField()
    text = serializers.SerializerMethodField()
    tokens = serializers.SerializerMethodField()
    text_model = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_tier(self, job) -> str | None:
        return job.tier or None

    def get_count(self, job) -> int | None:
        return job.image_count or None

    def get_images_delivered(self, job) -> int:
        return len(job.images.all())

    def get_images(self, job) -> list[dict]:
        request = self.context.get("request")
        out = []
        for image in job.images.all():
            url = reverse("job-image", kwargs={"job_id": job.id, "index": image.index})
            out.append({"id": image.id, "url": request.build_absolute_uri(url) if request else url,
                        "width": image.width, "height": image.height, "content_type": image.content_type})
        return out

    def get_text(self, job) -> str | None:
        return job.text if job.total_tokens is not None else None

    def get_tokens(self, job) -> dict | None:
        if job.total_tokens is None:
            return None
        return {"prompt": job.prompt_tokens, "completion": job.completion_tokens, "total": job.total_tokens}

    def get_text_model(self, job) -> str | None:
        return job.text_model_name or None

    def get_error(self, job) -> dict | None:
        if not job.error_message:
            return None
        return {"code": job.error_code, "message": job.error_message}


def _accepted(request, job: Job, created: bool, *, waited: int | None = None) -> Response:
    if waited is not None:  # Prefer: wait=N: the job as it is once final, or after N seconds
        job_id = job.id
        job = waiting.job_wait_final(job_id, seconds=waited,
                                     read=lambda: selectors.job_get(user=request.user, job_id=job_id))
    elif created:  # a job that was just created has no images yet: spare the query
        no_images = JobImage.objects.none()
        no_images._result_cache = []  # already evaluated, as prefetch_related leaves it
        job._prefetched_objects_cache = {"images": no_images}
    final = waited is not None and job.status in FINAL_STATUSES  # without a wait: 202, as ever
    response = Response(JobOutputSerializer(job, context={"request": request}).data,
                        status=status.HTTP_200_OK if final else status.HTTP_202_ACCEPTED)
    if waited is not None:
        response["Preference-Applied"] = f"wait={waited}"
    response["Location"] = reverse("job-detail", kwargs={"job_id": job.id})
    if not created:
        response["Idempotent-Replayed"] = "true"
    return response


class _GenerationApi(APIView):
    """The fixed sequence of every generation endpoint: check the body's shape, create the job
    through the subclass's service (which validates, prices and holds), answer 202 with it."""

    InputSerializer: type[serializers.Serializer]
    create_job: Callable[..., tuple[Job, bool]]

    def get_serializer_class(self):  # how drf-spectacular finds the request body of an APIView
        return self.InputSerializer

    @extend_schema(responses={202: JobOutputSerializer, 200: OpenApiResponse(
        JobOutputSerializer, description="With Prefer: wait=N, the job became final within the wait."), 402: error_response(
        "insufficient_credits (details: required, available); member_cap_exceeded or api_key_cap_exceeded: the "
        "member's or the API key's monthly cap would be passed (details: cap, spent, held, required, month).")},
        parameters=[IDEMPOTENCY_HEADER, WEBHOOK_HEADER, PREFER_HEADER])
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        origin = services.JobOrigin(api_key=request_api_key(request),
                                    webhook_endpoint=request.headers.get("Webhook-Endpoint"))
        job, created = type(self).create_job(
            user=request.user, idempotency_key=request.headers.get("Idempotency-Key"), origin=origin,
            **serializer.validated_data)
        return _accepted(request, job, created, waited=waiting.prefer_wait(request.headers.get("Prefer")))


class ImageGenerationApi(_GenerationApi):
    @extend_schema_serializer(component_name="ImageGenerationRequest")
    class InputSerializer(serializers.Serializer):
        prompt = StrictCharField(trim_whitespace=False)
        tier = StrictCharField()
        count = StrictIntegerField()

    create_job = staticmethod(services.job_create_images)


class TextGenerationApi(_GenerationApi):
    @extend_schema_serializer(component_name="TextGenerationRequest")
    class InputSerializer(serializers.Serializer):
        prompt = StrictCharField(trim_whitespace=False)
        max_tokens = StrictIntegerField(required=False, allow_null=True)

    create_job = staticmethod(services.job_create_text)


class ArticleGenerationApi(_GenerationApi):
    @extend_schema_serializer(component_name="ArticleGenerationRequest")
    class InputSerializer(serializers.Serializer):
        prompt = StrictCharField(trim_whitespace=False)
        tier = StrictCharField()
        image_count = StrictIntegerField(required=False, allow_null=True)
        max_tokens = StrictIntegerField(required=False, allow_null=True)

    create_job = staticmethod(services.job_create_article)


class JobListApi(APIView):
    @extend_schema(responses={200: JobOutputSerializer(many=True)})
    def get(self, request):
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(selectors.job_list(user=request.user), request, view=self)
        return paginator.get_paginated_response(JobOutputSerializer(page, many=True, context={"request": request}).data)


class JobDetailApi(APIView):
    @extend_schema(responses={200: JobOutputSerializer}, parameters=[WAIT_PARAM])
    def get(self, request, job_id):
        seconds = waiting.wait_param(request.query_params.get("wait"))
        read = lambda: selectors.job_get(user=request.user, job_id=job_id)  # noqa: E731
        job = waiting.job_wait_final(job_id, seconds=seconds, read=read) if seconds else read()
        return Response(JobOutputSerializer(job, context={"request": request}).data)


class JobImageApi(APIView):
    """The stored image file, to its owner only (provider URLs expire; ours do not)."""

    @extend_schema(responses={(200, "image/png"): bytes})
    def get(self, request, job_id, index):
        image = selectors.job_image_get(user=request.user, job_id=job_id, index=index)
        response = FileResponse(image.file.open("rb"), content_type=image.content_type)
        response["Cache-Control"] = "private, max-age=86400"
        return response
