"""The report has no table of its own: it reads jobs, images, provider calls and the ledger's
captures where they are. This unmanaged model only gives the report its place in the admin (the
index links to it) and its permission, `reports.view_usagereport`."""

from django.db import models


class UsageReport(models.Model):
    class Meta:
        managed = False
        default_permissions = ("view",)
        verbose_name = "usage and margin report"
        verbose_name_plural = "usage and margin report"
