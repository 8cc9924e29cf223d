"""The days a user or an operator may ask about (the usage API, the admin's usage report, the
configuration history's date drill-down): bounded, so that the day after, the week around and the
default window before any accepted day exist. Python's dates stop at 0001-01-01 and 9999-12-31,
and `date + timedelta` past them raises OverflowError: a 500 for `?to=9999-12-31` before.

1970-01-01 is before anything this service can have recorded; 9998-12-31 leaves a year of room.
"""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError

FIRST_DAY = dt.date(1970, 1, 1)
LAST_DAY = dt.date(9998, 12, 31)
OUT_OF_RANGE = f"Must be a day from {FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}."


def day_in_range(value: dt.date) -> None:
    """A validator (Django forms and DRF fields alike): ValidationError for a day outside the range."""
    if value is not None and not FIRST_DAY <= value <= LAST_DAY:
        raise ValidationError(OUT_OF_RANGE, code="out_of_range")


def days_before(day: dt.date, days: int) -> dt.date:
    """`day` minus `days` days, never before FIRST_DAY (a default window that starts at the edge)."""
    return day - dt.timedelta(days=days) if (day - FIRST_DAY).days > days else FIRST_DAY
