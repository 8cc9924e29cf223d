from django.urls import path

from creditgate.providers import apis

urlpatterns = [
    path("ai-config/", apis.AIConfigApi.as_view(), name="ai-config"),
]
