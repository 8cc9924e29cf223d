from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "creditgate.catalog"
    label = "catalog"
    verbose_name = "AI catalog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from creditgate.catalog import signals  # noqa: F401  (connects the cache invalidation)
