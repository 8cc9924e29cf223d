"""The project's routes plus the baseline: a bare Django view returning a constant JSON body of
the same size as ai-config, through the same middleware, served by the same workers."""

from django.http import HttpResponse
from django.urls import path

from creditgate.urls import urlpatterns as project_urlpatterns

CONSTANT_BODY = (b'{"image_qualities":[{"tier":"basic","credits_per_image":1,"label":"Basic"},'
                 b'{"tier":"quality","credits_per_image":5,"label":"Quality"},'
                 b'{"tier":"premium","credits_per_image":15,"label":"Premium"}],"text_model":"x",'
                 b'"image_style":"photorealistic","max_images":4,"max_images_per_request":8,"tokens_per_credit":1000}')


def constant_json(request):
    return HttpResponse(CONSTANT_BODY, content_type="application/json")


urlpatterns = [path("bench/constant/", constant_json), *project_urlpatterns]
