"""The usage and margin report in the admin: the page (filters, charts, table, cost drift), the
JSON its charts are drawn from, and the CSV of the same rows.

Staff with the `reports.view_usagereport` permission (superusers have it) see it; anyone else
who is logged in gets a 403, and a visitor who is not logged in is sent to the admin's login.
"""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal
from functools import wraps

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse

from creditgate.catalog.models import AIModelConfig
from creditgate.providers import admin as providers_admin
from creditgate.reports import selectors
from creditgate.reports.forms import ReportFilterForm
from creditgate.reports.models import UsageReport

# The columns of a row, in the CSV's order: (key, heading).
COLUMNS = [
    ("period", "Period"), ("usage", "Tier"), ("model", "Model"), ("provider", "Provider"), ("jobs", "Jobs"),
    ("refused", "Refused"), ("failed", "Failed"), ("images", "Images"), ("tokens", "Tokens"), ("credits", "Credits"),
    ("cost_usd", "Cost (USD)"), ("revenue_usd", "Revenue (USD)"), ("margin_usd", "Margin (USD)"),
    ("margin_pct", "Margin %"), ("calls", "Provider calls"), ("failed_calls", "Failed calls"),
    ("p50_ms", "p50 latency (ms)"), ("p95_ms", "p95 latency (ms)"),
]

REVENUE_COLUMNS = {"revenue_usd", "margin_usd", "margin_pct"}


def row_values(row: dict) -> dict:
    """A row as plain values, the same in the JSON and the CSV: dates ISO, USD as fixed 6-place
    decimal strings (exact), empty where there is nothing to say (no credit value, no latency)."""
    values = {}
    for key, _ in COLUMNS:
        value = row.get(key)
        if isinstance(value, Decimal):
            value = f"{value:.6f}"
        elif isinstance(value, dt.date):
            value = value.isoformat()
        values[key] = value
    return values


@admin.register(UsageReport)
class UsageReportAdmin(admin.ModelAdmin):
    def get_urls(self):
        return [
            path("", self._guarded(self.report_view), name="reports_usagereport_changelist"),
            path("data/", self._guarded(self.data_view), name="reports_usagereport_data"),
            path("csv/", self._guarded(self.csv_view), name="reports_usagereport_csv"),
        ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def _guarded(self, view):
        """The admin's own wrapper sends every non-staff user to the login page; this report
        answers a logged-in user without the right to see it with a 403 instead."""
        admin_view = self.admin_site.admin_view(view)

        @wraps(view)
        def guarded(request, *args, **kwargs):
            if not request.user.is_authenticated:
                login = reverse("admin:login", current_app=self.admin_site.name)
                return redirect_to_login(request.get_full_path(), login)
            if not (request.user.is_active and request.user.is_staff and self.has_view_permission(request)):
                raise PermissionDenied
            return admin_view(request, *args, **kwargs)

        return guarded

    # The views.

    def report_view(self, request):
        form = ReportFilterForm(request.GET)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "title": "Usage and margin",
                   "form": form, "columns": COLUMNS}
        if form.is_valid():
            report = selectors.usage_report(filter=form.report_filter())
            query = form.query_string()
            # With no USD value per credit there is no revenue or margin: their columns would be
            # all dashes, so the page leaves them out (the CSV and JSON keep every column).
            shown = [(key, label) for key, label in COLUMNS
                     if report.usd_per_credit is not None or key not in REVENUE_COLUMNS]
            context.update(
                columns=shown, report=report, totals=report.totals,
                rows=[[values[key] for key, _ in shown] for values in map(row_values, report.rows)],
                form=ReportFilterForm(_form_data(form)),  # the filters in effect, defaults filled in
                data_url=f"{reverse('admin:reports_usagereport_data')}?{query}",
                csv_url=f"{reverse('admin:reports_usagereport_csv')}?{query}",
                drift_percent=settings.CREDITGATE_COST_DRIFT_PERCENT,
                credit_value=(f"{report.usd_per_credit.normalize():f}" if report.usd_per_credit is not None else None),
                settings_url=reverse("admin:catalog_globalintegrationsettings_changelist"))
        return TemplateResponse(request, "admin/reports/usage_report.html", context, status=200 if form.is_valid()
                                else 400)

    def data_view(self, request):
        form = ReportFilterForm(request.GET)
        if not form.is_valid():
            return _invalid(form)
        report = selectors.usage_report(filter=form.report_filter())
        f = report.filter
        return JsonResponse({
            "from": f.start.isoformat(), "to": f.end.isoformat(), "group": f.group, "tier": f.usage,
            "timezone": "UTC",
            "usd_per_credit": f"{report.usd_per_credit:.6f}" if report.usd_per_credit is not None else None,
            "columns": [{"key": key, "label": label} for key, label in COLUMNS],
            "rows": [row_values(row) for row in report.rows],
            "totals": row_values(report.totals),
            "series": selectors.chart_series(report),
            "drift": [{**d, "recorded_usd_per_unit": f"{d['recorded_usd_per_unit']:.6f}",
                       "catalog_usd_per_unit": (f"{d['catalog_usd_per_unit']:.6f}"
                                                if d["catalog_usd_per_unit"] is not None else None),
                       "drift_pct": float(d["drift_pct"]) if d["drift_pct"] is not None else None}
                      for d in report.drift],
        })

    def csv_view(self, request):
        form = ReportFilterForm(request.GET)
        if not form.is_valid():
            return _invalid(form)
        report = selectors.usage_report(filter=form.report_filter())
        f = report.filter
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        suffix = f"-{f.usage}" if f.usage else ""
        response["Content-Disposition"] = (f'attachment; filename="usage-{f.start.isoformat()}-{f.end.isoformat()}-'
                                           f'{f.group}{suffix}.csv"')
        writer = csv.writer(response)
        writer.writerow([key for key, _ in COLUMNS])
        for row in report.rows:
            values = row_values(row)
            writer.writerow(["" if values[key] is None else values[key] for key, _ in COLUMNS])
        return response


def _form_data(form: ReportFilterForm) -> dict:
    f = form.report_filter()
    return {"from": f.start.isoformat(), "to": f.end.isoformat(), "group": f.group, "tier": f.usage or ""}


def _invalid(form: ReportFilterForm) -> JsonResponse:
    details = {field: [str(e) for e in errors] for field, errors in form.errors.items()}
    return JsonResponse({"error": {"code": "invalid_request", "message": "The report's filters are not valid.",
                                   "details": details}}, status=400)


class AIModelConfigAdmin(providers_admin.AIModelConfigAdmin):
    """The AI models list, warning too of models whose provider-reported cost drifts (registered in
    place of the catalog's, as extended by providers: catalog and providers sit below reports)."""

    def changelist_warnings(self, request) -> None:
        super().changelist_warnings(request)
        # Issue 16; the threshold is CREDITGATE_COST_DRIFT_PERCENT.
        for drift in selectors.models_cost_drifting():
            self.message_user(
                request,
                f"{drift['display_name']} ({drift['model']}): the provider reported ${drift['recorded_usd_per_unit']} "
                f"per image over the last {selectors.COST_DRIFT_DAYS} days ({drift['units']} images), "
                f"{drift['drift_pct']:+}% from the catalog's ${drift['catalog_usd_per_unit']}. Update its USD per "
                f"image, or check the provider's pricing.",
                level=messages.WARNING)


admin.site.unregister(AIModelConfig)
admin.site.register(AIModelConfig, AIModelConfigAdmin)
