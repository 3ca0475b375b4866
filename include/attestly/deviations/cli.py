"""``attestly exception respond | accept | close | list | show``: management's response to exceptions.

Wire into the main parser with :func:`register`. Exit codes: 0 done, 1 ``list --strict`` found an overdue
response, 2 bad input (the message names the item, finding or exception and why). Who responded,
accepted or closed is the OS user running the command (:func:`attestly.identity.cli_identity`).
"""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any

from attestly.cliutil import EXIT_OK, EXIT_PROBLEM
from attestly.cliutil import error as _error
from attestly.cliutil import parse_date as _date
from attestly.cliutil import print_json as _print_json


def _print_state(d: dict[str, Any]) -> None:
    t = d["target"]
    what = (
        f"item {t['item']} ({t['collector']})"
        if t["type"] == "item"
        else f"finding {t['resource']!r} ({t['collector']}, {t['failing_items']} failing item(s))"
    )
    print(f"{d['exception_id']}  {d['state'].upper()}  {', '.join(d['controls'])}")
    print(f"  failed:       {what}, first {t['first_failed']}")
    print(f"  owner:        {d['owner']}   ticket {d['ticket']}   due {d['due']}")
    print(f"  root cause:   {d['root_cause']}")
    print(f"  responded by: {d['responded_by']} at {d['responded_at']} (ledger seq {d['response_seq']})")
    if d["accepted_by"]:
        print(f"  accepted by:  {d['accepted_by']} at {d['accepted_at']} (ledger seq {d['accept_seq']})")
    if d["retest"]:
        late = " (after the due date)" if d["closed_late"] else ""
        print(
            f"  closed by:    {d['closed_by']} at {d['closed_at']}{late}, re-tested by item "
            f"{d['retest']['item']} ({d['retest']['period_start']}) (ledger seq {d['close_seq']})"
        )


def _open() -> Any:
    from attestly.cli import stack_env
    from attestly.ledger import Ledger

    stack_env()
    return Ledger.connect()


def _store() -> Any:
    from attestly.store import EvidenceStore

    return EvidenceStore.from_connection()


def _today(ledger: Any) -> date:
    from attestly.clock import trusted_now

    return trusted_now(ledger.conn).date()


def cmd_respond(args: argparse.Namespace) -> int:
    from attestly.deviations import ExceptionInputError, respond
    from attestly.identity import cli_identity

    if (args.item is None) == (args.finding is None):
        return _error("give exactly one of --item SHA256 or --finding RESOURCE")
    with _open() as ledger:
        try:
            state, created = respond(
                ledger=ledger,
                store=_store() if args.finding is not None else None,
                item=args.item,
                finding=args.finding,
                collector=args.collector,
                controls=args.control,
                owner=args.owner,
                root_cause=args.root_cause,
                ticket=args.ticket,
                due=args.due,
                responded_by=cli_identity(),
            )
        except ExceptionInputError as exc:
            return _error(str(exc))
        out = state.to_dict(_today(ledger))
    if args.json:
        _print_json({**out, "created": created})
    else:
        print("recorded:" if created else "already recorded (nothing written):")
        _print_state(out)
    return EXIT_OK


def cmd_accept(args: argparse.Namespace) -> int:
    from attestly.deviations import ExceptionInputError, accept
    from attestly.identity import cli_identity

    with _open() as ledger:
        try:
            state, created = accept(ledger=ledger, eid=args.exception_id, accepted_by=cli_identity())
        except ExceptionInputError as exc:
            return _error(str(exc))
        out = state.to_dict(_today(ledger))
    if args.json:
        _print_json({**out, "created": created})
    else:
        print("accepted:" if created else "already accepted (nothing written):")
        _print_state(out)
    return EXIT_OK


def cmd_close(args: argparse.Namespace) -> int:
    from attestly.deviations import ExceptionInputError, close
    from attestly.identity import cli_identity

    with _open() as ledger:
        try:
            state, created = close(
                ledger=ledger,
                store=_store(),
                eid=args.exception_id,
                retest_item=args.retested_by_item,
                closed_by=cli_identity(),
            )
        except ExceptionInputError as exc:
            return _error(str(exc))
        out = state.to_dict(_today(ledger))
    if args.json:
        _print_json({**out, "created": created})
    else:
        print("closed:" if created else "already closed (nothing written):")
        _print_state(out)
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from attestly.deviations import load_states

    with _open() as ledger:
        today = _today(ledger)
        rows = [s.to_dict(today) for s in load_states(ledger).values()]
    if args.control:
        rows = [r for r in rows if set(args.control) & set(r["controls"])]
    if args.state:
        rows = [r for r in rows if r["state"] in args.state]
    rows.sort(key=lambda r: (r["state"] != "overdue", r["state"] != "open", r["due"], r["exception_id"]))
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            t = r["target"]
            what = t["item"][:16] + "…" if t["type"] == "item" else repr(t["resource"])
            print(
                f"{r['exception_id']}  {r['state']:<8} due {r['due']}  {','.join(r['controls']):<28} "
                f"{t['collector']} {what}  owner {r['owner']}"
            )
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["state"]] = counts.get(r["state"], 0) + 1
        print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no exception responses")
    overdue = any(r["state"] == "overdue" for r in rows)
    return EXIT_PROBLEM if overdue and args.strict else EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from attestly.deviations import ExceptionInputError, get_state

    with _open() as ledger:
        try:
            state = get_state(ledger, args.exception_id)
        except ExceptionInputError as exc:
            return _error(str(exc))
        out = state.to_dict(_today(ledger))
    if args.json:
        _print_json(out)
    else:
        _print_state(out)
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``exception`` command to the main parser's sub-commands."""
    p = sub.add_parser(
        "exception",
        help="exceptions: management's response (owner, root cause, ticket, due date), acceptance, closure "
        "with a re-test",
    )
    xsub = p.add_subparsers(dest="exception_action", required=True)
    r = xsub.add_parser(
        "respond",
        help="record the response to a failing evidence item or finding",
        description="Record management's response to a failing evidence item (--item) or to a failing "
        "finding, i.e. one resource failing across items (--finding, with --collector when several "
        "collectors report it). Ledgered once; the responder is the OS user. The due date may not be in "
        "the past.",
    )
    r.add_argument("--item", default=None, metavar="SHA256", help="a failing evidence item")
    r.add_argument("--finding", default=None, metavar="RESOURCE", help="a failing finding's resource")
    r.add_argument("--collector", default=None, help="the collector of the --finding")
    r.add_argument(
        "--control", action="append", default=None, help="restrict to these controls (default: all it serves)"
    )
    r.add_argument("--owner", required=True, help="e-mail address of who answers for the remediation")
    r.add_argument("--root-cause", required=True, help="why it failed")
    r.add_argument("--ticket", required=True, help="the remediation ticket (id or URL)")
    r.add_argument("--due", required=True, type=_date, help="remediation due date (YYYY-MM-DD)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_respond)
    a = xsub.add_parser(
        "accept", help="accept a response (a second person: never the responder; the OS user is recorded)"
    )
    a.add_argument("exception_id", help="EXC-… (see `attestly exception list`)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_accept)
    c = xsub.add_parser(
        "close",
        help="close an exception with a passing re-test item",
        description="Close with a ledgered evidence item that passes for the same controls, from the same "
        "collector (same scope for an item; the resource passing or absent for a finding), observed after "
        "the last failure it re-tests.",
    )
    c.add_argument("exception_id", help="EXC-… (see `attestly exception list`)")
    c.add_argument("--retested-by-item", required=True, metavar="SHA256")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_close)
    ls = xsub.add_parser("list", help="exception responses and their state (open, overdue, closed)")
    ls.add_argument("--control", action="append", default=None)
    ls.add_argument("--state", action="append", choices=["open", "overdue", "closed"], default=None)
    ls.add_argument("--strict", action="store_true", help="exit 1 when any listed response is overdue")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    sh = xsub.add_parser("show", help="one exception's lifecycle")
    sh.add_argument("exception_id")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_show)
