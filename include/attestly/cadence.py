"""When manual evidence is due: each manual control's cadence against the statements in the ledger.

A statement covering ``[from, to]`` keeps a control *current* from ``from`` until ``to`` plus the
cadence's days (``CADENCE_DAYS``: monthly 31, quarterly 92, semiannual 183, annual 366). The control is
*due* on the last current day; ``remind_days_before`` that, its owner is reminded (``due_soon``); after it
the control is ``overdue`` and the compliance team is told; with no statement at all it is ``never``
evidenced. The reports use the same windows: an overdue day is a ``no evidence`` day.

Pure functions of the policy and ledger bodies (no I/O), shared by ``attestly evidence due``, the daily
reminders task, the reports and the UI.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from attestly.policy.models import CADENCE_DAYS

if TYPE_CHECKING:
    from attestly.ledger import LedgerEntry
    from attestly.policy import Policy

MANUAL = "manual"


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def last_day(period_end: str) -> date:
    """The last day an item's half-open period ``[start, end)`` covers."""
    return (_ts(period_end) - timedelta(microseconds=1)).date()


def current_until(period_end: str, cadence: str) -> date:
    """The last day a statement keeps its control current."""
    return last_day(period_end) + timedelta(days=CADENCE_DAYS[cadence])


@dataclass(frozen=True)
class DueStatus:
    control_id: str
    owner: str
    cadence: str
    requested: str
    status: str  # current | due_soon | overdue | never
    last_period_end: date | None
    due_date: date | None
    last_seq: int | None
    statements: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "control": self.control_id,
            "owner": self.owner,
            "cadence": self.cadence,
            "requested": self.requested,
            "status": self.status,
            "last_covers_to": self.last_period_end.isoformat() if self.last_period_end else None,
            "due": self.due_date.isoformat() if self.due_date else None,
            "last_ledger_seq": self.last_seq,
            "statements": self.statements,
        }


def manual_statements(
    entries: Iterable[LedgerEntry | Mapping[str, Any]],
) -> dict[str, list[tuple[int, Mapping[str, Any]]]]:
    """Manual statements per control: ``{control: [(seq, body), ...]}`` in ledger order."""
    out: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
    for e in entries:
        seq, body = (e.seq, e.body) if not isinstance(e, Mapping) else (int(e["seq"]), e["body"])
        if body.get("collector") != MANUAL:
            continue
        for cid in body.get("controls", ()):
            out.setdefault(str(cid), []).append((seq, body))
    return out


def due_status(policy: Policy, entries: Iterable[Any], *, today: date) -> list[DueStatus]:
    """Every manual control in scope, in policy order, with its due status on ``today``."""
    by_control = manual_statements(entries)
    remind = policy.manual_evidence.remind_days_before
    out = []
    for control in policy.manual_controls():
        cadence = str(control.cadence)
        items = by_control.get(control.id, [])
        if not items:
            out.append(
                DueStatus(
                    control.id,
                    str(control.owner),
                    cadence,
                    str(control.requested),
                    "never",
                    None,
                    None,
                    None,
                    0,
                )
            )
            continue
        seq, body = max(items, key=lambda sb: (last_day(str(sb[1]["period_end"])), sb[0]))
        last = last_day(str(body["period_end"]))
        due = last + timedelta(days=CADENCE_DAYS[cadence])
        if today > due:
            status = "overdue"
        elif today >= due - timedelta(days=remind):
            status = "due_soon"
        else:
            status = "current"
        out.append(
            DueStatus(
                control.id,
                str(control.owner),
                cadence,
                str(control.requested),
                status,
                last,
                due,
                seq,
                len(items),
            )
        )
    return out
