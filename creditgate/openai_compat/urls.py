"""/v1: OpenAI's paths, without trailing slashes, as OpenAI's SDKs call them."""

from django.urls import path

from creditgate.openai_compat import apis

urlpatterns = [
    path("models", apis.ModelListApi.as_view(), name="v1-models"),
    path("models/<path:model_id>", apis.ModelDetailApi.as_view(), name="v1-model"),
    path("chat/completions", apis.chat_completions, name="v1-chat-completions"),
    path("images/generations", apis.image_generations, name="v1-images-generations"),
    path("images/files/<str:token>", apis.ImageFileApi.as_view(), name="v1-image-file"),
]
