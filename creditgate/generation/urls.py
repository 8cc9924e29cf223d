from django.urls import path

from creditgate.generation import apis

urlpatterns = [
    path("credits/estimate/", apis.EstimateApi.as_view(), name="credits-estimate"),
    path("images/generations/", apis.async_waits(apis.ImageGenerationApi.as_view()), name="image-generations"),
    path("text/generations/", apis.async_waits(apis.TextGenerationApi.as_view()), name="text-generations"),
    path("articles/generations/", apis.async_waits(apis.ArticleGenerationApi.as_view()), name="article-generations"),
    path("jobs/", apis.JobListApi.as_view(), name="job-list"),
    path("jobs/<uuid:job_id>/", apis.async_waits(apis.JobDetailApi.as_view()), name="job-detail"),
    path("jobs/<uuid:job_id>/images/<int:index>/", apis.JobImageApi.as_view(), name="job-image"),
]
