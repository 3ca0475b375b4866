"""Calendar-month arithmetic for retention windows. Pure functions, no time zone, no clock."""

from __future__ import annotations

import calendar
from datetime import MAXYEAR, MINYEAR, date, datetime


def add_months(d: date, n: int) -> date:
    """Return ``d`` moved by ``n`` calendar months (``n`` may be negative or zero).

    The day of month is kept when the target month has it and clamped to the target month's last day
    otherwise (``2024-01-31 + 1 -> 2024-02-29``, ``2023-01-31 + 1 -> 2023-02-28``). Consequently
    ``add_months`` is monotonic (``a <= b`` implies ``add_months(a, n) <= add_months(b, n)``) and exact
    for days 1..28 (``add_months(add_months(d, n), -n) == d``). A ``datetime`` is refused (``TypeError``)
    rather than silently losing its time; a result outside ``date``'s range raises ``OverflowError``.
    """
    if isinstance(d, datetime) or not isinstance(d, date):
        raise TypeError(f"add_months needs a datetime.date, got {type(d).__name__}")
    total = d.year * 12 + (d.month - 1) + n
    year, month0 = divmod(total, 12)
    if not MINYEAR <= year <= MAXYEAR:
        raise OverflowError(f"{d.isoformat()} + {n} months is outside the supported date range")
    last_day = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(d.day, last_day))


def require_month_start(d: date) -> date:
    """Return ``d`` if it is the first day of a month; raise ``ValueError`` otherwise."""
    if isinstance(d, datetime) or not isinstance(d, date):
        raise TypeError(f"a month start must be a datetime.date, got {type(d).__name__}")
    if d.day != 1:
        raise ValueError(f"{d.isoformat()} is not the first day of a month")
    return d


def online_until(month_start: date, online_months: int) -> date:
    """First day on which the records of the month starting ``month_start`` are no longer kept online.

    That is the first day of the month ``online_months`` after the *end* of their month:
    ``online_until(2024-01-01, 12) == 2025-02-01``. Archiving may run on or after this date.
    """
    return add_months(require_month_start(month_start), online_months + 1)


def dispose_after(month_start: date, retention_months: int) -> date:
    """First day on which the records of the month starting ``month_start`` may be disposed of.

    Same arithmetic as :func:`online_until` with the total retention:
    ``dispose_after(2024-01-01, 72) == 2030-02-01`` (every record is then at least 72 months old).
    """
    return add_months(require_month_start(month_start), retention_months + 1)
