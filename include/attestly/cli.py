"""The ``attestly`` command line (a contract: see README).

Exit codes: 0 success, 1 a check found a problem, 2 bad input or configuration. ``--json`` prints one
JSON document on stdout for machines; human output goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input or configuration (exit 2)."""


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc


def _parse_ts(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a timestamp (ISO 8601)") from exc
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def stack_env() -> None:
    """Use the embedded local stack's connections unless the caller already provides them.

    The local stack is development tooling (``attestly_dev``, not in the image nor a production install):
    where it is not installed there is nothing to apply and the connections come from the environment
    (``AIRFLOW_CONN_*``), a secrets backend or Airflow.
    """
    import os

    if os.environ.get("AIRFLOW_CONN_ATTESTLY_DB"):
        return
    try:
        from attestly_dev.stack import core
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.partition(".")[0] == "attestly_dev":
            return
        raise
    if core.paths().state.exists():
        core.apply_environment()


# ----------------------------------------------------------------------------------------- development

#: What the development commands (``stack``, ``seed``, ``demo``) need beyond the product: the package
#: ``attestly_dev`` and the services of the local stack from requirements-dev.txt.
DEV_MODULES = ("attestly_dev", "moto", "pgserver", "aiosmtpd")
DEV_INSTALL_HINT = (
    "this is a development command: it needs the development tooling ({missing}), which a production "
    "install and the image leave out. In a checkout of the project: `make setup`, or "
    "`pip install -r requirements-dev.txt && pip install --no-deps -e .`"
)


class DevToolingMissing(UsageError):
    """A development command was run where the development requirements are not installed (exit 2)."""


def _require_dev_tooling() -> None:
    """Raise :class:`DevToolingMissing` naming what is missing, before a development command starts."""
    import importlib.util

    missing = [m for m in DEV_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise DevToolingMissing(DEV_INSTALL_HINT.format(missing=", ".join(missing)))


# ----------------------------------------------------------------------------------------------- stack


def cmd_stack(args: argparse.Namespace) -> int:
    _require_dev_tooling()
    from attestly_dev.stack import core

    if args.action == "up":
        st = core.up()
        _print_status(st, as_json=args.json)
        return EXIT_OK if st["healthy"] else EXIT_PROBLEM
    if args.action == "down":
        stopped = core.down()
        if args.json:
            _print_json({"stopped": stopped})
        else:
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return EXIT_OK
    if args.action == "status":
        st = core.status()
        _print_status(st, as_json=args.json)
        return EXIT_OK if st["healthy"] else EXIT_PROBLEM
    if args.action == "env":
        if not core.paths().state.exists():
            raise UsageError("no local stack yet: run `attestly stack up` first")
        env = core.environment()
        if args.json:
            _print_json(env)
        else:
            import shlex

            for key, value in sorted(env.items()):
                print(f"export {key}={shlex.quote(value)}")
        return EXIT_OK
    raise UsageError(f"unknown stack action {args.action!r}")


def _print_status(st: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        _print_json(st)
        return
    print(f"stack home: {st['home']}")
    if not st["services"]:
        print("not set up: run `attestly stack up`")
        return
    for name, s in st["services"].items():
        mark = "ok  " if s["healthy"] else "DOWN"
        pid = f" pid {s['pid']}" if s.get("pid") else ""
        print(f"  [{mark}] {name:<9} {s['address']}{pid}  {s['detail']}")


# ---------------------------------------------------------------------------------------------- policy


def cmd_policy_check(args: argparse.Namespace) -> int:
    from attestly.policy import check_policy_cli

    return check_policy_cli(args.policy_dir, args.json)


# ------------------------------------------------------------------------------------------------ seed


def cmd_seed_audit(args: argparse.Namespace) -> int:
    _require_dev_tooling()
    from attestly_dev import audit_seed as seed

    stack_env()
    try:
        injections = [seed.parse_injection(spec) for spec in args.inject]
    except seed.InjectionError as exc:
        raise UsageError(str(exc)) from exc
    sources = [s.strip() for s in args.sources.split(",")] if args.sources else None
    try:
        report = seed.seed_audit(
            start=args.start,
            days=args.days,
            events_per_day=args.events_per_day,
            sources=sources,
            injections=injections,
            random_seed=args.random_seed,
        )
    except seed.SeedError as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        _print_json(report)
    else:
        print(
            f"loaded {report['rows']} events for {len(report['sources'])} sources "
            f"({report['start']} .. {report['end']}) in {report['seconds']:.1f}s "
            f"({report['rows_per_second']:.0f} events/s)"
        )
        for inj in report["injected"]:
            print(f"  planted {inj['kind']}: {inj['count']} ({inj['summary']})")
    return EXIT_OK


def cmd_seed_aws(args: argparse.Namespace) -> int:
    _require_dev_tooling()
    from attestly.collectors.aws import AccountTarget
    from attestly.policy import load_policy
    from attestly_dev import aws_seed

    stack_env()
    policy = load_policy(args.policy_dir)
    accounts = [
        AccountTarget(
            id=a.id,
            name=a.name,
            role_arn=a.role_arn,
            regions=tuple(a.regions),
            endpoint_url=a.endpoint_url or None,
        )
        for a in policy.aws.accounts
    ]
    expected = aws_seed.seed_aws_estate(accounts=accounts)
    if args.json:
        _print_json(expected)
    else:
        print(f"seeded the AWS estate in {len(accounts)} accounts; planted findings:")
        for collector, by_status in sorted(expected.items()):
            fails = by_status.get("fail", [])
            print(f"  {collector}: {len(fails)} failing")
    return EXIT_OK


# ------------------------------------------------------------------------------------------- evidence


def cmd_verify(args: argparse.Namespace) -> int:
    from attestly import config
    from attestly.connections import ConnectionNotFound, aws_client
    from attestly.signing import SigningError, load_public_key, signer_from_connection
    from attestly.verify import ledger_rows, verify_bucket

    if args.from_date and args.to_date and args.from_date > args.to_date:
        raise UsageError(f"--from {args.from_date} is after --to {args.to_date}: nothing to verify")
    if not 1 <= args.concurrency <= 256:
        raise UsageError(f"--concurrency {args.concurrency}: give 1 to 256")
    stack_env()
    try:
        if args.public_key:
            public_pem = load_public_key(args.public_key)
        else:
            try:
                public_pem = signer_from_connection().public_key_pem()
            except (ConnectionNotFound, SigningError) as exc:
                raise UsageError(f"--public-key FILE is required here ({exc})") from exc
    except SigningError as exc:
        raise UsageError(str(exc)) from exc
    s3 = aws_client("s3", endpoint_url=args.endpoint_url) if args.endpoint_url else aws_client("s3")
    rows = None
    if args.ledger:
        rows = ledger_rows()
    report = verify_bucket(
        s3=s3,
        bucket=args.bucket or config.evidence_bucket(),
        public_key_pem=public_pem,
        start=_as_utc(args.from_date),
        end=_as_utc(args.to_date, end_of_day=True),
        concurrency=args.concurrency,
        ledger_entries=rows,
    )
    if args.json:
        _print_json(report.to_dict())
    else:
        for line in report.summary_lines():
            print(line)
    return EXIT_OK if report.ok else EXIT_PROBLEM


def _as_utc(d: date | None, *, end_of_day: bool = False) -> datetime | None:
    if d is None:
        return None
    from datetime import timedelta

    ts = datetime(d.year, d.month, d.day, tzinfo=UTC)
    return ts + timedelta(days=1) if end_of_day else ts


def cmd_evidence_list(args: argparse.Namespace) -> int:
    from attestly.ledger import Ledger

    stack_env()
    start, end = _as_utc(args.from_date), _as_utc(args.to_date, end_of_day=True)
    rows = []
    with Ledger.connect() as ledger:
        for e in ledger.entries(kind="evidence"):
            b = e.body
            if args.collector and b.get("collector") != args.collector:
                continue
            if args.control and args.control not in b.get("controls", []):
                continue
            p_start = datetime.fromisoformat(b["period_start"].replace("Z", "+00:00"))
            p_end = datetime.fromisoformat(b["period_end"].replace("Z", "+00:00"))
            if (start and p_end <= start) or (end and p_start >= end):
                continue
            rows.append({"seq": e.seq, **b})
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            scope = "/".join(str(v) for _, v in sorted(r.get("scope", {}).items()))
            print(
                f"{r['sha256'][:16]}  {r['period_start'][:10]}  {r['result']:<14} {r['collector']:<34} {scope}"
            )
        print(f"{len(rows)} evidence item(s)")
    return EXIT_OK


def cmd_evidence_add(args: argparse.Namespace) -> int:
    from attestly.connections import ConnectionNotFound
    from attestly.ledger import Ledger
    from attestly.manual import ManualEvidenceError, add_evidence, default_recorder, read_files
    from attestly.policy import load_policy
    from attestly.signing import SigningError, signer_from_connection
    from attestly.store import EvidenceStore

    policy = load_policy()
    try:
        # Everything the command line alone can check, before any connection is opened.
        from attestly.manual import check_controls

        check_controls(policy, args.control)
        if args.period_to < args.period_from:
            raise ManualEvidenceError(
                f"--period-to {args.period_to.isoformat()} is before --period-from {args.period_from.isoformat()}"
            )
        files = read_files(args.file, max_file_mib=policy.manual_evidence.max_file_mib)
    except ManualEvidenceError as exc:
        raise UsageError(str(exc)) from exc
    stack_env()
    try:
        signer = signer_from_connection()
    except (ConnectionNotFound, SigningError) as exc:
        raise UsageError(f"the signing key is not available ({exc})") from exc
    store = EvidenceStore.from_connection()
    with Ledger.connect() as ledger:
        try:
            recorded = add_evidence(
                policy=policy,
                ledger=ledger,
                store=store,
                signer=signer,
                controls=args.control,
                files=files,
                period_from=args.period_from,
                period_to=args.period_to,
                title=args.title,
                attested_by=args.attested_by,
                recorded_by=default_recorder(),
                exception=args.exception,
            )
        except ManualEvidenceError as exc:
            raise UsageError(str(exc)) from exc
    out = recorded.to_dict()
    if args.json:
        _print_json(out)
    else:
        state = "recorded" if recorded.created else "already recorded (nothing written)"
        print(f"{state}: evidence {out['sha256']} (ledger seq {out['ledger_seq']})")
        print(f"  controls:    {', '.join(out['controls'])}")
        print(f"  period:      {out['period']['from']} .. {out['period']['to']}  result {out['result']}")
        print(f"  attested by: {out['attested_by']} at {out['attested_at']}")
        for a in out["attachments"]:
            print(
                f"  file:        {a['name']}  {a['media_type'].split(';')[0]}  {a['size']:,} bytes  sha256 {a['sha256']}"
            )
    return EXIT_OK


def cmd_evidence_due(args: argparse.Namespace) -> int:
    from attestly.cadence import due_status
    from attestly.clock import trusted_now
    from attestly.ledger import Ledger
    from attestly.policy import load_policy

    policy = load_policy()
    stack_env()
    with Ledger.connect() as ledger:
        today = trusted_now(ledger.conn).date()
        rows = due_status(policy, ledger.entries(kind="evidence"), today=today)
    if args.control:
        rows = [r for r in rows if r.control_id in args.control]
    if args.json:
        _print_json([r.to_dict() for r in rows])
    else:
        for r in rows:
            last = r.last_period_end.isoformat() if r.last_period_end else "never"
            due = r.due_date.isoformat() if r.due_date else "now"
            print(
                f"{r.status:<9} {r.control_id:<32} {r.cadence:<10} last covers to {last:<10}  due {due:<10}  {r.owner}"
            )
        counts: dict[str, int] = {}
        for r in rows:
            counts[r.status] = counts.get(r.status, 0) + 1
        print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no manual controls in scope")
    return EXIT_PROBLEM if any(r.status in ("overdue", "never") for r in rows) and args.strict else EXIT_OK


def cmd_evidence_show(args: argparse.Namespace) -> int:
    from attestly import config
    from attestly.connections import aws_client
    from attestly.evidence import object_key, parse_item, sha256_hex

    stack_env()
    digest = args.sha256.lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise UsageError(f"{args.sha256!r} is not a SHA-256 (64 hex digits)")
    s3 = aws_client("s3")
    try:
        raw = s3.get_object(Bucket=config.evidence_bucket(), Key=object_key(digest))["Body"].read()
    except s3.exceptions.ClientError as exc:
        print(
            f"attestly: no evidence object {object_key(digest)} ({exc.response['Error']['Code']})",
            file=sys.stderr,
        )
        return EXIT_PROBLEM
    if sha256_hex(raw) != digest:
        print(f"attestly: {object_key(digest)} does not hash to its name: ALTERED", file=sys.stderr)
        return EXIT_PROBLEM
    _print_json(parse_item(raw))
    return EXIT_OK


def cmd_quality_run(args: argparse.Namespace) -> int:
    from attestly.quality import quality_cli

    stack_env()
    if args.to_ts <= args.from_ts:
        raise UsageError(f"--to {args.to_ts.isoformat()} must be after --from {args.from_ts.isoformat()}")
    return quality_cli(args.from_ts, args.to_ts, args.json)


# ------------------------------------------------------------------------------------------------ demo


def cmd_demo(args: argparse.Namespace) -> int:
    _require_dev_tooling()
    from attestly_dev import demo

    return demo.run(days=args.days, events_per_day=args.events_per_day)


# ------------------------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attestly",
        description="Compliance evidence and retention on Apache Airflow. Exit codes: 0 ok, 1 a check "
        "found a problem, 2 bad input or configuration.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("stack", help="the embedded local stack (PostgreSQL, moto S3/KMS, SMTP, Airflow home)")
    p.add_argument("action", choices=["up", "down", "status", "env"])
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("policy", help="policy as code")
    psub = p.add_subparsers(dest="policy_action", required=True)
    pc = psub.add_parser("check", help="validate include/policy (or --policy-dir)")
    pc.add_argument("--policy-dir", type=Path, default=None)
    pc.add_argument("--json", action="store_true")
    pc.set_defaults(func=cmd_policy_check)

    p = sub.add_parser("seed", help="synthetic data for the demo and tests")
    ssub = p.add_subparsers(dest="seed_action", required=True)
    sa = ssub.add_parser(
        "audit",
        help="load synthetic audit events with COPY",
        description="Load synthetic audit events. --inject KIND:key=value,... plants a fault: "
        "gap:source=S,start=TS,hours=H | seq-hole:source=S,count=N | duplicate:count=N | "
        "null:column=C,count=N | bad-enum:column=C,count=N | phi-leak:count=N | chain-break:count=N | "
        "future:count=N",
    )
    sa.add_argument("--start", type=_parse_date, required=True, help="first day (UTC), YYYY-MM-DD")
    sa.add_argument("--days", type=int, required=True)
    sa.add_argument("--events-per-day", type=int, required=True)
    sa.add_argument("--sources", default=None, help="comma-separated subset of sources.yaml sources")
    sa.add_argument("--inject", action="append", default=[], metavar="SPEC")
    sa.add_argument("--random-seed", type=int, default=None, help="reproducible data (default: from --start)")
    sa.add_argument("--json", action="store_true", help="print exactly what was planted")
    sa.set_defaults(func=cmd_seed_audit)
    sw = ssub.add_parser("aws", help="build a known estate of compliant and non-compliant resources")
    sw.add_argument("--policy-dir", type=Path, default=None)
    sw.add_argument("--json", action="store_true")
    sw.set_defaults(func=cmd_seed_aws)

    p = sub.add_parser(
        "verify",
        help="verify the evidence bucket from its signed digests (bucket + public key alone)",
        description="Re-hash every evidence object, check version ids, lock mode and retain-until, every "
        "digest signature and the chain. Exit 1 on any problem.",
    )
    p.add_argument(
        "--from", dest="from_date", type=_parse_date, default=None, help="first day of evidence to check"
    )
    p.add_argument(
        "--to", dest="to_date", type=_parse_date, default=None, help="last day of evidence to check"
    )
    p.add_argument("--bucket", default=None, help="evidence bucket (default $ATTESTLY_EVIDENCE_BUCKET)")
    p.add_argument("--public-key", type=Path, default=None, help="PEM public key the digests are signed with")
    p.add_argument("--endpoint-url", default=None, help="S3 endpoint (MinIO, a local emulator)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--ledger", action="store_true", help="also cross-check the ledger database (attestly_db)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("evidence", help="read evidence back")
    esub = p.add_subparsers(dest="evidence_action", required=True)
    el = esub.add_parser("list", help="evidence items in the ledger")
    el.add_argument("--from", dest="from_date", type=_parse_date, default=None)
    el.add_argument("--to", dest="to_date", type=_parse_date, default=None)
    el.add_argument("--collector", default=None)
    el.add_argument("--control", default=None, help="e.g. soc2:CC6.1")
    el.add_argument("--json", action="store_true")
    el.set_defaults(func=cmd_evidence_list)
    ea = esub.add_parser(
        "add",
        help="record manual evidence: files and a signed statement for manual controls",
        description="Store the files (content-addressed, Object Lock) and a statement naming them as an "
        "evidence item, ledgered and signed like collected evidence. Files are checked by content (PDF, "
        "PNG, JPEG, UTF-8 text/CSV/JSON, Office documents without macros). Exit 2 with the reason on bad "
        "input; nothing is written then.",
    )
    ea.add_argument(
        "--control", action="append", required=True, help="a manual control, e.g. soc2:CC1.4 (repeatable)"
    )
    ea.add_argument("--file", action="append", required=True, type=Path, help="a file to attach (repeatable)")
    ea.add_argument("--period-from", type=_parse_date, required=True, help="first day the evidence covers")
    ea.add_argument("--period-to", type=_parse_date, required=True, help="last day the evidence covers")
    ea.add_argument("--title", required=True, help="what this is, e.g. 'Q3 2026 access review'")
    ea.add_argument("--attested-by", required=True, help="who attests it (name, role)")
    ea.add_argument(
        "--exception", default=None, help="the evidence shows the control did not operate: what went wrong"
    )
    ea.add_argument("--json", action="store_true")
    ea.set_defaults(func=cmd_evidence_add)
    ed = esub.add_parser("due", help="manual controls: when evidence was last given and when it is next due")
    ed.add_argument("--control", action="append", default=None)
    ed.add_argument("--strict", action="store_true", help="exit 1 when any control is overdue")
    ed.add_argument("--json", action="store_true")
    ed.set_defaults(func=cmd_evidence_due)
    es = esub.add_parser("show", help="print one evidence item (checked against its hash)")
    es.add_argument("sha256")
    es.set_defaults(func=cmd_evidence_show)

    p = sub.add_parser("quality", help="audit-log completeness and integrity (Great Expectations)")
    qsub = p.add_subparsers(dest="quality_action", required=True)
    qr = qsub.add_parser(
        "run", help="run the suite over an interval outside Airflow; exit 1 if a check fails"
    )
    qr.add_argument("--from", dest="from_ts", type=_parse_ts, required=True)
    qr.add_argument("--to", dest="to_ts", type=_parse_ts, required=True)
    qr.add_argument("--json", action="store_true")
    qr.set_defaults(func=cmd_quality_run)

    from attestly.archive.cli import register as register_archive
    from attestly.deviations.cli import register as register_exceptions
    from attestly.disposal.cli import register as register_disposal
    from attestly.reports.cli import register as register_reports
    from attestly.sampling import register as register_sampling

    register_archive(sub)
    register_disposal(sub)
    register_reports(sub)
    register_exceptions(sub)
    register_sampling(sub)

    p = sub.add_parser("demo", help="what `make demo` runs: the whole cycle on the local stack")
    p.add_argument("--days", type=int, default=2)
    p.add_argument("--events-per-day", type=int, default=2000)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as exc:
        print(f"attestly: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        # Configuration errors from the policy loader carry their own exit code.
        from attestly.policy import PolicyErrors

        if isinstance(exc, PolicyErrors):
            for err in exc.errors:
                print(f"attestly: policy error: {err}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
