from django.urls import path

from creditgate.catalog import apis

urlpatterns = [
    path("ai-config/", apis.AIConfigApi.as_view(), name="ai-config"),
]
