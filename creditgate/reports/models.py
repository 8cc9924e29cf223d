"""The report reads jobs, their provider calls and images where they are; to stay fast over a
year, what a finished period adds up to is also kept here (rollups), written once the period is
closed. Nothing here is a source of truth: deleting every rollup only makes the report slower.

- UsageReport: no table; it gives the report its place in the admin (the index links to it) and
  its permission, `reports.view_usagereport`.
- UsageRollup: one period (a UTC day or a Monday-to-Sunday week) of one usage (an image tier or
  text) and model, as the report computes it live: counts, credits, costs, exact p50/p95. A row
  with an empty usage and model holds the period's jobs counted once each.
- ClosedPeriod: the periods rolled up. A day is closed once every job asked for that day is final
  (their figures can no longer change) and an hour has passed since it ended; a week with its
  Sunday. Closed days form a prefix: the report reads rollups up to the last closed day and
  computes the rest live.
"""

from django.db import models
from django.db.models import Q


class UsageReport(models.Model):
    class Meta:
        managed = False
        default_permissions = ("view",)
        verbose_name = "usage and margin report"
        verbose_name_plural = "usage and margin report"

    def __str__(self) -> str:
        return "usage and margin report"


class PeriodGroup(models.TextChoices):
    DAY = "day", "Day"
    WEEK = "week", "Week"


class ClosedPeriod(models.Model):
    group = models.CharField(max_length=4, choices=PeriodGroup.choices)
    period = models.DateField(help_text="The day, or the Monday of the week (UTC).")
    rolled_up_at = models.DateTimeField()

    class Meta:
        default_permissions = ()
        constraints = [models.UniqueConstraint(fields=["group", "period"], name="closed_period_unique")]

    def __str__(self) -> str:
        return f"{self.group} {self.period}"


class UsageRollup(models.Model):
    group = models.CharField(max_length=4, choices=PeriodGroup.choices)
    period = models.DateField()
    usage = models.CharField(max_length=10, blank=True, help_text="An image tier or text; empty: the period's jobs.")
    model_name = models.CharField(max_length=100, blank=True)
    jobs = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    images = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)
    credits = models.PositiveBigIntegerField(default=0)
    calls = models.PositiveIntegerField(default=0)
    failed_calls = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=16, decimal_places=6, default=0)
    provider_cost_usd = models.DecimalField(max_digits=16, decimal_places=6, default=0,
                                            help_text="The part of cost_usd the provider reported itself.")
    provider_units = models.PositiveIntegerField(default=0, help_text="The images that part paid for.")
    p50_ms = models.PositiveIntegerField(null=True)
    p95_ms = models.PositiveIntegerField(null=True)

    class Meta:
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(fields=["group", "period", "usage", "model_name"], name="usage_rollup_unique"),
            models.CheckConstraint(condition=Q(group__in=PeriodGroup.values), name="usage_rollup_group_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.group} {self.period} {self.usage or 'all'} {self.model_name}"
