from django.urls import path

from creditgate.web import views

urlpatterns = [
    path("", views.HomeView.as_view(), name="home"),
]
