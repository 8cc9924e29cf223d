"""Benchmark-only settings: the project's settings plus a URLconf with a bare constant view."""

from creditgate.settings import *  # noqa: F403

ROOT_URLCONF = "bench.ai_config_urls"
