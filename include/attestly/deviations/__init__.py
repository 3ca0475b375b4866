"""Exceptions (deviations) and management's response to them: respond, accept, close with a re-test.

A failing evidence item — or one failing finding (a resource) that recurs across items — gets *one*
response: owner (e-mail), root cause, ticket and a due date, recorded as ledger entry
``exception_response``. A second person may accept it (``exception_accept``, never the responder). It is
closed (``exception_close``) only by naming a *re-test*: a ledgered evidence item that passes for the same
controls, from the same collector (and the same scope for an item, with the resource passing or absent
for a finding), observed after the last failure of what it re-tests. Nothing is ever edited: the state of
an exception is a function of these entries, so any past report can be re-rendered.

State as of a day: ``closed`` (a closure is recorded), ``overdue`` (open and its due date has passed),
``open``. A due date may not be before the trusted current date (:func:`attestly.clock.trusted_now`).

Exception ids are ``EXC-`` and the first 16 hex digits of SHA-256 of the target's canonical form
(:func:`exception_id`), so responding twice to the same item or finding is recognised.

Imports nothing from Airflow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from attestly.evidence import canonical_json

if TYPE_CHECKING:
    from attestly.ledger import Ledger, LedgerEntry
    from attestly.reports.model import EvidenceRecord
    from attestly.store import EvidenceStore

RESPONSE, ACCEPT, CLOSE = "exception_response", "exception_accept", "exception_close"
KINDS = (RESPONSE, ACCEPT, CLOSE)
STATES = ("open", "overdue", "closed")
FAILING = ("fail", "error")


class ExceptionInputError(ValueError):
    """Bad input: the message names the item, finding or exception and why (CLI exit 2)."""


def _hex64(value: str, *, option: str) -> str:
    digest = (value or "").strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ExceptionInputError(f"{option} {value!r} is not a SHA-256 (64 hex digits)")
    return digest


def exception_id(target_key: Mapping[str, str]) -> str:
    """``EXC-`` + 16 hex digits of SHA-256 over the target's canonical JSON (``{"item": sha}`` or
    ``{"collector": c, "resource": r}``)."""
    return "EXC-" + hashlib.sha256(canonical_json(dict(target_key))).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ reading


@dataclass
class ExceptionState:
    """One exception's lifecycle as the ledger records it."""

    exception_id: str
    response_seq: int
    response: dict[str, Any]
    accept_seq: int | None = None
    acceptance: dict[str, Any] | None = None
    close_seq: int | None = None
    closure: dict[str, Any] | None = None

    @property
    def controls(self) -> list[str]:
        return [str(c) for c in self.response.get("controls", [])]

    @property
    def due(self) -> date:
        return date.fromisoformat(str(self.response["due"]))

    def state(self, as_of: date) -> str:
        """``closed``, ``overdue`` (open after its due date) or ``open``, on ``as_of``."""
        if self.closure is not None:
            return "closed"
        return "overdue" if as_of > self.due else "open"

    def to_dict(self, as_of: date) -> dict[str, Any]:
        r = self.response
        closed_at = str(self.closure["closed_at"]) if self.closure else None
        return {
            "exception_id": self.exception_id,
            "state": self.state(as_of),
            "as_of": as_of.isoformat(),
            "controls": self.controls,
            "target": r["target"],
            "owner": r["owner"],
            "root_cause": r["root_cause"],
            "ticket": r["ticket"],
            "due": r["due"],
            "responded_by": r["responded_by"],
            "responded_at": r["responded_at"],
            "response_seq": self.response_seq,
            "accepted_by": self.acceptance.get("accepted_by") if self.acceptance else None,
            "accepted_at": self.acceptance.get("accepted_at") if self.acceptance else None,
            "accept_seq": self.accept_seq,
            "closed_by": self.closure.get("closed_by") if self.closure else None,
            "closed_at": closed_at,
            "closed_late": bool(closed_at and date.fromisoformat(closed_at[:10]) > self.due),
            "retest": self.closure.get("retest") if self.closure else None,
            "close_seq": self.close_seq,
        }


def states_from_entries(entries: Iterable[LedgerEntry]) -> dict[str, ExceptionState]:
    """Every exception's state from the ledger entries of the three kinds (others are ignored)."""
    out: dict[str, ExceptionState] = {}
    for e in entries:
        if e.kind not in KINDS:
            continue
        eid = str(e.body.get("exception_id", ""))
        if e.kind == RESPONSE:
            out.setdefault(eid, ExceptionState(eid, e.seq, dict(e.body)))
        elif eid in out and e.kind == ACCEPT and out[eid].acceptance is None:
            out[eid].accept_seq, out[eid].acceptance = e.seq, dict(e.body)
        elif eid in out and e.kind == CLOSE and out[eid].closure is None:
            out[eid].close_seq, out[eid].closure = e.seq, dict(e.body)
    return out


def load_states(ledger: Ledger) -> dict[str, ExceptionState]:
    entries: list[LedgerEntry] = []
    for kind in KINDS:
        entries.extend(ledger.entries(kind=kind))
    return states_from_entries(sorted(entries, key=lambda e: e.seq))


# ----------------------------------------------------------------------------------- the evidence side


@dataclass
class _Evidence:
    """The ledger's evidence records, read once, and their findings from the bucket on demand."""

    records: list[EvidenceRecord]
    store: EvidenceStore | None
    _reader: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, ledger: Ledger, store: EvidenceStore | None) -> _Evidence:
        from attestly.reports.model import EvidenceRecord

        recs = [
            EvidenceRecord.from_body(seq=e.seq, recorded_at=e.recorded_at, body=e.body)
            for e in ledger.entries(kind="evidence")
        ]
        return cls(recs, store)

    def by_sha(self, sha: str) -> EvidenceRecord | None:
        return next((r for r in self.records if r.sha256 == sha), None)

    def findings(self, recs: Sequence[EvidenceRecord]) -> dict[int, list[Any]]:
        if self.store is None:
            raise ExceptionInputError("the evidence bucket is needed to read findings")
        if self._reader is None:
            from attestly.reports.source import ObjectReader

            self._reader = ObjectReader(self.store)
        result: dict[int, list[Any]] = self._reader.findings(recs)
        return result


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _resolve_controls(available: Sequence[str], wanted: Sequence[str] | None, *, what: str) -> list[str]:
    if not wanted:
        return sorted(set(available))
    missing = [c for c in wanted if c not in available]
    if missing:
        raise ExceptionInputError(
            f"{what} is not evidence for {', '.join(missing)} (it serves {', '.join(sorted(set(available))) or 'no control'})"
        )
    return sorted(set(wanted))


def _item_target(ev: _Evidence, sha: str, controls: Sequence[str] | None) -> tuple[dict[str, Any], list[str]]:
    rec = ev.by_sha(sha)
    if rec is None:
        raise ExceptionInputError(f"--item {sha}: no evidence item with this SHA-256 is in the ledger")
    if rec.result not in FAILING:
        raise ExceptionInputError(
            f"--item {sha}: the item's result is {rec.result!r} ({rec.collector}, "
            f"{rec.period_start.date().isoformat()}); only a failing item (fail or error) is an exception"
        )
    chosen = _resolve_controls(rec.controls, controls, what=f"--item {sha[:16]}…")
    target = {
        "type": "item",
        "item": sha,
        "item_seq": rec.seq,
        "collector": rec.collector,
        "scope": dict(rec.scope),
        "result": rec.result,
        "first_failed": _iso(rec.period_start),
        "last_failed": _iso(rec.period_end),
    }
    return target, chosen


def _failing_with_resource(
    ev: _Evidence, *, resource: str, collector: str | None, controls: Sequence[str] | None
) -> list[EvidenceRecord]:
    """Failing items (of ``collector``, serving one of ``controls``) with a failing finding for ``resource``."""
    cands = [
        r
        for r in ev.records
        if r.result in FAILING
        and (collector is None or r.collector == collector)
        and (not controls or set(controls) & set(r.controls))
    ]
    found = ev.findings(cands) if cands else {}
    return [
        r for r in cands if any(f.resource == resource and f.status in FAILING for f in found.get(r.seq, []))
    ]


def _finding_target(
    ev: _Evidence, resource: str, collector: str | None, controls: Sequence[str] | None
) -> tuple[dict[str, Any], list[str]]:
    hits = _failing_with_resource(ev, resource=resource, collector=collector, controls=controls)
    where = f" from collector {collector}" if collector else ""
    where += f" for {', '.join(controls)}" if controls else ""
    if not hits:
        raise ExceptionInputError(
            f"--finding {resource!r}: no ledgered evidence item{where} has a failing finding for this resource"
        )
    collectors = sorted({r.collector for r in hits})
    if len(collectors) > 1:
        raise ExceptionInputError(
            f"--finding {resource!r} fails in items of several collectors ({', '.join(collectors)}): "
            "name one with --collector"
        )
    available = sorted({c for r in hits for c in r.controls})
    chosen = _resolve_controls(available, controls, what=f"--finding {resource!r}")
    first = min(hits, key=lambda r: (r.period_start, r.seq))
    last = max(hits, key=lambda r: (r.period_end, r.seq))
    target = {
        "type": "finding",
        "collector": collectors[0],
        "resource": resource,
        "first_item": first.sha256,
        "first_failed": _iso(first.period_start),
        "last_failed": _iso(last.period_end),
        "failing_items": len(hits),
    }
    return target, chosen


def target_key(target: Mapping[str, Any]) -> dict[str, str]:
    if target["type"] == "item":
        return {"item": str(target["item"])}
    return {"collector": str(target["collector"]), "resource": str(target["resource"])}


# ------------------------------------------------------------------------------------------- respond


def respond(
    *,
    ledger: Ledger,
    store: EvidenceStore | None,
    item: str | None,
    finding: str | None,
    collector: str | None,
    controls: Sequence[str] | None,
    owner: str,
    root_cause: str,
    ticket: str,
    due: date,
    responded_by: str,
    now: datetime | None = None,
) -> tuple[ExceptionState, bool]:
    """Record management's response to a failing item (``item``) or finding (``finding``, a resource).
    Returns the state and whether it was written now. :class:`ExceptionInputError` names what is wrong."""
    from attestly.clock import trusted_now
    from attestly.notify import NotifyError, check_address
    from attestly.textinput import TextInputError, clean_name, clean_text

    if (item is None) == (finding is None):
        raise ExceptionInputError("give exactly one of --item SHA256 or --finding RESOURCE")
    try:
        owner = check_address(owner)
    except NotifyError as exc:
        raise ExceptionInputError(f"--owner: {exc}") from None
    try:
        root_cause = clean_text(root_cause, option="--root-cause")
        ticket = clean_name(ticket, option="--ticket")
        if finding is not None:
            finding = clean_text(finding, option="--finding")
        if collector is not None:
            collector = clean_name(collector, option="--collector")
    except TextInputError as exc:
        raise ExceptionInputError(str(exc)) from None
    now = now or trusted_now(ledger.conn)
    if due < now.date():
        raise ExceptionInputError(
            f"--due {due.isoformat()} is in the past (the trusted current date is {now.date().isoformat()})"
        )
    ev = _Evidence.load(ledger, store)
    if item is not None:
        target, chosen = _item_target(ev, _hex64(item, option="--item"), controls)
    else:
        assert finding is not None
        target, chosen = _finding_target(ev, finding, collector, controls)
    eid = exception_id(target_key(target))
    existing = load_states(ledger).get(eid)
    if existing is not None:
        r = existing.response
        same = (r["owner"], r["root_cause"], r["ticket"], r["due"], r["controls"]) == (
            owner,
            root_cause,
            ticket,
            due.isoformat(),
            chosen,
        )
        if same:
            return existing, False
        raise ExceptionInputError(
            f"{eid} ({_describe(target)}) already has a response (ledger seq {existing.response_seq}, "
            f"owner {r['owner']}, due {r['due']}): responses are never edited"
        )
    body = {
        "exception_id": eid,
        "controls": chosen,
        "target": target,
        "owner": owner,
        "root_cause": root_cause,
        "ticket": ticket,
        "due": due.isoformat(),
        "responded_by": responded_by,
        "responded_at": _iso(now),
    }
    entry, created = ledger.append(RESPONSE, body, dedupe_key=f"{RESPONSE}:{eid}")
    return ExceptionState(eid, entry.seq, dict(entry.body)), created


def _describe(target: Mapping[str, Any]) -> str:
    if target["type"] == "item":
        return f"item {str(target['item'])[:16]}… of {target['collector']}"
    return f"finding {target['resource']!r} of {target['collector']}"


def get_state(ledger: Ledger, eid: str) -> ExceptionState:
    state = load_states(ledger).get(eid.strip())
    if state is None:
        raise ExceptionInputError(
            f"{eid!r}: no such exception response in the ledger (see `attestly exception list`)"
        )
    return state


# -------------------------------------------------------------------------------------------- accept


def accept(
    *, ledger: Ledger, eid: str, accepted_by: str, now: datetime | None = None
) -> tuple[ExceptionState, bool]:
    """Management accepts the response: a second person, never the one who responded."""
    from attestly.clock import trusted_now
    from attestly.identity import same_person

    state = get_state(ledger, eid)
    if state.acceptance is not None:
        return state, False
    if state.closure is not None:
        raise ExceptionInputError(f"{state.exception_id} is already closed (ledger seq {state.close_seq})")
    responder = str(state.response["responded_by"])
    if same_person(accepted_by, responder):
        raise ExceptionInputError(
            f"{state.exception_id}: {accepted_by} gave the response ({responder}); a different person must accept it"
        )
    now = now or trusted_now(ledger.conn)
    body = {"exception_id": state.exception_id, "accepted_by": accepted_by, "accepted_at": _iso(now)}
    entry, created = ledger.append(ACCEPT, body, dedupe_key=f"{ACCEPT}:{state.exception_id}")
    state.accept_seq, state.acceptance = entry.seq, dict(entry.body)
    return state, created


# --------------------------------------------------------------------------------------------- close


def close(
    *,
    ledger: Ledger,
    store: EvidenceStore | None,
    eid: str,
    retest_item: str,
    closed_by: str,
    now: datetime | None = None,
) -> tuple[ExceptionState, bool]:
    """Close an exception with a re-test: a ledgered item that passes for the same controls, from the same
    collector (same scope for an item; the resource passing or absent for a finding), observed after the
    last failure of what it re-tests and recorded after it."""
    from attestly.clock import trusted_now

    state = get_state(ledger, eid)
    sha = _hex64(retest_item, option="--retested-by-item")
    if state.closure is not None:
        if state.closure.get("retest", {}).get("item") == sha:
            return state, False
        raise ExceptionInputError(
            f"{state.exception_id} is already closed (ledger seq {state.close_seq}, re-tested by item "
            f"{state.closure.get('retest', {}).get('item')})"
        )
    ev = _Evidence.load(ledger, store)
    rec = ev.by_sha(sha)
    label = f"--retested-by-item {sha[:16]}…"
    if rec is None:
        raise ExceptionInputError(f"{label}: no evidence item with this SHA-256 is in the ledger")
    target = state.response["target"]
    if rec.collector != target["collector"]:
        raise ExceptionInputError(
            f"{label} is from collector {rec.collector}; {state.exception_id} is a failure of {target['collector']}"
        )
    if rec.result != "pass":
        raise ExceptionInputError(
            f"{label}: its result is {rec.result!r} ({rec.period_start.date().isoformat()}); a re-test must pass"
        )
    missing = [c for c in state.controls if c not in rec.controls]
    if missing:
        raise ExceptionInputError(
            f"{label} is not evidence for {', '.join(missing)}, which {state.exception_id} concerns"
        )
    # The last failure of what is re-tested: the item's own scope, or the finding's resource.
    if target["type"] == "item":
        if dict(rec.scope) != dict(target["scope"]):
            raise ExceptionInputError(
                f"{label} covers scope {dict(rec.scope)}; {state.exception_id} failed in {target['scope']}"
            )
        failures = [
            r
            for r in ev.records
            if r.collector == rec.collector and dict(r.scope) == dict(rec.scope) and r.result in FAILING
        ]
    else:
        mine = ev.findings([rec]).get(rec.seq, [])
        bad = [f for f in mine if f.resource == target["resource"] and f.status != "pass"]
        if bad:
            raise ExceptionInputError(
                f"{label}: its finding for {target['resource']!r} is {bad[0].status!r}, not pass"
            )
        failures = _failing_with_resource(
            ev, resource=str(target["resource"]), collector=rec.collector, controls=None
        )
    last = max(failures, key=lambda r: (r.period_end, r.seq), default=None)
    if last is not None and (rec.period_start < last.period_end or rec.seq < last.seq):
        raise ExceptionInputError(
            f"{label} ({rec.period_start.date().isoformat()}, ledger seq {rec.seq}) is not later than the "
            f"last failure it must re-test: item {last.sha256[:16]}… ({last.period_start.date().isoformat()}"
            f"..{last.period_end.date().isoformat()}, ledger seq {last.seq})"
        )
    now = now or trusted_now(ledger.conn)
    body = {
        "exception_id": state.exception_id,
        "retest": {
            "item": rec.sha256,
            "item_seq": rec.seq,
            "collector": rec.collector,
            "scope": dict(rec.scope),
            "period_start": _iso(rec.period_start),
            "period_end": _iso(rec.period_end),
            "result": rec.result,
        },
        "closed_by": closed_by,
        "closed_at": _iso(now),
    }
    entry, created = ledger.append(CLOSE, body, dedupe_key=f"{CLOSE}:{state.exception_id}")
    state.close_seq, state.closure = entry.seq, dict(entry.body)
    return state, created


# ----------------------------------------------------------------------------------------- reporting


def for_report(
    states: Iterable[ExceptionState], *, control_id: str, start: date, end: date, as_of: date
) -> list[dict[str, Any]]:
    """The responses a control report for ``[start, end]`` shows: those for the control whose failure began
    by ``end`` and that were not closed before ``start``; state as of ``as_of``."""
    out = []
    for s in states:
        if control_id not in s.controls:
            continue
        first = date.fromisoformat(str(s.response["target"]["first_failed"])[:10])
        if first > end:
            continue
        if s.closure is not None and date.fromisoformat(str(s.closure["closed_at"])[:10]) < start:
            continue
        out.append(s.to_dict(as_of))
    order = {st: i for i, st in enumerate(("overdue", "open", "closed"))}
    out.sort(key=lambda d: (order[d["state"]], d["due"], d["exception_id"]))
    return out


def match_group(responses: Sequence[Mapping[str, Any]], group: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The response covering a report's exception group (same failing item, or same collector+resource)."""
    for r in responses:
        t = r["target"]
        if t["type"] == "item" and t["item"] in group.get("evidence", ()):
            return r
        if (
            t["type"] == "finding"
            and t["collector"] == group.get("collector")
            and t["resource"] == group.get("resource")
        ):
            return r
    return None


# ----------------------------------------------------------------------------------------- reminders


def _reminder_id(eid: str, due: str, to: Sequence[str]) -> str:
    h = hashlib.sha256("|".join(["exception-overdue", eid, due, *to]).encode()).hexdigest()[:32]
    return f"<attestly-exception-{h}@attestly.local>"


def send_overdue(*, ledger: Ledger, today: date, live: bool, send: Any = None) -> dict[str, Any]:
    """E-mail the owner of every response that is overdue on ``today`` (open, due date passed), once per
    exception and due date (``attestly.exception_reminders``). Sends nothing unless ``live``. A message is
    sent before it is recorded, with a Message-ID derived from its content, so a crash in between re-sends
    the same message."""
    from attestly.notify import send_email
    from attestly.reports.render import render_template

    overdue = [s for s in load_states(ledger).values() if s.state(today) == "overdue"]
    done: set[tuple[str, date]] = set()
    if overdue:
        rows = ledger.conn.execute(
            "SELECT exception_id, due_date FROM attestly.exception_reminders WHERE exception_id = ANY(%s)",
            ([s.exception_id for s in overdue],),
        ).fetchall()
        ledger.conn.commit()
        done = {(r[0], r[1]) for r in rows}
    sender = send or send_email
    sent = []
    for s in sorted(overdue, key=lambda s: s.exception_id):
        if not live or (s.exception_id, s.due) in done:
            continue
        to = [str(s.response["owner"])]
        mid = _reminder_id(s.exception_id, s.due.isoformat(), to)
        html = render_template("exception_overdue.html.j2", e=s.to_dict(today), today=today)
        sender(
            to=to,
            subject=f"[Attestly] exception {s.exception_id} overdue since {s.due.isoformat()} ({', '.join(s.controls)})",
            html=html,
            message_id=mid,
        )
        with ledger.conn.transaction():
            ledger.conn.execute(
                "INSERT INTO attestly.exception_reminders (exception_id, due_date, recipients, message_id) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (s.exception_id, s.due, to, mid),
            )
        sent.append({"exception_id": s.exception_id, "to": to, "message_id": mid})
    return {
        "today": today.isoformat(),
        "live": live,
        "overdue": [s.exception_id for s in overdue],
        "messages": sent,
    }
