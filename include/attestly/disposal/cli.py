"""``attestly erase request | approve | status``, ``attestly disposal run | status`` and ``attestly phi read``.

Wire into the main parser with :func:`register`. Exit codes: 0 done, 1 a check found a problem (a key
that could not be proven destroyed, a request blocked by a legal hold in ``erase status``), 2 bad input.
``--json`` prints one JSON document on stdout; messages go to stderr. No command prints PHI or key
material.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime
from typing import Any

from attestly.cliutil import EXIT_OK, EXIT_PROBLEM
from attestly.cliutil import error as _error
from attestly.cliutil import open_context as _context
from attestly.cliutil import parse_date as _date
from attestly.cliutil import print_json as _print_json
from attestly.cliutil import refuse_identity_flag as _refuse_identity_flag
from attestly.cliutil import who as _who

# ------------------------------------------------------------------------------------------- erasure


def cmd_erase_request(args: argparse.Namespace) -> int:
    from attestly.disposal.erasure import ErasureError, request_erasure

    if args.requested_by is not None:
        return _refuse_identity_flag("--requested-by", "Request it")
    with _context("cli:erase-request") as ctx:
        try:
            req = request_erasure(
                ctx.db,
                ctx.ledger,
                subject_id=args.subject,
                reason=args.reason,
                requested_by=_who(),
                subject_id_pattern=ctx.policy.sources.audit_table.subject_id_pattern,
            )
        except ErasureError as exc:
            return _error(str(exc))
    if args.json:
        _print_json(req.to_dict())
    else:
        print(
            f"erasure request {req.request_id} recorded (requested by {req.requested_by}); it is acted on "
            "once approved by a different person, in the Airflow UI (Browse > Evidence), or by "
            f"`attestly erase approve {req.request_id}` run by another OS user"
        )
    return EXIT_OK


def cmd_erase_approve(args: argparse.Namespace) -> int:
    from attestly.disposal.erasure import ErasureError, approve_erasure

    if args.approved_by is not None:
        return _refuse_identity_flag("--approved-by", "Approve it")
    with _context("cli:erase-approve") as ctx:
        try:
            req = approve_erasure(ctx.db, ctx.ledger, args.request_id, approved_by=_who())
        except ErasureError as exc:
            return _error(str(exc))
    if args.json:
        _print_json(req.to_dict())
    else:
        print(
            f"erasure request {req.request_id} approved by {req.approved_by}; the next key_disposal run "
            "destroys the subject's keys (unless a legal hold blocks it)"
        )
    return EXIT_OK


def erase_status(ctx: Any) -> list[dict[str, Any]]:
    """Every request with its state; approved ones blocked by a hold say so and name the holds."""
    from attestly.disposal.erasure import list_requests
    from attestly.disposal.planning import active_hold_batches, subject_holds

    requests = list_requests(ctx.db)
    held = active_hold_batches(ctx) if any(r.state == "approved" for r in requests) else {}
    out = []
    for r in requests:
        d = r.to_dict()
        if r.state == "approved":
            holds = subject_holds(ctx, r.subject_id, held)
            if holds:
                d["state"] = "blocked"
                d["blocked_by"] = holds
        out.append(d)
    return out


def cmd_erase_status(args: argparse.Namespace) -> int:
    with _context("cli:erase-status") as ctx:
        rows = erase_status(ctx)
    if args.json:
        _print_json({"requests": rows})
    else:
        if not rows:
            print("no erasure requests")
        for d in rows:
            extra = f" by {', '.join(d['blocked_by'])}" if d.get("blocked_by") else ""
            cert = f" certificate {d['certificate_id']}" if d.get("certificate_id") else ""
            print(
                f"{d['request_id']}  {d['state']}{extra}  subject {d['subject']}  requested {d['requested_at']} "
                f"by {d['requested_by']}; approved by {d['approved_by'] or '-'}{cert}; reason: {d['reason']}"
            )
    return EXIT_PROBLEM if any(d["state"] == "blocked" for d in rows) else EXIT_OK


# ------------------------------------------------------------------------------------------ disposal


def cmd_disposal_run(args: argparse.Namespace) -> int:
    from attestly.clock import ClockUntrusted, FutureDatedRun
    from attestly.disposal.runner import DisposalFailed, run_all

    as_of = args.as_of or datetime.now(UTC).date()
    with _context(args.run_id or f"cli:disposal:{datetime.now(UTC):%Y%m%dT%H%M%SZ}") as ctx:
        try:
            summary = run_all(ctx, as_of=as_of)
        except (FutureDatedRun, ClockUntrusted) as exc:
            return _error(str(exc))
        except DisposalFailed as exc:
            if args.json:
                _print_json({"problems": exc.problems})
            print(f"attestly: {exc}", file=sys.stderr)
            return EXIT_PROBLEM
    if args.json:
        _print_json(summary)
    else:
        p = summary["plan"]
        print(
            f"as of {p['as_of']}: {len(p['due'])} key(s) due, {len(p['blocked'])} blocked, "
            f"{len(summary['destroyed'])} destroyed, {len(summary['verified'])} verified, "
            f"{len(summary['certificates'])} certificate(s) issued"
        )
        for b in p["blocked"]:
            print(f"  blocked: {b['ident']} ({b['why']}): {b['detail']}")
        for c in summary["certificates"]:
            print(f"  certificate {c['certificate_id']}: evidence {c['sha256']}")
    return EXIT_OK


def disposal_status(ctx: Any, as_of: date) -> dict[str, Any]:
    from attestly.disposal.planning import plan

    p = plan(ctx, as_of=as_of, projection=True)
    conn = ctx.db
    certs = conn.execute(
        "SELECT c.certificate_id, c.issued_at, c.run_id, c.body->'totals', "
        "(SELECT array_agg(k.key_id ORDER BY k.key_id) FROM attestly.disposal_certificate_keys k "
        " WHERE k.certificate_id = c.certificate_id) FROM attestly.disposal_certificates c ORDER BY c.issued_at"
    ).fetchall()
    keys = conn.execute(
        "SELECT kind, count(*) FILTER (WHERE destroyed_at IS NULL), count(*) FILTER (WHERE destroyed_at IS NOT NULL) "
        "FROM attestly.data_keys GROUP BY kind ORDER BY kind"
    ).fetchall()
    conn.commit()
    return {
        **p.to_dict(),
        "keys": {k: {"live": int(live), "destroyed": int(dead)} for k, live, dead in keys},
        "certificates": [
            {
                "certificate_id": c[0],
                "issued_at": c[1].isoformat(),
                "run_id": c[2],
                "totals": c[3],
                "key_ids": c[4] or [],
            }
            for c in certs
        ],
    }


def cmd_disposal_status(args: argparse.Namespace) -> int:
    as_of = args.as_of or datetime.now(UTC).date()
    with _context("cli:disposal-status") as ctx:
        st = disposal_status(ctx, as_of)
    if args.json:
        _print_json(st)
    else:
        for kind, n in sorted(st["keys"].items()):
            print(f"{kind} keys: {n['live']} live, {n['destroyed']} destroyed")
        print(
            f"as of {st['as_of']}: {len(st['due'])} due, {len(st['blocked'])} blocked, {len(st['pending'])} pending"
        )
        for d in st["due"]:
            print(f"  due: {d['key_id']} ({d['reason']})")
        for b in st["blocked"]:
            print(f"  blocked: {b['ident']} ({b['why']}): {b['detail']}")
        for c in st["certificates"]:
            print(
                f"certificate {c['certificate_id']} issued {c['issued_at']} by {c['run_id']}: {len(c['key_ids'])} key(s)"
            )
    return EXIT_OK


# -------------------------------------------------------------------------------------------- phi


def cmd_phi_read(args: argparse.Namespace) -> int:
    from attestly.disposal.readpath import subject_phi

    with _context("cli:phi-read") as ctx:
        found = subject_phi(ctx, args.subject)
    counts = found.counts()
    if args.json:
        _print_json(
            {
                "counts": counts,
                "batches": found.batches,
                "rows": [r.to_dict() for r in found.subject_rows],
            }
        )
    else:
        for where in ("live", "archived"):
            c = counts[where]
            print(
                f"{where}: {sum(c.values())} row(s): "
                + (", ".join(f"{n} {s}" for s, n in sorted(c.items())) or "none")
            )
        for b in found.batches:
            if b["read"] != "ok":
                print(f"  archive {b['batch_id']}: not readable ({b['read']})")
    bad = sum(counts[w].get("unreadable", 0) for w in counts)
    return EXIT_PROBLEM if bad else EXIT_OK


# -------------------------------------------------------------------------------------------- register


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``erase``, ``disposal`` and ``phi`` to the main parser's sub-commands."""
    p = sub.add_parser("erase", help="erasure of a data subject: request, approve (four eyes), status")
    esub = p.add_subparsers(dest="erase_action", required=True)
    r = esub.add_parser(
        "request",
        help="request erasure of a subject's PHI (crypto-shredding its keys, live and archived rows)",
    )
    r.add_argument("--subject", required=True, help="the data subject id")
    r.add_argument("--reason", required=True, help="legal basis or ticket (e.g. 'GDPR Art. 17, ticket 4411')")
    r.add_argument("--requested-by", default=None, help=argparse.SUPPRESS)  # retired: refused, see cliutil
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_erase_request)
    a = esub.add_parser(
        "approve",
        help="approve a request as the OS user (refused for its requester; another person can approve in "
        "the Airflow UI's Evidence view)",
    )
    a.add_argument("request_id")
    a.add_argument("--approved-by", default=None, help=argparse.SUPPRESS)  # retired: refused
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_erase_approve)
    s = esub.add_parser(
        "status", help="every request and its state (exit 1 if one is blocked by a legal hold)"
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_erase_status)

    p = sub.add_parser("disposal", help="key disposal outside Airflow: run, status")
    dsub = p.add_subparsers(dest="disposal_action", required=True)
    r = dsub.add_parser("run", help="destroy, verify and certify what is due (the key_disposal DAG's steps)")
    r.add_argument("--as-of", type=_date, default=None, help="what is due at this date (default: today, UTC)")
    r.add_argument("--run-id", default=None)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_disposal_run)
    s = dsub.add_parser("status", help="keys live and destroyed, due, blocked, certificates")
    s.add_argument("--as-of", type=_date, default=None)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_disposal_status)

    p = sub.add_parser("phi", help="a subject's PHI through the normal read path (counts only)")
    psub = p.add_subparsers(dest="phi_action", required=True)
    r = psub.add_parser(
        "read", help="find a subject's rows, live and archived, and try to decrypt their PHI; prints counts"
    )
    r.add_argument("--subject", required=True)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_phi_read)
