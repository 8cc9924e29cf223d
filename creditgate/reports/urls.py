from django.urls import path

from creditgate.reports import usage_api

# Under /api/v1/credits/ beside credits' own routes (creditgate/urls.py): the usage report reads jobs,
# which credits does not know.
urlpatterns = [
    path("usage/", usage_api.UsageApi.as_view(), name="credits-usage"),
]
