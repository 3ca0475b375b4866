"""Chase manual evidence: remind owners before it is due, tell the compliance team once it is overdue.

Run daily by ``evidence_collection`` (task ``manual_evidence_due``). For each manual control in scope
(:func:`attestly.cadence.due_status`):

- ``due_soon`` (within ``remind_days_before`` of the due date): its owner gets one e-mail per due date;
- ``overdue`` (past the due date) or ``never`` evidenced: the compliance team
  (``controls.yaml manual_evidence.compliance_team``) gets one e-mail per control and due date (for a
  control never evidenced, once until its first statement), copied to the owner.

Controls are batched: one message per recipient per day. ``attestly.manual_reminders`` records what was
sent, so a re-run sends nothing twice; a message is sent before it is recorded, with a Message-ID derived
from its content, so a crash in between re-sends the *same* message (mail clients fold duplicates).
During a backfill (the interval ended more than :data:`LIVE_DAYS` days ago) nothing is sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from attestly.cadence import DueStatus, due_status

if TYPE_CHECKING:
    from attestly.ledger import Ledger
    from attestly.policy import Policy

#: A never-evidenced control's reminder is keyed on this date (one message until its first statement).
NEVER = date(1970, 1, 1)
#: Only intervals that ended within this many days of the trusted now send e-mail (not backfills).
LIVE_DAYS = 2


def _due_key(s: DueStatus) -> date:
    return s.due_date or NEVER


def _already_sent(ledger: Ledger, keys: Sequence[tuple[str, date, str]]) -> set[tuple[str, date, str]]:
    if not keys:
        return set()
    rows = ledger.conn.execute(
        "SELECT control_id, due_date, kind FROM attestly.manual_reminders WHERE control_id = ANY(%s)",
        ([k[0] for k in keys],),
    ).fetchall()
    ledger.conn.commit()
    return {(r[0], r[1], r[2]) for r in rows} & set(keys)


def plan_messages(
    policy: Policy, statuses: Sequence[DueStatus], sent: set[tuple[str, date, str]]
) -> list[dict[str, Any]]:
    """The messages to send: ``[{kind, to, controls: [DueStatus]}]`` (one per recipient set and kind)."""
    team = str(policy.manual_evidence.compliance_team)
    groups: dict[tuple[str, tuple[str, ...]], list[DueStatus]] = {}
    for s in statuses:
        kind: str
        to: tuple[str, ...]
        if s.status == "due_soon":
            kind, to = "due_soon", (s.owner,)
        elif s.status in ("overdue", "never"):
            kind, to = "overdue", tuple(sorted({team, s.owner}))
        else:
            continue
        if (s.control_id, _due_key(s), kind) in sent:
            continue
        groups.setdefault((kind, to), []).append(s)
    out = []
    for (kind, to), controls in sorted(groups.items()):
        out.append({"kind": kind, "to": list(to), "controls": controls})
    return out


def _message_id(kind: str, to: Sequence[str], controls: Sequence[DueStatus]) -> str:
    h = hashlib.sha256(
        "|".join([kind, *to, *(f"{c.control_id}@{_due_key(c)}" for c in controls)]).encode()
    ).hexdigest()[:32]
    return f"<attestly-reminder-{h}@attestly.local>"


def send_reminders(
    *,
    policy: Policy,
    ledger: Ledger,
    today: date,
    live: bool,
    send: Callable[..., str] | None = None,
) -> dict[str, Any]:
    """Compute the due status on ``today`` and send what is new (when ``live``); returns counts and the
    statuses (control ids, due dates — no personal data beyond the owners' addresses)."""
    from attestly.notify import send_email
    from attestly.reports.render import render_template

    statuses = due_status(policy, ledger.entries(kind="evidence"), today=today)
    keys = [
        (s.control_id, _due_key(s), "due_soon" if s.status == "due_soon" else "overdue")
        for s in statuses
        if s.status != "current"
    ]
    sent_before = _already_sent(ledger, keys)
    messages = plan_messages(policy, statuses, sent_before) if live else []
    sender = send or send_email
    sent = []
    for m in messages:
        subject = (
            f"[Attestly] manual evidence due soon for {len(m['controls'])} control(s)"
            if m["kind"] == "due_soon"
            else f"[Attestly] manual evidence overdue for {len(m['controls'])} control(s)"
        )
        html = render_template("manual_reminder.html.j2", kind=m["kind"], controls=m["controls"], today=today)
        mid = _message_id(m["kind"], m["to"], m["controls"])
        sender(to=m["to"], subject=subject, html=html, message_id=mid)
        with ledger.conn.transaction():
            for c in m["controls"]:
                ledger.conn.execute(
                    "INSERT INTO attestly.manual_reminders (control_id, due_date, kind, recipients, message_id) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (c.control_id, _due_key(c), m["kind"], m["to"], mid),
                )
        sent.append(
            {
                "kind": m["kind"],
                "to": m["to"],
                "controls": [c.control_id for c in m["controls"]],
                "message_id": mid,
            }
        )
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.status] = counts.get(s.status, 0) + 1
    return {
        "today": today.isoformat(),
        "live": live,
        "counts": dict(sorted(counts.items())),
        "messages": sent,
        "overdue": [s.control_id for s in statuses if s.status in ("overdue", "never")],
    }
