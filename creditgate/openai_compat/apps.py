from django.apps import AppConfig


class OpenAICompatConfig(AppConfig):
    name = "creditgate.openai_compat"
    label = "openai_compat"
    verbose_name = "OpenAI-compatible API (/v1)"
