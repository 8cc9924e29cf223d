"""URL wiring only: each app owns its routes."""

from allauth.account import views as account_views
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from creditgate.credits.views import JoinView

urlpatterns = [
    path("admin/", admin.site.urls),
    # django-allauth: sign-up, email verification, log in and out, password reset. The names
    # "login" and "logout" stay for the templates and code that use Django's.
    path("accounts/login/", account_views.login, name="login"),
    path("accounts/logout/", account_views.logout, name="logout"),
    path("accounts/", include("allauth.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view: Swagger UI's start script is a URL of its own, not inline (the Content-Security-Policy).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="core/swagger_ui.html"),
         name="api-docs"),
    path("api/v1/system/", include("creditgate.providers.urls")),
    path("api/v1/credits/", include("creditgate.credits.urls")),
    path("api/v1/credits/", include("creditgate.reports.urls")),
    path("api/v1/", include("creditgate.billing.urls")),
    path("api/v1/account/", include("creditgate.credits.team_urls")),
    path("api/v1/webhooks/", include("creditgate.webhooks.urls")),
    path("api/v1/", include("creditgate.generation.urls")),
    path("v1/", include("creditgate.openai_compat.urls")),  # OpenAI's API, for OpenAI's SDKs
    path("team/join/<str:token>/", JoinView.as_view(), name="team-join"),
    path("", include("creditgate.core.urls")),
    path("", include("creditgate.web.urls")),
]

# Under /api/ in the API's JSON error shape, elsewhere Django's HTML pages (creditgate.core.views).
handler400 = "creditgate.core.views.error_400"
handler403 = "creditgate.core.views.error_403"
handler404 = "creditgate.core.views.error_404"
handler500 = "creditgate.core.views.error_500"
