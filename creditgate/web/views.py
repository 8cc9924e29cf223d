"""The pages. The home page renders no catalog data on the server: tiers, prices, limits and the
text model all come from the API in the browser, so a price changed in the admin shows without a
deploy. A job's page shows one job of the user's account, as it was asked and delivered."""

from django.contrib.auth.mixins import LoginRequiredMixin
from django.contrib.staticfiles.storage import staticfiles_storage
from django.http import Http404, HttpResponseRedirect
from django.utils.decorators import method_decorator
from django.views.decorators.cache import cache_control
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.generic import TemplateView

from creditgate.catalog import selectors as catalog_selectors
from creditgate.catalog.models import QualityTier
from creditgate.core.errors import NotFound
from creditgate.generation import selectors as generation_selectors
from creditgate.generation.models import JobKind


# The page's script reads the CSRF token from the cookie for its POSTs; the template has no form
# that would set it otherwise.
@method_decorator(ensure_csrf_cookie, name="dispatch")
class HomeView(LoginRequiredMixin, TemplateView):
    template_name = "web/home.html"


# Like the home page, the team page renders no data on the server: team.js reads and changes
# everything through the same API an integration uses (members, keys, webhooks).
@method_decorator(ensure_csrf_cookie, name="dispatch")
class TeamView(LoginRequiredMixin, TemplateView):
    template_name = "web/team.html"


def job_title(job) -> str:
    """"2 <tier label> images", "Text", "Article with 3 <tier label> images": what the user asked for."""
    tier = QualityTier(job.tier).label if job.tier in QualityTier.values else job.tier
    images = f"{job.image_count} {tier} image{'' if job.image_count == 1 else 's'}"
    if job.kind == JobKind.IMAGE:
        return images
    if job.kind == JobKind.ARTICLE:
        return f"Article with {images}" if job.image_count else "Article"
    return "Text"


class JobView(LoginRequiredMixin, TemplateView):
    template_name = "web/job.html"

    def get_context_data(self, **kwargs):
        try:
            job = generation_selectors.job_get(user=self.request.user, job_id=kwargs["job_id"])
        except NotFound:
            raise Http404("No such job.") from None  # another account's job is no different from a missing one
        images = list(job.images.all())
        return {**super().get_context_data(**kwargs), "job": job, "title": job_title(job),
                "images": [(image, image_caption(job, image)) for image in images]}


def image_caption(job, image) -> str:
    """Who made an image, for people: the model's display name, else the tier's label; never a
    provider's model id (those are machine names, not for people)."""
    model = image.model_name or job.image_model_name
    shown = catalog_selectors.model_display_names().get(model)
    if shown and shown != model:
        return shown
    return QualityTier(job.tier).label if job.tier in QualityTier.values else ""


@cache_control(max_age=86400, public=True)
def favicon(request):
    """Browsers ask for /favicon.ico whatever the page says; send them to the static file
    (a temporary redirect: its hashed static name changes with each release)."""
    return HttpResponseRedirect(staticfiles_storage.url("web/favicon.ico"))
