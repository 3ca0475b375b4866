"""``attestly report render``: render the reports of a period without Airflow.

Usage::

    attestly report render --framework soc2 --from 2026-01-01 --to 2026-03-31 --out DIR
        [--framework hipaa ...] [--control soc2:CC6.1 ...] [--formats html,pdf,json]
        [--bucket B] [--public-key FILE] [--store] [--json]

Writes ``DIR/<framework>/<period>/`` (the files of the packet and the packet zip). With ``--store`` it
also stores them in the bucket and ledgers them, as the DAG's store task does (no e-mail).
Exit codes: 0 rendered and every control effective; 1 rendered, and some control has exceptions or
no evidence; 2 bad input or configuration (the message names the bad value).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``report`` command (with its ``render`` action) to the ``attestly`` parser."""
    p = sub.add_parser("report", help="per-control reports, framework index and auditor packet")
    rsub = p.add_subparsers(dest="report_action", required=True)
    r = rsub.add_parser(
        "render",
        help="render a period's reports into a directory (no Airflow needed)",
        description="Render one report per control (HTML, PDF, JSON), the framework index and the auditor "
        "packet for a period, from the ledger and the evidence bucket. Exit 0: every control effective; "
        "1: some control has exceptions or no evidence (files are written); 2: bad input or configuration.",
    )
    r.add_argument(
        "--framework",
        action="append",
        required=True,
        metavar="F",
        help="soc2, hipaa, pci (repeat, or comma-separate; 'all' for every framework)",
    )
    r.add_argument("--from", dest="from_date", required=True, metavar="D", help="first day, YYYY-MM-DD (UTC)")
    r.add_argument(
        "--to", dest="to_date", required=True, metavar="D", help="last day, YYYY-MM-DD (inclusive)"
    )
    r.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    r.add_argument(
        "--control", action="append", default=[], metavar="ID", help="only these controls (repeat)"
    )
    r.add_argument("--formats", default="html,pdf,json", help="comma-separated subset of html,pdf,json")
    r.add_argument("--bucket", default=None, help="evidence bucket (default $ATTESTLY_EVIDENCE_BUCKET)")
    r.add_argument(
        "--public-key", type=Path, default=None, help="PEM public key for the packet (default: the signer's)"
    )
    r.add_argument("--store", action="store_true", help="also store in the bucket and record in the ledger")
    r.add_argument("--json", action="store_true", help="print a JSON summary")
    r.set_defaults(func=cmd_report_render)


def _stack_env() -> None:
    """The local stack's connections where it runs (development checkouts): see ``attestly.cli.stack_env``."""
    from attestly.cli import stack_env

    stack_env()


def _error(message: str) -> int:
    print(f"attestly: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def cmd_report_render(args: argparse.Namespace) -> int:
    from attestly.connections import ConnectionNotFound
    from attestly.policy import PolicyErrors, load_policy
    from attestly.reports.bundle import FORMATS, ReportRequest
    from attestly.reports.model import Period, ReportInputError
    from attestly.signing import SigningError, load_public_key

    try:
        period = Period.parse(args.from_date, args.to_date)
        policy = load_policy()
        frameworks: list[str] = []
        for value in args.framework:
            for fw in (v.strip() for v in value.split(",")):
                if fw == "all":
                    frameworks.extend(policy.frameworks)
                elif fw:
                    frameworks.append(fw)
        frameworks = list(dict.fromkeys(frameworks))
        formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
        for f in formats:
            if f not in FORMATS:
                raise ReportInputError(f"--formats: unknown format {f!r} (known: {', '.join(FORMATS)})")
        for cid in args.control:
            if cid not in policy.controls:
                raise ReportInputError(f"--control: unknown control {cid!r}")
        requests = []
        for fw in frameworks:
            if fw not in policy.frameworks:
                raise ReportInputError(
                    f"--framework: unknown framework {fw!r} (known: {', '.join(policy.frameworks)}, all)"
                )
            mine = tuple(c for c in args.control if policy.controls[c].framework == fw)
            if args.control and not mine:
                continue
            req = ReportRequest(framework=fw, period=period, controls=mine, formats=formats or FORMATS)
            req.control_ids(policy)
            requests.append(req)
        if not requests:
            raise ReportInputError(f"--control {args.control} names no control of {', '.join(frameworks)}")
        public_pem = load_public_key(args.public_key) if args.public_key else None
    except (ReportInputError, SigningError) as exc:
        return _error(str(exc))
    except PolicyErrors as exc:
        for err in exc.errors:
            print(f"attestly: policy error: {err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        summaries = _render(args, requests, public_pem, policy)
    except (ReportInputError, SigningError, ConnectionNotFound) as exc:
        return _error(str(exc))
    if args.json:
        print(json.dumps(summaries, indent=2, sort_keys=True))
    else:
        for s in summaries:
            counts = s["status_counts"]
            print(
                f"{s['framework']} {s['period']['label']}: {counts['effective']} effective, "
                f"{counts['exceptions']} with exceptions, {counts['no_evidence']} without evidence; "
                f"rendition {s['rendition'][:16]} -> {s['out']}"
            )
            if s.get("stored"):
                print(
                    f"  stored under s3://{s['bucket']}/{s['stored']['prefix']} (ledger entry {s['stored']['ledger_seq']})"
                )
    effective = all(st in ("effective", "not_in_scope") for s in summaries for st in s["statuses"].values())
    return EXIT_OK if effective else EXIT_PROBLEM


def _render(
    args: argparse.Namespace, requests: list[Any], public_pem: bytes | None, policy: Any
) -> list[dict[str, Any]]:
    from datetime import UTC, datetime

    from attestly.ledger import Ledger
    from attestly.reports.bundle import airflow_base_url, render_reports
    from attestly.reports.publish import publish
    from attestly.signing import signer_from_connection
    from attestly.store import EvidenceStore, StoreError

    _stack_env()
    from attestly.signing import Signer, fingerprint

    signer: Signer | None
    try:
        signer = signer_from_connection()
        signer_pem = signer.public_key_pem()
    except Exception as exc:
        if public_pem is None:
            from attestly.reports.model import ReportInputError

            raise ReportInputError(f"--public-key FILE is required here ({exc})") from exc
        signer = None  # no signing key here: the packet goes without SHA256SUMS.sig
    if public_pem is None:
        public_pem = signer_pem
    elif signer is not None and fingerprint(signer_pem) != fingerprint(public_pem):
        signer = None  # the key given is not the signing key: nothing to sign SHA256SUMS with
    store = EvidenceStore.from_connection(bucket=args.bucket)
    started = datetime.now(UTC)
    try:
        ledger = Ledger.connect()
    except Exception as exc:  # psycopg.OperationalError: the ledger database is not reachable
        from attestly.reports.model import ReportInputError

        raise ReportInputError(f"cannot open the ledger database (attestly_db): {exc}") from exc
    out: list[dict[str, Any]] = []
    with ledger:
        bundles = render_reports(
            requests=requests,
            ledger=ledger,
            store=store,
            public_key_pem=public_pem,
            airflow_base_url=airflow_base_url(),
            policy=policy,
            signer=signer,
        )
        for b in bundles:
            target = b.write(args.out)
            summary = {
                **b.summary(),
                "out": str(target),
                "bucket": store.bucket,
                "generated_at": started.isoformat(),
            }
            if args.store:
                try:
                    stored = publish(b, store=store, ledger=ledger, airflow=None)
                except StoreError as exc:
                    from attestly.reports.model import ReportInputError

                    raise ReportInputError(str(exc)) from exc
                summary["stored"] = {k: stored[k] for k in ("prefix", "ledger_seq", "created", "packet")}
            out.append(summary)
    return out
