from django.urls import path

from creditgate.web import views

urlpatterns = [
    path("", views.HomeView.as_view(), name="home"),
    path("jobs/<uuid:job_id>/", views.JobView.as_view(), name="job-page"),
    path("team/", views.TeamView.as_view(), name="team-page"),
    path("favicon.ico", views.favicon, name="favicon"),
]
