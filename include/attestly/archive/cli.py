"""``attestly hold add | list | release`` and ``attestly archive status | restore``.

Wire into the main parser with :func:`register`. Every handler returns the exit code: 0 done, 1 a check
found a problem (a restore that does not reconcile), 2 bad input (the message names the value).
``--json`` prints one JSON document on stdout; messages go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from attestly.cliutil import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from attestly.cliutil import error as _error
from attestly.cliutil import open_context as _context
from attestly.cliutil import parse_date as _date
from attestly.cliutil import print_json as _print_json
from attestly.cliutil import who as _who

__all__ = ["EXIT_OK", "EXIT_PROBLEM", "EXIT_USAGE", "register"]


# ----------------------------------------------------------------------------------------------- holds


def cmd_hold_add(args: argparse.Namespace) -> int:
    from attestly.archive.errors import HoldError
    from attestly.holds import add_hold

    with _context("cli:hold-add") as ctx:
        try:
            hold, covered = add_hold(
                ctx,
                reason=args.reason,
                source=args.source,
                subject_id=args.subject,
                from_date=args.from_date,
                to_date=args.to_date,
                created_by=_who(),
            )
        except HoldError as exc:
            return _error(str(exc))
    if args.json:
        _print_json({**hold.to_dict(), "covered_batches": covered})
    else:
        print(f"{hold.hold_id}: held ({', '.join(f'{k}={v}' for k, v in hold.criteria().items())})")
        print(f"  archive objects under S3 legal hold: {len(covered)}")
    return EXIT_OK


def cmd_hold_list(args: argparse.Namespace) -> int:
    from attestly.holds import list_holds

    with _context("cli:hold-list") as ctx:
        holds = list_holds(ctx.journal.conn, include_released=args.all)
        covered: dict[str, list[str]] = {}
        for hold_id, batch_id in ctx.journal.conn.execute(
            "SELECT hold_id, batch_id FROM attestly.legal_hold_batches ORDER BY batch_id"
        ).fetchall():
            covered.setdefault(hold_id, []).append(batch_id)
        ctx.journal.conn.commit()
    if args.json:
        _print_json(
            {"holds": [{**h.to_dict(), "covered_batches": covered.get(h.hold_id, [])} for h in holds]}
        )
        return EXIT_OK
    if not holds:
        print("no legal holds" if args.all else "no active legal holds")
    for h in holds:
        state = "active" if h.active else f"released {h.released_at:%Y-%m-%d}"
        crit = ", ".join(f"{k}={v}" for k, v in h.criteria().items())
        print(
            f"{h.hold_id}  {state:<20} {crit}  objects={len(covered.get(h.hold_id, []))}  reason: {h.reason}"
        )
    return EXIT_OK


def cmd_hold_release(args: argparse.Namespace) -> int:
    from attestly.archive.errors import HoldError
    from attestly.holds import release_hold

    with _context("cli:hold-release") as ctx:
        try:
            hold = release_hold(ctx, args.hold_id, reason=args.reason, released_by=_who())
        except HoldError as exc:
            return _error(str(exc))
    if args.json:
        _print_json(hold.to_dict())
    else:
        print(f"{hold.hold_id}: released; held rows are purged by the next retention_archive run")
    return EXIT_OK


# --------------------------------------------------------------------------------------------- archive


def archive_status(ctx: Any) -> list[dict[str, Any]]:
    """One row per batch: state and the figures recorded so far (no key material, no row content)."""
    out = []
    states = ctx.journal.states()
    for b in ctx.journal.batches():
        entries = ctx.journal.entries(b.batch_id)
        by_state: dict[str, Any] = {}
        for e in entries:
            by_state[e.state] = e
        purges = [e.details for e in entries if e.state == "purged"]
        verified = by_state.get("verified")
        uploaded = by_state.get("uploaded")
        current = states.get(b.batch_id)
        out.append(
            {
                "batch_id": b.batch_id,
                "state": current.state if current else "none",
                "since": current.at.isoformat() if current else None,
                "table": b.source_table,
                "class": b.class_name,
                "month": f"{b.month:%Y-%m}",
                "object_key": b.object_key,
                "version_id": uploaded.details.get("version_id") if uploaded else None,
                "retain_until": b.retain_until.isoformat(),
                "key_id": b.key_id,
                "rows": verified.details["archive"]["rows"] if verified else None,
                "content_hash": verified.details["archive"]["content_hash"] if verified else None,
                "purged_rows": sum(int(p["purged_rows"]) for p in purges) if purges else 0,
                "held_online_rows": int(purges[-1]["residual_rows"]) if purges else None,
            }
        )
    return out


def cmd_archive_status(args: argparse.Namespace) -> int:
    with _context("cli:archive-status") as ctx:
        rows = archive_status(ctx)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    if args.json:
        _print_json({"batches": rows, "counts": dict(sorted(counts.items()))})
        return EXIT_OK
    if not rows:
        print("no archive batches yet")
        return EXIT_OK
    print(f"{'batch':<48} {'state':<9} {'rows':>9} {'purged':>9} {'held':>6}  retain until")
    for r in rows:
        print(
            f"{r['batch_id']:<48} {r['state']:<9} {r['rows'] if r['rows'] is not None else '-':>9} "
            f"{r['purged_rows']:>9} {r['held_online_rows'] or 0:>6}  {r['retain_until'][:10]}"
        )
    print("; ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    return EXIT_OK


def cmd_archive_restore(args: argparse.Namespace) -> int:
    from attestly.archive.errors import ArchiveError, BatchNotFound, VerificationMismatch
    from attestly.archive.restore import RestoreTargetError, parse_target, restore_batch
    from attestly.keys import KeyRegistryError

    try:
        parse_target(args.into)
    except RestoreTargetError as exc:
        return _error(str(exc))
    with _context("cli:archive-restore") as ctx:
        try:
            result = restore_batch(ctx, args.batch, into=args.into)
        except (BatchNotFound, RestoreTargetError) as exc:
            return _error(str(exc))
        except VerificationMismatch as exc:
            if args.json:
                _print_json({"batch_id": args.batch, "reconciled": False, "problems": exc.problems})
            print(f"attestly: {exc}", file=sys.stderr)
            return EXIT_PROBLEM
        except (ArchiveError, KeyRegistryError) as exc:
            # Not verified yet, unreadable, or its key destroyed (crypto-erased): cannot be restored.
            print(f"attestly: {exc}", file=sys.stderr)
            return EXIT_PROBLEM
    if args.json:
        _print_json(result)
    else:
        print(
            f"restored {result['rows']} rows of {result['batch_id']} into {result['table']}; "
            f"content hash {result['content_hash']} matches the manifest"
        )
    return EXIT_OK


# -------------------------------------------------------------------------------------------- register


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``hold`` and ``archive`` commands to the main parser's sub-commands."""
    p = sub.add_parser(
        "hold",
        help="legal holds: held rows stay online, archive objects get an S3 legal hold, disposal is blocked",
    )
    hsub = p.add_subparsers(dest="hold_action", required=True)
    a = hsub.add_parser(
        "add",
        help="hold audit rows (criteria combine with AND)",
        description="Hold the audit rows selected by --source, --subject and/or --from/--to (dates, UTC, "
        "--to inclusive). Held rows are never purged; archive objects holding them get an S3 legal hold.",
    )
    a.add_argument("--reason", required=True, help="why (a case or request reference)")
    a.add_argument("--source", default=None, help="a source of sources.yaml")
    a.add_argument("--subject", default=None, help="a data subject id")
    a.add_argument("--from", dest="from_date", type=_date, default=None, help="first day held (YYYY-MM-DD)")
    a.add_argument("--to", dest="to_date", type=_date, default=None, help="last day held (YYYY-MM-DD)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_hold_add)
    ls = hsub.add_parser("list", help="active legal holds (--all: released ones too)")
    ls.add_argument("--all", action="store_true")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_hold_list)
    r = hsub.add_parser(
        "release",
        help="release a hold as the OS user (refused for whoever placed it; another person can release it in "
        "the Airflow UI's Evidence view); its rows are purged by the next archive run",
    )
    r.add_argument("hold_id")
    r.add_argument("--reason", default="released", help="why the hold ends")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_hold_release)

    p = sub.add_parser("archive", help="retention archives: batch states, restore into a scratch table")
    asub = p.add_subparsers(dest="archive_action", required=True)
    st = asub.add_parser("status", help="every archive batch and its state")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_archive_status)
    rs = asub.add_parser(
        "restore",
        help="decrypt an archive into a new table and reconcile it with the manifest (exit 1 if it does not)",
    )
    rs.add_argument("batch", help="batch id, e.g. audit.events.pci-audit.2026-05 (see `archive status`)")
    rs.add_argument("--into", required=True, help="new table: name (schema archive_restore) or schema.name")
    rs.add_argument("--json", action="store_true")
    rs.set_defaults(func=cmd_archive_restore)
