"""The trusted current time, and the guard that keeps destruction from ever running early.

Archiving-as-due, purging and key destruction may act on what is due at a date (a run's data interval end,
or ``--as-of``), but never on a date later than the trusted current time: a run dated in the future — which
anyone allowed to trigger a DAG can create — is refused, and the refusal is ledgered.

"Trusted" means: the UTC time of this host, cross-checked against the PostgreSQL server of ``attestly_db``
(``clock_timestamp()``). Both are expected to be synchronised (NTP/chrony; on AWS the Amazon Time Sync
Service); if they disagree by more than ``ATTESTLY_CLOCK_TOLERANCE_SECONDS`` (default 300), nothing
destructive runs (:class:`ClockUntrusted`). The earlier of the two readings is used, so a host whose clock
runs ahead gains nothing. The databases enforce the same rule with their own clocks
(``attestly.destroy_data_key`` refuses a key before its retention ends; the audit database's purge
functions refuse rows inside the online floor), so even a worker with a forged clock cannot destroy early.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from attestly.ledger import Ledger

DEFAULT_TOLERANCE_SECONDS = 300.0


class ClockUntrusted(RuntimeError):
    """This host's clock and the database server's disagree by more than the tolerance."""


class FutureDatedRun(RuntimeError):
    """A destructive run was asked to act as of a date after the trusted current time."""

    def __init__(self, *, workflow: str, as_of: date, now: datetime, run_id: str) -> None:
        self.workflow = workflow
        self.as_of = as_of
        self.now = now
        self.run_id = run_id
        super().__init__(
            f"{workflow}: refused to act as of {as_of.isoformat()}: that is after the trusted current time "
            f"{now.isoformat(timespec='seconds')} (run {run_id}). Records are archived, purged and destroyed "
            "only when they are due by the real clock, whatever date a run carries; run it on or after "
            f"{as_of.isoformat()}."
        )


def tolerance_seconds() -> float:
    raw = os.environ.get("ATTESTLY_CLOCK_TOLERANCE_SECONDS", "")
    if not raw.strip():
        return DEFAULT_TOLERANCE_SECONDS
    try:
        value = float(raw)
    except ValueError as exc:
        raise ClockUntrusted(f"ATTESTLY_CLOCK_TOLERANCE_SECONDS={raw!r} is not a number of seconds") from exc
    if not 0 < value <= 3600:
        raise ClockUntrusted(f"ATTESTLY_CLOCK_TOLERANCE_SECONDS={raw!r} must be in (0, 3600]")
    return value


def trusted_now(conn: psycopg.Connection[Any]) -> datetime:
    """The current UTC time: the earlier of this host's clock and the database server's, which must agree
    within the tolerance. Raises :class:`ClockUntrusted` otherwise."""
    with conn.transaction():
        before = datetime.now(UTC)
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        after = datetime.now(UTC)
    if row is None:
        raise ClockUntrusted("the database server returned no time")
    server = row[0].astimezone(UTC)
    local = before + (after - before) / 2
    skew = abs((server - local).total_seconds())
    limit = tolerance_seconds()
    if skew > limit:
        raise ClockUntrusted(
            f"this host's clock ({local.isoformat(timespec='seconds')}) and the database server's "
            f"({server.isoformat(timespec='seconds')}) differ by {skew:.0f} s (tolerance {limit:.0f} s): "
            "nothing is archived, purged or destroyed until the clocks are synchronised"
        )
    return min(server, before)


def require_due_date(
    conn: psycopg.Connection[Any], *, as_of: date, workflow: str, run_id: str, ledger: Ledger | None = None
) -> datetime:
    """Refuse (and ledger the refusal) when ``as_of`` — midnight UTC of that day — is after the trusted
    current time. Returns the trusted time."""
    now = trusted_now(conn)
    if datetime.combine(as_of, time(), tzinfo=UTC) <= now:
        return now
    refusal = FutureDatedRun(workflow=workflow, as_of=as_of, now=now, run_id=run_id)
    if ledger is not None:
        ledger.append(
            "refusal",
            {
                "event": "future_dated_run",
                "workflow": workflow,
                "run_id": run_id,
                "as_of": as_of.isoformat(),
                "trusted_now": now.isoformat(),
                "reason": str(refusal),
            },
            dedupe_key=f"refusal:{workflow}:{run_id}:{as_of.isoformat()}",
        )
    raise refusal
