"""``attestly demo`` (``make demo``): the whole cycle on the embedded local stack, told as it goes.

Re-runnable: days already seeded are not seeded again, and every workflow is idempotent.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any


def _say(msg: str) -> None:
    print(msg, flush=True)


def _step(title: str) -> float:
    _say(f"\n== {title}")
    return time.perf_counter()


def _loaded_until(conn_id: str = "audit_writer") -> dict[str, datetime]:
    from attestly.connections import pg_connect

    with pg_connect(conn_id) as conn:
        return {r[0]: r[1] for r in conn.execute("SELECT source, occurred_at FROM audit.chain_heads()")}


def run(*, days: int = 2, events_per_day: int = 2000) -> int:
    from attestly.audit import seed
    from attestly.policy import PolicyErrors, load_policy
    from attestly.stack import core

    started = time.perf_counter()
    summary: list[str] = []

    _step("1. Policy as code: include/policy")
    try:
        policy = load_policy()
    except PolicyErrors as exc:
        for err in exc.errors:
            _say(f"  {err}")
        _say("policy is invalid: fix the files above, then run `make demo` again")
        return 2
    frameworks: dict[str, int] = {}
    for control in policy.controls.values():
        frameworks[control.framework] = frameworks.get(control.framework, 0) + 1
    _say(
        f"  {len(policy.controls)} controls ("
        + ", ".join(f"{k}: {v}" for k, v in sorted(frameworks.items()))
        + f"), {len(policy.retention.classes)} retention classes, {len(policy.sources.sources)} audit sources, "
        f"{len(policy.aws.accounts)} AWS accounts"
    )
    summary.append(f"policy: valid ({len(policy.controls)} controls)")

    _step("2. Local stack: PostgreSQL, moto (S3 Object Lock, KMS, ...), SMTP, Airflow home")
    st = core.up(quiet=True)
    core.apply_environment()
    for name, s in st["services"].items():
        _say(f"  {'ok ' if s['healthy'] else 'DOWN'} {name:<9} {s['address']}  {s['detail']}")
    if not st["healthy"]:
        _say("  the stack is not healthy; see the logs under " + st["home"] + "/logs")
        return 1

    _step(f"3. Audit log: {days} days of synthetic events (the application's side, insert-only role)")
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days)
    heads = _loaded_until()
    latest = max(heads.values()) if heads else None
    if latest is not None and latest.date() >= today - timedelta(days=1):
        _say(f"  already loaded up to {latest.isoformat()}; nothing to add")
        report: dict[str, Any] | None = None
    else:
        start = max(first, latest.date() + timedelta(days=1)) if latest else first
        n_days = (today - start).days
        report = seed.seed_audit(start=start, days=n_days, events_per_day=events_per_day)
        _say(
            f"  loaded {report['rows']} events from {start} for {n_days} day(s), sources "
            f"{', '.join(report['sources'])} ({report['rows_per_second']:.0f} events/s, COPY)"
        )
    summary.append(f"audit log: events up to {today - timedelta(days=1)} (yesterday)")

    elapsed = time.perf_counter() - started
    _step("Summary")
    for line in summary:
        _say(f"  - {line}")
    _say(f"  - stack state: {st['home']} (stop with `make stop`; UI with `make airflow`)")
    _say(f"done in {elapsed:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(run())
