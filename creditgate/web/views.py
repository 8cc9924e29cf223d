"""The page. It renders no catalog data on the server: tiers, prices, limits and the text model
all come from the API in the browser, so a price changed in the admin shows without a deploy."""

from django.contrib.auth.mixins import LoginRequiredMixin
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.generic import TemplateView


# The page's script reads the CSRF token from the cookie for its POSTs; the template has no form
# that would set it otherwise.
@method_decorator(ensure_csrf_cookie, name="dispatch")
class HomeView(LoginRequiredMixin, TemplateView):
    template_name = "web/home.html"
