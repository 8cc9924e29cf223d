from django.apps import AppConfig


class DemoConfig(AppConfig):
    """`manage.py demo`: the top layer, it may use any app (it grants the demo account its credits
    and starts the provider sandbox); the page (web) reaches the rest only through the API."""

    name = "creditgate.demo"
    label = "demo"
    default_auto_field = "django.db.models.BigAutoField"
