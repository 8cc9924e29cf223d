"""The report's filters, read from the query string of the page, its JSON and its CSV alike."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from django import forms

from creditgate.core import dates
from creditgate.reports.selectors import GROUPS, MAX_DAYS, USAGE_LABELS, ReportFilter

DEFAULT_DAYS = 30


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _date_field(label: str) -> forms.DateField:
    # Days from 1970-01-01 to 9998-12-31 (core/dates.py): no week or next day overflows the calendar.
    return forms.DateField(label=label, required=False, input_formats=["%Y-%m-%d"], validators=[dates.day_in_range],
                           widget=forms.DateInput(attrs={"type": "date", "min": dates.FIRST_DAY.isoformat(),
                                                         "max": dates.LAST_DAY.isoformat()}, format="%Y-%m-%d"))


class ReportFilterForm(forms.Form):
    """?from=YYYY-MM-DD&to=YYYY-MM-DD&group=day|week&tier=basic|quality|premium|text (the names of
    the user's usage API). Defaults: the last 30 days up to today (UTC), by day, everything."""

    group = forms.ChoiceField(label="By", choices=[(g, g.capitalize()) for g in GROUPS], required=False)
    tier = forms.ChoiceField(label="Tier", required=False,
                             choices=[("", "All tiers and text"), *USAGE_LABELS.items()])

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        # "from" is a Python keyword: the date fields are added by name, first.
        self.fields = {"from": _date_field("From"), "to": _date_field("To"), **self.fields}

    def clean(self):
        super().clean()
        data = self.cleaned_data  # what Form.clean returns
        end = data.get("to") or _today()
        start = data.get("from") or dates.days_before(end, DEFAULT_DAYS - 1)
        if start > end:
            raise forms.ValidationError({"from": f"Must be on or before {end.isoformat()}."})
        if (end - start).days + 1 > MAX_DAYS:
            raise forms.ValidationError({"from": f"The range may span at most {MAX_DAYS} days."})
        data.update({"from": start, "to": end, "group": data.get("group") or "day", "tier": data.get("tier") or None})
        return data

    def report_filter(self) -> ReportFilter:
        data = self.cleaned_data
        return ReportFilter(start=data["from"], end=data["to"], group=data["group"], usage=data["tier"])

    def query_string(self) -> str:
        """The cleaned filter as a query string (the JSON and CSV of the same report)."""
        f = self.report_filter()
        params = {"from": f.start.isoformat(), "to": f.end.isoformat(), "group": f.group}
        if f.usage:
            params["tier"] = f.usage
        return urlencode(params)
