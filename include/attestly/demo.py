"""``attestly demo`` (``make demo``): the whole cycle on the embedded local stack, told as it goes.

Re-runnable: days already seeded are not seeded again, and every workflow is idempotent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

DEMO_FAULT = "seq-hole:source=billing,count=3"


def _say(msg: str) -> None:
    print(msg, flush=True)


def _step(title: str) -> float:
    _say(f"\n== {title}")
    return time.perf_counter()


def _loaded_until(conn_id: str = "audit_writer") -> dict[str, datetime]:
    from attestly.connections import pg_connect

    with pg_connect(conn_id) as conn:
        return {r[0]: r[1] for r in conn.execute("SELECT source, occurred_at FROM audit.chain_heads()")}


def run_dag(dag_id: str, logical: date, conf: dict[str, Any] | None = None) -> bool:
    """`airflow dags test` for the interval ending at ``logical``; the log goes to the stack's logs."""
    from attestly.stack import core

    log = core.paths().logs / f"demo-{dag_id}.log"
    airflow = str(Path(sys.executable).with_name("airflow"))
    with log.open("w") as out:
        proc = subprocess.run(
            [
                airflow,
                "dags",
                "test",
                dag_id,
                logical.isoformat(),
                *(["-c", json.dumps(conf)] if conf else []),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ATTESTLY_RETRY_DELAY_SECONDS": "5"},
            check=False,
        )
    ok = proc.returncode == 0
    _say(f"  {dag_id}: {'success' if ok else 'failed'} (log: {log})")
    return ok


def _evidence_for(day: date) -> list[dict[str, Any]]:
    from attestly.ledger import Ledger

    with Ledger.connect() as ledger:
        return [
            e.body
            for e in ledger.entries(kind="evidence")
            if e.body["period_start"].startswith(day.isoformat())
        ]


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
        if latest is None:
            # Old months first (seeding appends): their online period has ended, so retention_archive has work.
            old = (today - timedelta(days=150)).replace(day=1)
            report = seed.seed_audit(start=old, days=3, events_per_day=max(200, events_per_day // 4))
            _say(
                f"  loaded {report['rows']} older events from {old} (past their online period: archive backlog)"
            )
        start = max(first, latest.date() + timedelta(days=1)) if latest else first
        yesterday = today - timedelta(days=1)
        if start < yesterday:
            report = seed.seed_audit(
                start=start, days=(yesterday - start).days, events_per_day=events_per_day
            )
            _say(
                f"  loaded {report['rows']} events from {start} ({report['rows_per_second']:.0f} events/s, COPY)"
            )
        # Yesterday carries a planted fault, so the quality check has something real to find.
        report = seed.seed_audit(
            start=yesterday,
            days=1,
            events_per_day=events_per_day,
            injections=[seed.parse_injection(DEMO_FAULT)],
        )
        _say(
            f"  loaded {report['rows']} events for {yesterday}, sources {', '.join(report['sources'])}, with a "
            f"planted fault: {report['injected'][0]['summary']} (seqs {report['injected'][0]['seqs']})"
        )
    summary.append(f"audit log: events up to {today - timedelta(days=1)} (yesterday)")

    _step("4. AWS: a known estate of compliant and non-compliant resources in two accounts (moto)")
    from attestly.collectors.aws_seed import seed_aws_estate

    expected = seed_aws_estate()
    planted = sum(len(v.get("fail", [])) for v in expected.values())
    _say(f"  {len(expected)} collectors will look at it; {planted} non-compliant findings planted")

    _step(f"5. evidence_collection for {today - timedelta(days=1)} (airflow dags test)")
    ok = run_dag("evidence_collection", today)
    items = _evidence_for(today - timedelta(days=1))
    results: dict[str, int] = {}
    for item in items:
        results[item["result"]] = results.get(item["result"], 0) + 1
    _say(
        f"  run {'succeeded' if ok else 'FAILED'}; {len(items)} evidence items: "
        + ", ".join(f"{k} {v}" for k, v in sorted(results.items()))
    )
    failing = sorted({i["collector"] for i in items if i["result"] == "fail"})
    _say("  failing checks (exceptions auditors will see): " + ", ".join(failing))
    summary.append(
        f"evidence: {len(items)} items for {today - timedelta(days=1)}, {results.get('fail', 0)} with exceptions "
        f"({', '.join(failing[:4])}{', ...' if len(failing) > 4 else ''})"
    )

    _step(
        f"6. audit_log_quality for {today - timedelta(days=1)}: completeness and integrity (Great Expectations)"
    )
    quality_ok = run_dag("audit_log_quality", today)
    quality = [i for i in _evidence_for(today - timedelta(days=1)) if i["collector"] == "quality.audit_log"]
    mails = sorted(core.paths().mail.glob("*.eml"))
    if quality:
        _say(
            f"  result: {quality[-1]['result']} ({quality[-1]['findings'].get('fail', 0)} failing checks) — "
            + ("the run failed, as it must with the planted fault" if not quality_ok else "all checks passed")
        )
    _say(f"  alert e-mail to the control owners: {mails[-1] if mails else 'none'}")
    summary.append(
        f"quality: {quality[-1]['result'] if quality else 'no result'} for {today - timedelta(days=1)} — the planted "
        f"fault ({DEMO_FAULT}) was found and the owners were e-mailed"
    )

    _step("7. retention_archive: export, encrypt, Object Lock upload, verify, then purge what is due")
    archive_ok = run_dag("retention_archive", today)
    status = subprocess.run(
        [sys.executable, "-m", "attestly.cli", "archive", "status", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    batches: list[dict[str, Any]] = []
    try:
        parsed = json.loads(status.stdout)
        batches = parsed if isinstance(parsed, list) else parsed.get("batches", [])
    except json.JSONDecodeError:
        pass
    for b in batches:
        _say(
            "  batch "
            + " ".join(f"{k}={b[k]}" for k in ("batch_id", "state", "rows", "object_key") if k in b)
        )
    summary.append(
        f"archive: {'run succeeded' if archive_ok else 'run FAILED'}; {len(batches)} batch(es) "
        f"({', '.join(sorted({str(b.get('state')) for b in batches})) or 'none due'}); `attestly archive status`"
    )

    _step("8. attestly verify: re-hash every object, check locks, signatures and the digest chain")
    verify = subprocess.run(
        [sys.executable, "-m", "attestly.cli", "verify", "--ledger"],
        capture_output=True,
        text=True,
        check=False,
    )
    _say("  " + verify.stdout.strip().splitlines()[-1] if verify.stdout.strip() else verify.stderr)
    summary.append(f"verify: {'OK' if verify.returncode == 0 else 'FAILED'} (exit {verify.returncode})")

    elapsed = time.perf_counter() - started
    yesterday = today - timedelta(days=1)
    _step(f"9. control_reports for {yesterday}: per-control reports, indexes, auditor packet, OSCAL, e-mail")
    before = set(core.paths().mail.glob("*.eml"))
    reports_ok = run_dag(
        "control_reports",
        today,
        conf={"period_start": yesterday.isoformat(), "period_end": yesterday.isoformat(), "send_email": True},
    )
    out = core.paths().home / "reports"
    render = subprocess.run(
        [sys.executable, "-m", "attestly.cli", "report", "render", "--framework", "all", "--from",
         yesterday.isoformat(), "--to", yesterday.isoformat(), "--out", str(out), "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    statuses: dict[str, int] = {}
    try:
        rendered = json.loads(render.stdout)
        bundles = rendered if isinstance(rendered, list) else rendered.get("bundles", [])
        for fw in bundles:
            for status, n in (fw.get("status_counts") or {}).items():
                statuses[status] = statuses.get(status, 0) + int(n)
    except (json.JSONDecodeError, AttributeError, TypeError):
        rendered = None
    new_mail = sorted(set(core.paths().mail.glob("*.eml")) - before)
    _say(
        f"  reports stored under s3://{os.environ.get('ATTESTLY_EVIDENCE_BUCKET', 'attestly-evidence')}/reports/ "
        f"({'run succeeded' if reports_ok else 'run FAILED'}); a copy to open: {out}"
    )
    if statuses:
        _say("  control statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    _say(f"  e-mail(s) sent to the control owners: {len(new_mail)} in {core.paths().mail}")
    summary.append(
        f"reports: {out} (open */index.html), stored under reports/ in the bucket; e-mails in {core.paths().mail}"
    )

    _step("Summary")
    for line in summary:
        _say(f"  - {line}")
    _say(f"  - stack state: {st['home']} (stop with `make stop`; UI with `make airflow`)")
    _say(f"done in {elapsed:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(run())
