from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "creditgate.generation"
    label = "generation"
    default_auto_field = "django.db.models.BigAutoField"
