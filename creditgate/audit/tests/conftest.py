from creditgate.catalog.tests.conftest import openai, text_model_factory  # noqa: F401  (shared fixtures)
