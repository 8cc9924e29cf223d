"""The providers' shared state in the database: circuit breakers (where no Redis is configured)."""

from __future__ import annotations

from django.db import models


class CircuitBreakerRecord(models.Model):
    """One breaker's state, for the database store of creditgate.providers.breaker.

    `data` is the state as the breaker module serializes it (the same text the Redis store
    keeps); every change is a compare-and-set on it, so concurrent processes never lose an
    update and exactly one of them wins a trial call. A missing row is a closed breaker.
    """

    key = models.CharField(primary_key=True, max_length=250)
    provider_id = models.CharField(max_length=32)
    model_name = models.CharField(max_length=200, blank=True, default="",
                                  help_text="Empty for the provider's own breaker.")
    data = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "circuit breaker"
        ordering = ["provider_id", "model_name"]

    def __str__(self) -> str:
        return f"{self.provider_id} {self.model_name}".strip()
