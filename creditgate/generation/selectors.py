from django.db.models import QuerySet

from creditgate.core.errors import NotFound
from creditgate.credits import services as credits_services
from creditgate.generation.models import Job, JobImage


def job_list(*, user) -> QuerySet[Job]:
    account = credits_services.account_for_user(user=user)
    return Job.objects.filter(account=account).prefetch_related("images").order_by("-created_at")


def job_get(*, user, job_id) -> Job:
    """A job of the user's account; anyone else's is indistinguishable from a missing one."""
    job = job_list(user=user).filter(pk=job_id).first()
    if job is None:
        raise NotFound("No such job.")
    return job


def job_image_get(*, user, job_id, index: int) -> JobImage:
    image = JobImage.objects.filter(job=job_get(user=user, job_id=job_id), index=index).first()
    if image is None:
        raise NotFound("No such image.")
    return image
