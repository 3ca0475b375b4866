"""``attestly demo`` (``make demo``): the whole cycle on the embedded local stack, told as it goes.

Re-runnable: days already seeded are not seeded again, and every workflow is idempotent.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
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
    from attestly_dev.stack import core

    log = core.paths().logs / f"demo-{dag_id}-{logical.isoformat()}.log"
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
    from attestly.policy import PolicyErrors, add_months, load_policy
    from attestly_dev import audit_seed as seed
    from attestly_dev.stack import core

    started = time.perf_counter()
    summary: list[str] = []
    passed: list[str] = []
    failed: list[str] = []

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
    summary.append(f"policy as code: valid ({len(policy.controls)} controls)")

    _step("2. Local stack: PostgreSQL, moto (S3 Object Lock, KMS, ...), SMTP, Airflow home")
    st = core.up(quiet=True)
    core.apply_environment()
    for name, s in st["services"].items():
        _say(f"  {'ok ' if s['healthy'] else 'DOWN'} {name:<9} {s['address']}  {s['detail']}")
    if not st["healthy"]:
        _say("  the stack is not healthy; see the logs under " + st["home"] + "/logs")
        return 1
    scanner = _demo_policy_with_prowler(core.paths().home)
    _say(f"  scanners: {scanner}")

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
            # 14 months back: patient (ehr-api, HIPAA: 12 months online) events, archived with their PHI;
            # 5 months back: every source (PCI and SOC 2 classes: 3 months online).
            hipaa_old = add_months(today.replace(day=1), -14) + timedelta(days=2)
            report = seed.seed_audit(start=hipaa_old, days=1, events_per_day=300, sources=["ehr-api"])
            _say(f"  loaded {report['rows']} patient-record events from {hipaa_old} (HIPAA, archive backlog)")
            # 13 months back: a month whose PCI retention (12 months after its end) ends this month, so
            # key_disposal has a month that is really due today. It was archived back then (step 7).
            due_month = _due_month(today)
            report = seed.seed_audit(start=due_month + timedelta(days=3), days=2, events_per_day=400)
            _say(
                f"  loaded {report['rows']} events from {due_month + timedelta(days=3)} (PCI retention ends this month)"
            )
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
    summary.append(f"audit log: synthetic events loaded up to {today - timedelta(days=1)} (yesterday)")

    _step("4. AWS: a known estate of compliant and non-compliant resources in two accounts (moto)")
    from attestly_dev.aws_seed import seed_aws_estate

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
    failing = sorted(
        {i["collector"] for i in items if i["result"] == "fail" and not i["collector"].startswith("prowler.")}
    )
    _say("  failing checks (exceptions auditors will see): " + ", ".join(failing))
    scanned = [i for i in items if i["collector"].startswith("prowler.") and i["collector"] != "prowler.scan"]
    if scanned:
        prowler_fail = sorted(
            {i["collector"].removeprefix("prowler.") for i in scanned if i["result"] == "fail"}
        )
        _say(
            f"  Prowler: {len({i['collector'] for i in scanned})} checks with evidence on "
            f"{len({i['scope']['account'] for i in scanned})} accounts, {len(prowler_fail)} failing "
            f"(e.g. {', '.join(prowler_fail[:4])}); mapped to the controls by Prowler's own SOC 2, HIPAA and PCI mappings"
        )
        passed.append(
            f"Prowler as an evidence source: {len(scanned)} evidence items from its checks, raw OCSF output stored "
            "write-once and ledgered"
        )
    passed.append(
        f"evidence_collection: {len(items)} evidence items for {today - timedelta(days=1)} collected, stored under "
        f"Object Lock and ledgered; {results.get('pass', 0)} checks pass"
        if ok
        else "evidence_collection FAILED: see its log above"
    )
    if failing:
        failed.append(
            f"{results.get('fail', 0)} AWS checks have exceptions ({', '.join(failing[:4])}"
            f"{', ...' if len(failing) > 4 else ''}) — the demo estate plants non-compliant resources on "
            "purpose; the control reports show each one with its resource"
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
    if quality and quality[-1]["result"] == "fail":
        failed.append(
            f"audit_log_quality for {today - timedelta(days=1)}: the billing source's sequence has a hole — 3 "
            f"audit events lost (the fault planted on purpose: {DEMO_FAULT}); the run is red in Airflow, the "
            "result is evidence, and the owners were e-mailed"
        )
    elif quality:
        passed.append(
            f"audit_log_quality for {today - timedelta(days=1)}: the audit log is complete and intact"
        )
    else:
        failed.append("audit_log_quality produced no result: see its log above")

    _step("7. retention_archive: export, encrypt, Object Lock upload, verify, then purge what is due")
    back_then = add_months(_due_month(today), 5)
    _say(f"  first the daily run of {back_then} (a backfill of a past day: what was due then)")
    archive_ok = run_dag("retention_archive", back_then)
    _say("  then today's run")
    archive_ok = run_dag("retention_archive", today) and archive_ok
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
    (passed if archive_ok else failed).append(
        f"retention_archive: {len(batches)} month(s) of audit records archived (encrypted, Object Lock), "
        "verified by reading back, then purged from the database; `attestly archive status`"
        if archive_ok
        else "retention_archive FAILED: see its log above"
    )

    _step("7b. Manual evidence: a signed-off access review, what is due, and the quarterly restore test")
    manual = _manual_story(today, core.paths().home)
    passed += manual["passed"]
    failed += manual["failed"]

    _step("8. Erasure of a data subject, and a month at the end of its retention (key_disposal)")
    disposal = _disposal_story(today)
    passed += disposal["passed"]
    failed += disposal["failed"]

    _step("9. attestly verify: re-hash every object, check locks, signatures and the digest chain")
    verify = _cli("verify", "--ledger")
    _say("  " + verify.stdout.strip().splitlines()[-1] if verify.stdout.strip() else verify.stderr)
    (passed if verify.returncode == 0 else failed).append(
        "attestly verify: every evidence object, lock, signature and digest checks out"
        if verify.returncode == 0
        else f"attestly verify found problems (exit {verify.returncode}): run `attestly verify --ledger`"
    )

    yesterday = today - timedelta(days=1)
    _step(f"10. control_reports for {yesterday}: per-control reports, indexes, auditor packet, OSCAL, e-mail")
    before = set(core.paths().mail.glob("*.eml"))
    reports_ok = run_dag(
        "control_reports",
        today,
        conf={"period_start": yesterday.isoformat(), "period_end": yesterday.isoformat(), "send_email": True},
    )
    out = core.paths().home / "reports"
    render = _cli("report", "render", "--framework", "all", "--from", yesterday.isoformat(), "--to",
                  yesterday.isoformat(), "--out", str(out), "--json")  # fmt: skip
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
    (passed if reports_ok else failed).append(
        f"control reports for {yesterday} rendered, stored and e-mailed"
        + (f" ({', '.join(f'{n} {k}' for k, n in sorted(statuses.items()))})" if statuses else "")
        if reports_ok
        else "control_reports FAILED: see its log above"
    )

    elapsed = time.perf_counter() - started
    _step("Summary")
    _say("  What passed")
    for line in summary + passed:
        _say(f"    + {line}")
    _say("  What failed, and why")
    for line in failed:
        _say(f"    - {line}")
    mails = sorted(core.paths().mail.glob("*.eml"))
    _say("  Where to look")
    period = f"{yesterday.isoformat()}_{yesterday.isoformat()}"
    _say(f"    reports:  {out}/<hipaa|pci|soc2>/{period}/index.html — one page per control under controls/,")
    _say("              PDF and JSON beside each, the auditor packet zip and VERIFY.md for offline checks")
    _say(f"    e-mail:   {len(mails)} message(s) the owners received, as .eml files in {core.paths().mail}")
    _say("    ledger:   `attestly evidence list`, `attestly erase status`, `attestly disposal status`")
    _say("    Airflow:  `make airflow`, then open the URL it prints (login shown there); the runs above are")
    _say("              under each DAG, and Browse > Evidence shows each control's status and the seals")
    _say(f"  stack state: {st['home']} (stop with `make stop`; start over with `make clean`)")
    _say(f"done in {elapsed:.0f}s")
    return 0


def _manual_story(today: date, home: Path) -> dict[str, list[str]]:
    """`attestly evidence add` of last quarter's access review (a CSV of reviewers' decisions and a
    sign-off), `attestly evidence due`, and `archive_restore_test` for the last quarter that ended."""
    from attestly.policy import add_months

    passed: list[str] = []
    failed: list[str] = []
    q_start = date(today.year, ((today.month - 1) // 3) * 3 + 1, 1)
    prev_start = add_months(q_start, -3)
    prev_end = q_start - timedelta(days=1)
    folder = home / "manual-evidence"
    folder.mkdir(parents=True, exist_ok=True)
    review = folder / f"access-review-{prev_start:%Y}-Q{(prev_start.month - 1) // 3 + 1}.csv"
    review.write_text(
        "account,principal,access,decision,reviewer\n"
        "111111111111,alice,AdministratorAccess,keep,dana.reyes\n"
        "111111111111,bob,ReadOnlyAccess,revoke,dana.reyes\n"
        "222222222222,ci-deploy,PowerUserAccess,keep,sam.ito\n"
    )
    signoff = folder / "access-review-signoff.txt"
    signoff.write_text(
        f"Access review {prev_start.isoformat()}..{prev_end.isoformat()} completed; 1 access revoked.\n"
        "Signed: Dana Reyes, CISO\n"
    )
    added = _cli("evidence", "add", "--control", "hipaa:164.308(a)(4)(ii)(C)", "--control", "pci:7.2.4", "--file", str(review), "--file", str(signoff),
                 "--period-from", prev_start.isoformat(), "--period-to", prev_end.isoformat(),
                 "--title", "Quarterly user access review", "--attested-by", "Dana Reyes, CISO", "--json")  # fmt: skip
    if added.returncode == 0:
        rec = json.loads(added.stdout)
        _say(
            f"  recorded evidence {rec['sha256'][:16]}… (ledger seq {rec['ledger_seq']}) for {', '.join(rec['controls'])}"
        )
        passed.append(
            "manual evidence: last quarter's access review stored (Object Lock), signed and ledgered "
            "for HIPAA 164.308(a)(4)(ii)(C) and PCI 7.2.4; `attestly evidence list --collector manual`"
        )
    else:
        failed.append(
            f"attestly evidence add FAILED (exit {added.returncode}): {added.stderr.strip()[-300:]}"
        )
    due = _cli("evidence", "due", "--json")
    try:
        rows = json.loads(due.stdout)
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        _say("  manual controls in scope: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
        _say(
            "  (`attestly evidence due`; the daily manual_evidence_due task e-mails owners before and after)"
        )
    except (json.JSONDecodeError, KeyError, TypeError):
        failed.append(f"attestly evidence due FAILED: {due.stderr.strip()[-300:]}")
    _say(f"  archive_restore_test for the quarter that ended {prev_end}")
    if run_dag("archive_restore_test", q_start):
        tests = [b for b in _ledger("evidence") if b.get("collector") == "archive.restore_test"]
        result = tests[-1]["result"] if tests else "none"
        _say(f"  restore test result: {result}")
        (passed if result == "pass" else failed).append(
            "archive restore test: a random verified batch restored, reconciled with its manifest and "
            "dropped; evidence for SOC 2 A1.3, HIPAA 164.308(a)(7)(ii)(B)/(D), PCI 12.10.2"
            if result == "pass"
            else f"archive restore test recorded {result}: see the archive_restore_test log above"
        )
    else:
        failed.append("archive_restore_test FAILED: see its log above")
    return {"passed": passed, "failed": failed}


def _demo_policy_with_prowler(home: Path) -> str:
    """The demo's policy: the shipped one, with Prowler enabled on a few services when it is installed
    (``make setup-prowler``; ``make demo`` does it). Exported as ATTESTLY_POLICY_DIR for every run."""
    import shutil

    from attestly import config
    from attestly.scanners.prowler import ProwlerUnavailable, prowler_binary

    try:
        binary = prowler_binary()
    except ProwlerUnavailable as exc:
        return f"Prowler not used ({exc})"
    target = home / "demo-policy"
    shutil.copytree(config.project_dir() / "include" / "policy", target, dirs_exist_ok=True)
    with (target / "aws.yaml").open("a", encoding="utf-8") as f:
        f.write(
            "\n# Added by `attestly demo`: Prowler on a few services of the demo estate.\n"
            "sources:\n  prowler:\n    enabled: true\n    services: [s3, iam, kms]\n"
        )
    os.environ["ATTESTLY_POLICY_DIR"] = str(target)
    return f"Prowler ({binary}) on s3, iam and kms of every account, policy {target}"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attestly.cli", *args], capture_output=True, text=True, check=False
    )


@contextlib.contextmanager
def _api_server() -> Iterator[dict[str, Any]]:
    """Airflow's api-server (which serves the Evidence view): the stack's if it runs, else one started for
    this step (registered with the stack, so `make stop` stops it too) and stopped afterwards. Yields
    ``{url, username, password}`` of the stack's admin login."""
    from attestly_dev.stack import airflow_services, core, procs

    p = core.paths()
    table = procs.ProcTable(p.procs)
    name = "airflow-api-server"
    url = f"http://127.0.0.1:{int(core._state(p)['ports']['airflow_api'])}"
    running = table.load().get(name)
    started = None
    if running is None or not running.alive():
        airflow_bin = str(Path(sys.executable).with_name("airflow"))
        port = url.rsplit(":", 1)[1]
        started = procs.spawn(
            name,
            [airflow_bin, "api-server", "--port", port, "--host", "127.0.0.1"],
            log=p.logs / f"{name}.log",
            env=core._airflow_env(p),
        )
        table.add(started)
    try:
        airflow_services._wait_http(
            f"{url}/api/v2/monitor/health", timeout=180, proc=started or table.load()[name]
        )
        user, password = airflow_services._login(p)
        yield {"url": url, "username": user, "password": password}
    finally:
        if started is not None:
            procs.stop(started)
            table.remove(name)


def _approve_erasure_in_ui(request_id: str) -> str | None:
    """Approve an erasure request through the Evidence view's route, as the stack's Airflow admin (an
    authenticated user, recorded as ``ui:<user>``); returns the approver, or None (the reason is said)."""
    import httpx

    try:
        with _api_server() as ui:
            token = httpx.post(
                f"{ui['url']}/auth/token",
                json={"username": ui["username"], "password": ui["password"]},
                timeout=30,
            )
            token.raise_for_status()
            resp = httpx.post(
                f"{ui['url']}/attestly/api/erasure/{request_id}/approve",
                headers={
                    "Authorization": f"Bearer {token.json()['access_token']}",
                    "X-Attestly-Action": "approve-erasure",
                },
                timeout=120,
            )
    except Exception as exc:
        _say(f"  the Evidence view could not be reached: {exc}")
        return None
    if resp.status_code != 201:
        _say(f"  the Evidence view refused the approval: HTTP {resp.status_code} {resp.text[:200]}")
        return None
    return str(resp.json()["approved_by"])


def _erasure_subject() -> str | None:
    """A subject with PHI both live and archived, and no erasure request yet (a re-run picks another)."""
    from attestly.connections import pg_connect

    with pg_connect("attestly_db") as conn:
        archived = {r[0] for r in conn.execute("SELECT subject_id FROM attestly.archive_batch_subjects")}
        asked = {r[0] for r in conn.execute("SELECT subject_id FROM attestly.erasure_requests")}
    with pg_connect("audit_db") as conn:
        live = [
            r[0]
            for r in conn.execute(
                "SELECT subject_id FROM audit.events WHERE phi_ciphertext IS NOT NULL "
                "GROUP BY subject_id ORDER BY count(*) DESC, subject_id LIMIT 500"
            )
        ]
    for s in live:
        if s in archived and s not in asked:
            return str(s)
    return next((str(s) for s in live if s not in asked), None)


def _phi_counts(subject: str) -> dict[str, dict[str, int]]:
    done = _cli("phi", "read", "--subject", subject, "--json")
    try:
        return dict(json.loads(done.stdout)["counts"])
    except (json.JSONDecodeError, KeyError):
        return {"live": {}, "archived": {}}


def _fmt(counts: dict[str, dict[str, int]]) -> str:
    return "; ".join(
        f"{where}: " + (", ".join(f"{n} {s}" for s, n in sorted(c.items())) or "no rows")
        for where, c in counts.items()
    )


def _due_month(today: date) -> date:
    """The month whose pci-audit retention (12 months after its end) ends on the first of this month."""
    from attestly.policy import add_months

    return add_months(today.replace(day=1), -13)


def _due_keys(today: date) -> list[tuple[str, str]]:
    """(key id, batch id) of the live archive keys whose retention has ended by ``today``."""
    from attestly.connections import pg_connect

    with pg_connect("attestly_db") as conn:
        rows = conn.execute(
            "SELECT k.key_id, min(b.batch_id) FROM attestly.data_keys k "
            "JOIN attestly.archive_batches b ON b.key_id = k.key_id "
            "WHERE k.kind = 'archive' AND k.destroyed_at IS NULL GROUP BY k.key_id "
            "HAVING max(b.dispose_after) <= %s ORDER BY k.key_id",
            (today,),
        ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def _disposal_story(today: date) -> dict[str, list[str]]:
    passed: list[str] = []
    failed: list[str] = []
    subject = _erasure_subject()
    if subject is None:
        _say("  no subject with PHI to erase")
    else:
        before = _phi_counts(subject)
        req = _cli("erase", "request", "--subject", subject, "--reason", "GDPR Art. 17 request (demo ticket)",
                   "--json")  # fmt: skip
        rid = json.loads(req.stdout)["request_id"] if req.returncode == 0 else None
        if rid:
            requester = json.loads(req.stdout)["requested_by"]
            # The command line records the OS user for request and approval alike, so the same OS user
            # cannot approve; a second person approves in the Evidence view, logged in to Airflow.
            own = _cli("erase", "approve", rid)
            _say(f"  erasure request {rid} for subject {subject}: requested from the CLI by {requester}")
            _say(
                f"  the same OS user approving it is refused (exit {own.returncode}): {own.stderr.strip()[:140]}"
            )
            approver = _approve_erasure_in_ui(rid)
            if approver:
                _say(f"  approved in the Airflow UI's Evidence view by {approver}, a second person")
            else:
                failed.append(f"erasure request {rid} could not be approved in the Evidence view")
        _say(f"  {subject} before: {_fmt(before)}")
    due = _due_keys(today)
    for key_id, _batch in due:
        _say(f"  archive key {key_id}: its retention has ended (by today's date), so it is due")
    ok = run_dag("key_disposal", today)
    if subject is not None:
        after = _phi_counts(subject)
        _say(f"  {subject} after:  {_fmt(after)} (who, when and what action are all still there)")
        erased = all(set(c) <= {"erased"} for c in after.values()) and any(after.values())
        if ok and erased:
            passed.append(
                f"erasure of {subject}: PHI crypto-erased in {sum(after['live'].values())} live and "
                f"{sum(after['archived'].values())} archived rows; certificate of destruction stored as evidence"
            )
        else:
            failed.append(f"erasure of {subject} did not complete: see the key_disposal log")
    # A run dated in the future is what anyone allowed to trigger a DAG could create: it is refused, and
    # the refusal is ledgered. Nothing is ever destroyed before its date by the real clock.
    future = today + timedelta(days=240)
    _say(f"  a key_disposal run dated {future} (in the future) is triggered:")
    refused_ok = not run_dag("key_disposal", future)
    refusals = [b for b in _ledger("refusal") if b.get("as_of") == future.isoformat()]
    if refused_ok and refusals:
        _say(f"  refused and ledgered: {refusals[-1]['reason'][:150]}…")
        passed.append(
            f"a key_disposal run dated {future} was refused (nothing destroyed early) and the refusal ledgered"
        )
    else:
        failed.append(f"the future-dated key_disposal run ({future}) was not refused: see its log")
    if not due:
        _say("  no archive month at the end of its retention today")
        return {"passed": passed, "failed": failed}
    status = _cli("disposal", "status", "--json")
    certs = []
    with contextlib.suppress(json.JSONDecodeError, KeyError):
        certs = json.loads(status.stdout)["certificates"]
    for key_id, batch_id in due:
        restore = _cli("archive", "restore", batch_id, "--into", f"demo_check_{int(time.time())}")
        _say(
            f"  {key_id}: restore of {batch_id} now exits {restore.returncode} "
            f"({(restore.stderr.strip() or restore.stdout.strip())[:160]})"
        )
        if ok and restore.returncode != 0 and "destroyed" in restore.stderr:
            passed.append(
                f"disposal of {key_id} (its retention ended this month): the archive object, locked for its whole "
                "retention, is still in the bucket and no longer decrypts; its KMS key is scheduled for deletion "
                "(the certificate says until when that could still be cancelled)"
            )
        else:
            failed.append(f"disposal of {key_id} did not complete: see the key_disposal log")
    for c in certs:
        _say(
            f"  certificate {c['certificate_id']}: {len(c['key_ids'])} key(s), issued {c['issued_at']} by {c['run_id']}"
        )
    return {"passed": passed, "failed": failed}


def _ledger(kind: str) -> list[dict[str, Any]]:
    from attestly.ledger import Ledger

    with Ledger.connect() as ledger:
        return [e.body for e in ledger.entries(kind=kind)]


if __name__ == "__main__":
    sys.exit(run())
