"""Evidence collectors over the application's audit database (connection ``audit_db``, read-only role).

Public API::

    AUDITDB_COLLECTORS: tuple[str, ...]          # the five collector ids, in a stable order
    collect_auditdb(collector_id, *, period_start, period_end, conn_id="audit_db", policy=None,
                    params=None, airflow=None) -> EvidenceItem
    AuditDbCollectorError                        # raised on a database / connection problem

Contracts shared by every collector:

- **Interval.** Every query reads only rows whose mapped ``timestamp`` column lies in the half-open
  interval ``[period_start, period_end)``; nothing reads the clock. The evidence is therefore
  ``retroactive: True``: a backfill of a past interval reproduces the item of the original run exactly
  (as long as the rows are still online). Both bounds must be time-zone aware and the interval non-empty.
- **Schema.** Table and column names come from ``sources.yaml`` (``policy.sources.audit_table``) and are
  quoted with :mod:`psycopg.sql`; the collectors never assume the reference schema. A logical column a
  collector needs but that is not mapped raises :class:`AuditDbCollectorError` naming it.
- **Consistency.** All queries of one collection run in one ``REPEATABLE READ READ ONLY`` transaction with
  the session time zone set to UTC, so the aggregates are mutually consistent.
- **Evidence.** ``collector`` is the id, ``controls`` is ``policy.controls_for_collector(id)`` (a collector
  no control uses is refused), ``scope`` is ``{"database": <dbname of the connection>,
  "table": "<schema>.<table>"}``, ``result`` is :func:`attestly.evidence.derive_result` over the findings,
  ``collected_at`` is the end of the interval. ``data`` holds small aggregates (counts, rates rounded to
  4 decimals, the effective parameters) and never PHI: never subject ids, never ``metadata`` content.
  Findings name actors, IPs, event ids, sources, resource prefixes and actions, never subjects.
- **Determinism.** Same rows + same parameters + same policy give a byte-identical canonical item (lists
  sorted, ties broken by event id, no wall-clock values).
- **Errors.** A database or connection error is raised as :class:`AuditDbCollectorError` whose message
  starts with the collector id (the DAG records it as an ``error`` item); it is never swallowed. Bad
  arguments (unknown id, unknown or ill-typed parameter, naive or empty interval) raise ``ValueError``.

Vocabulary (the reference enumerations of ``sources.yaml``): authorization events have ``event_type``
``authorization`` and are *granted* when ``result = 'success'``, *denied* when ``result = 'denied'``;
authentication events (``authentication``) *fail* when ``result`` is ``failure`` or ``denied``;
configuration changes are ``configuration`` events; PHI access is ``data_access`` / ``data_modify``
with a non-NULL ``subject``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import psycopg
from psycopg import sql

from attestly.connections import ConnectionNotFound, pg_connect
from attestly.evidence import AirflowContext, EvidenceItem, Finding, Method, Population, derive_result, iso
from attestly.policy import AUDITDB_COLLECTORS as _CATALOG_AUDITDB_COLLECTORS
from attestly.policy import Policy, load_policy

__all__ = [
    "AUDITDB_COLLECTORS",
    "DEFAULT_PARAMS",
    "AuditDbCollectorError",
    "collect_auditdb",
]

#: The collector ids implemented here (identical to ``attestly.policy.AUDITDB_COLLECTORS``).
AUDITDB_COLLECTORS: tuple[str, ...] = _CATALOG_AUDITDB_COLLECTORS

#: Parameters each collector accepts, with their defaults. Any other key is refused (typos would
#: otherwise silently weaken a check). The effective values are recorded in ``data["params"]``.
DEFAULT_PARAMS: dict[str, dict[str, int | float]] = {
    "auditdb.authorization_outcomes": {"max_denial_rate": 0.2, "min_events": 20},
    "auditdb.authentication_failures": {"burst_failures": 5, "burst_minutes": 10},
    "auditdb.privileged_changes": {"max_listed": 500},
    "auditdb.phi_access_without_actor": {},
    "auditdb.event_volume": {},
}

AUTHORIZATION = "authorization"
AUTHENTICATION = "authentication"
CONFIGURATION = "configuration"
PHI_EVENT_TYPES: tuple[str, ...] = ("data_access", "data_modify")
GRANTED_RESULTS: tuple[str, ...] = ("success",)
DENIED_RESULTS: tuple[str, ...] = ("denied",)
FAILED_AUTH_RESULTS: tuple[str, ...] = ("failure", "denied")

#: Label of a NULL / empty resource prefix or source.
NONE_LABEL = "(none)"
#: Longest action / resource text copied into privileged-change listings (free text columns).
MAX_TEXT = 200


class AuditDbCollectorError(RuntimeError):
    """A collector could not read the audit database. The message starts with the collector id."""

    def __init__(self, collector_id: str, message: str) -> None:
        self.collector_id = collector_id
        super().__init__(f"{collector_id}: {message}")


# ------------------------------------------------------------------------------------------ plumbing


@dataclass(frozen=True)
class _Query:
    """What a collector function gets: an open read-only connection and the interval, pre-quoted."""

    collector_id: str
    conn: psycopg.Connection[Any]
    policy: Policy
    start: datetime
    end: datetime
    params: dict[str, int | float]
    queries: list[str] = field(default_factory=list)

    @property
    def table(self) -> sql.Composed:
        t = self.policy.sources.audit_table
        return sql.SQL("{}.{}").format(sql.Identifier(t.schema_name), sql.Identifier(t.table))

    def col(self, logical: str) -> sql.Identifier:
        """The quoted physical column for a logical one; a clear error if it is not mapped."""
        if not self.policy.sources.has_column(logical):
            raise AuditDbCollectorError(
                self.collector_id,
                f"needs the logical column {logical!r}, which sources.yaml does not map "
                f"(audit_table.columns.{logical})",
            )
        return sql.Identifier(self.policy.sources.column(logical))

    def has(self, logical: str) -> bool:
        return self.policy.sources.has_column(logical)

    @property
    def in_interval(self) -> sql.Composed:
        """``<ts> >= %(start)s AND <ts> < %(end)s`` (the only time filter any query uses)."""
        ts = self.col("timestamp")
        return sql.SQL("{ts} >= %(start)s AND {ts} < %(end)s").format(ts=ts)

    def rows(self, query: sql.Composed | sql.SQL, **params: Any) -> list[tuple[Any, ...]]:
        """Run a query with ``start`` / ``end`` bound; database errors name the collector. The query text
        with its parameters bound is kept for the item's ``method``."""
        bound = {"start": self.start, "end": self.end, **params}
        try:
            self.queries.append(" ".join(psycopg.ClientCursor(self.conn).mogrify(query, bound).split()))
            with self.conn.cursor() as cur:
                cur.execute(query, bound)
                return list(cur.fetchall())
        except psycopg.Error as exc:
            raise AuditDbCollectorError(self.collector_id, f"query failed: {exc}".strip()) from exc


CollectorResult = tuple[list[Finding], dict[str, Any]]


def _utc(ts: datetime) -> datetime:
    """Rows of a ``timestamp without time zone`` column are read as UTC (the session time zone)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _ts(ts: datetime) -> str:
    return iso(_utc(ts))


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _clip(text: object) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"


def _blank(value: object) -> bool:
    return value is None or not str(value).strip()


# -------------------------------------------------------------------------------- the five collectors


def _authorization_outcomes(q: _Query) -> CollectorResult:
    """Granted / denied authorization events, overall and per resource prefix (text before the first
    '/'; NULL or empty → ``(none)``). A prefix with at least ``min_events`` events whose denial rate
    (denied / all its authorization events) exceeds ``max_denial_rate`` is a ``fail`` finding; every
    other prefix a ``pass`` finding. No authorization events at all: one explanatory ``pass``."""
    max_rate = q.params["max_denial_rate"]
    min_events = int(q.params["min_events"])
    query = sql.SQL(
        """SELECT coalesce(nullif(split_part({resource}::text, '/', 1), ''), %(none)s) AS prefix,
                  count(*) AS events,
                  count(*) FILTER (WHERE {result}::text = ANY(%(granted)s)) AS granted,
                  count(*) FILTER (WHERE {result}::text = ANY(%(denied)s)) AS denied
           FROM {table}
           WHERE {in_interval} AND {event_type}::text = %(event_type)s
           GROUP BY 1
           ORDER BY 1"""
    ).format(
        resource=q.col("resource"),
        result=q.col("result"),
        event_type=q.col("event_type"),
        table=q.table,
        in_interval=q.in_interval,
    )
    rows = q.rows(
        query,
        none=NONE_LABEL,
        granted=list(GRANTED_RESULTS),
        denied=list(DENIED_RESULTS),
        event_type=AUTHORIZATION,
    )
    threshold = Fraction(str(max_rate))
    findings: list[Finding] = []
    per_prefix: dict[str, dict[str, Any]] = {}
    for row in rows:
        prefix, (events, granted, denied) = row[0], (int(v) for v in row[1:])
        rate = _rate(denied, events)
        per_prefix[str(prefix)] = {
            "events": events,
            "granted": granted,
            "denied": denied,
            "other": events - granted - denied,
            "denial_rate": rate,
        }
        resource = f"resource:{prefix}"
        summary = (
            f"{denied} denied, {granted} granted of {events} authorization events (denial rate {rate:.4f})"
        )
        if events < min_events:
            findings.append(
                Finding(resource, "pass", f"{summary}; below {min_events} events, rate not assessed")
            )
        elif Fraction(denied, events) > threshold:
            findings.append(Finding(resource, "fail", f"{summary} exceeds {max_rate}"))
        else:
            findings.append(Finding(resource, "pass", f"{summary} within {max_rate}"))
    total = sum(p["events"] for p in per_prefix.values())
    granted_total = sum(p["granted"] for p in per_prefix.values())
    denied_total = sum(p["denied"] for p in per_prefix.values())
    if not rows:
        findings.append(Finding("authorization", "pass", "no authorization events in the interval"))
    data = {
        "events": total,
        "granted": granted_total,
        "denied": denied_total,
        "other": total - granted_total - denied_total,
        "denial_rate": _rate(denied_total, total),
        "by_resource_prefix": per_prefix,
        "prefixes_failing": sum(1 for f in findings if f.status == "fail"),
    }
    return findings, data


def _authentication_failures(q: _Query) -> CollectorResult:
    """Failed authentication events and bursts of them.

    A *burst* for a key (an actor, or an IP) exists when ``burst_failures`` failed events of that key
    fall in a half-open window ``[t, t + burst_minutes)`` starting at one of them. Overlapping such
    windows of the same key are merged into one burst (gaps-and-islands over the qualifying window
    starts), reported once as a ``fail`` finding ``actor:<id>`` / ``ip:<addr>`` with its window start
    (the first qualifying failure), its last failure and the number of failures it covers. Only events
    of the interval count (a burst straddling a boundary is judged on its part inside). NULL / blank
    actors and NULL IPs form no key; the IP column is optional (no IP bursts when it is not mapped).
    Computed in SQL with window functions; ties are ordered by event id, so the result is exact.
    """
    n = int(q.params["burst_failures"])
    window = timedelta(minutes=q.params["burst_minutes"])
    ts, ident, actor = q.col("timestamp"), q.col("id"), q.col("actor")
    event_type, result = q.col("event_type"), q.col("result")
    ip_select = sql.SQL("{}").format(q.col("ip")) if q.has("ip") else sql.SQL("NULL::text")
    common = {
        "event_type": AUTHENTICATION,
        "failed": list(FAILED_AUTH_RESULTS),
    }
    totals_query = sql.SQL(
        """SELECT count(*),
                  count(*) FILTER (WHERE {result}::text = ANY(%(failed)s)),
                  count(DISTINCT {actor}) FILTER (WHERE {result}::text = ANY(%(failed)s)),
                  count(*) FILTER (WHERE {result}::text = ANY(%(failed)s)
                                   AND ({actor} IS NULL OR btrim({actor}::text) = ''))
           FROM {table}
           WHERE {in_interval} AND {event_type}::text = %(event_type)s"""
    ).format(result=result, actor=actor, table=q.table, in_interval=q.in_interval, event_type=event_type)
    events, failures, actors_failed, failures_no_actor = (int(v) for v in q.rows(totals_query, **common)[0])

    bursts_query = sql.SQL(
        """WITH failed AS (
             SELECT {ts} AS ts, {ident} AS id, {actor}::text AS actor, {ip} AS ip
             FROM {table}
             WHERE {in_interval} AND {event_type}::text = %(event_type)s
               AND {result}::text = ANY(%(failed)s)
           ),
           keyed AS (
             SELECT 'actor'::text AS kind, actor AS key, ts, id FROM failed
             WHERE actor IS NOT NULL AND btrim(actor) <> ''
             UNION ALL
             SELECT 'ip'::text, format('%%s', ip), ts, id FROM failed WHERE ip IS NOT NULL
           ),
           windows AS (
             SELECT kind, key, ts, lead(ts, %(offset)s::int) OVER w AS nth_ts
             FROM keyed
             WINDOW w AS (PARTITION BY kind, key ORDER BY ts, id)
           ),
           starts AS (
             SELECT kind, key, ts AS start_ts,
                    lag(ts) OVER (PARTITION BY kind, key ORDER BY ts) AS prev_start
             FROM windows
             WHERE nth_ts IS NOT NULL AND nth_ts < ts + %(window)s
           ),
           islands AS (
             SELECT kind, key, start_ts,
                    sum(CASE WHEN prev_start IS NULL OR start_ts >= prev_start + %(window)s THEN 1 ELSE 0 END)
                      OVER (PARTITION BY kind, key ORDER BY start_ts ROWS UNBOUNDED PRECEDING) AS burst_no
             FROM starts
           ),
           bursts AS (
             SELECT kind, key, burst_no, min(start_ts) AS first_start, max(start_ts) + %(window)s AS covered_end
             FROM islands
             GROUP BY kind, key, burst_no
           )
           SELECT b.kind, b.key, b.first_start, max(k.ts) AS last_failure, count(*) AS failures
           FROM bursts b
           JOIN keyed k ON k.kind = b.kind AND k.key = b.key
                       AND k.ts >= b.first_start AND k.ts < b.covered_end
           GROUP BY b.kind, b.key, b.burst_no, b.first_start
           ORDER BY b.kind, b.key, b.first_start"""
    ).format(
        ts=ts,
        ident=ident,
        actor=actor,
        ip=ip_select,
        table=q.table,
        in_interval=q.in_interval,
        event_type=event_type,
        result=result,
    )
    bursts = q.rows(bursts_query, offset=n - 1, window=window, **common)

    minutes = q.params["burst_minutes"]
    findings: list[Finding] = []
    by_kind: Counter[str] = Counter()
    for kind, key, first_start, last_failure, count in bursts:
        by_kind[str(kind)] += 1
        findings.append(
            Finding(
                f"{kind}:{key}",
                "fail",
                f"burst of {int(count)} failed authentication events, window start {_ts(first_start)}, "
                f"last failure {_ts(last_failure)} (threshold {n} within {minutes} min)",
            )
        )
    if not findings:
        if events == 0:
            detail = "no authentication events in the interval"
        else:
            detail = (
                f"{failures} of {events} authentication events failed; no actor or IP with {n} or more "
                f"failures within {minutes} min"
            )
        findings.append(Finding("authentication", "pass", detail))
    data = {
        "events": events,
        "failures": failures,
        "failure_rate": _rate(failures, events),
        "actors_with_failures": actors_failed,
        "failures_without_actor": failures_no_actor,
        "bursts": len(bursts),
        "bursts_by_kind": {"actor": by_kind.get("actor", 0), "ip": by_kind.get("ip", 0)},
        "ip_bursts_checked": q.has("ip"),
    }
    return findings, data


def _privileged_changes(q: _Query) -> CollectorResult:
    """Configuration events (privileged changes): who, what, when.

    Each change without an actor (NULL or blank) is a ``fail`` finding ``event:<id>``; the others are
    aggregated into one ``pass`` finding per actor (``actor:<id>``, ``"N changes: a, b"`` with the
    distinct actions sorted). ``data.changes`` lists the changes ordered by (timestamp, id), at most
    ``max_listed`` (``data.listed_truncated`` says when more exist); a change that carries a subject has
    its resource reduced to the prefix before the first '/' so no subject id reaches the evidence.
    No configuration event at all: one explanatory ``pass``.
    """
    max_listed = int(q.params["max_listed"])
    subject = sql.SQL("({} IS NOT NULL)").format(q.col("subject")) if q.has("subject") else sql.SQL("false")
    query = sql.SQL(
        """SELECT {ident}::text, {ts}, {actor}::text, {action}::text, {resource}::text, {result}::text,
                  {source}::text, {subject}
           FROM {table}
           WHERE {in_interval} AND {event_type}::text = %(event_type)s
           ORDER BY {ts}, {ident}"""
    ).format(
        ident=q.col("id"),
        ts=q.col("timestamp"),
        actor=q.col("actor"),
        action=q.col("action"),
        resource=q.col("resource"),
        result=q.col("result"),
        source=q.col("source"),
        subject=subject,
        table=q.table,
        in_interval=q.in_interval,
        event_type=q.col("event_type"),
    )
    rows = q.rows(query, event_type=CONFIGURATION)
    findings: list[Finding] = []
    per_actor: dict[str, list[str]] = defaultdict(list)
    by_action: Counter[str] = Counter()
    listed: list[dict[str, Any]] = []
    without_actor = 0
    for ident, at, actor, action, resource, result, source, has_subject in rows:
        action_text = _clip(action) if action is not None else NONE_LABEL
        resource_text = _clip(resource) if resource is not None else NONE_LABEL
        if has_subject and resource is not None:
            resource_text = _clip(str(resource).split("/", 1)[0]) + "/[subject redacted]"
        by_action[action_text] += 1
        if _blank(actor):
            without_actor += 1
            findings.append(
                Finding(
                    f"event:{ident}",
                    "fail",
                    f"configuration change {action_text!r} on {resource_text!r} from source {source} at "
                    f"{_ts(at)} has no actor",
                )
            )
        else:
            per_actor[str(actor)].append(action_text)
        if len(listed) < max_listed:
            listed.append(
                {
                    "id": ident,
                    "at": _ts(at),
                    "actor": None if _blank(actor) else str(actor),
                    "action": action_text,
                    "resource": resource_text,
                    "result": result,
                    "source": source,
                }
            )
    for actor, actions in per_actor.items():
        distinct = ", ".join(sorted(set(actions)))
        findings.append(Finding(f"actor:{actor}", "pass", f"{len(actions)} changes: {distinct}"))
    if not rows:
        findings.append(Finding("configuration", "pass", "no configuration changes in the interval"))
    data = {
        "total": len(rows),
        "without_actor": without_actor,
        "actors": len(per_actor),
        "by_action": dict(sorted(by_action.items())),
        "changes": listed,
        "listed_truncated": len(rows) > len(listed),
    }
    return findings, data


def _phi_access_without_actor(q: _Query) -> CollectorResult:
    """PHI access (``data_access`` / ``data_modify`` events with a non-NULL subject) without an actor
    (NULL or blank): one ``fail`` finding ``event:<id>`` per such event (id, type, source and time; never
    the subject). Otherwise one ``pass`` finding: "all N PHI access events have an actor"."""
    actor = q.col("actor")
    base = sql.SQL(
        "FROM {table} WHERE {in_interval} AND {event_type}::text = ANY(%(types)s) AND {subject} IS NOT NULL"
    ).format(
        table=q.table,
        in_interval=q.in_interval,
        event_type=q.col("event_type"),
        subject=q.col("subject"),
    )
    types = list(PHI_EVENT_TYPES)
    total = int(q.rows(sql.SQL("SELECT count(*) {}").format(base), types=types)[0][0])
    missing = q.rows(
        sql.SQL(
            """SELECT {ident}::text, {ts}, {event_type}::text, {source}::text {base}
               AND ({actor} IS NULL OR btrim({actor}::text) = '')
               ORDER BY {ts}, {ident}"""
        ).format(
            ident=q.col("id"),
            ts=q.col("timestamp"),
            event_type=q.col("event_type"),
            source=q.col("source"),
            base=base,
            actor=actor,
        ),
        types=types,
    )
    findings = [
        Finding(
            f"event:{ident}",
            "fail",
            f"PHI {event_type} event from source {source} at {_ts(at)} has no actor",
        )
        for ident, at, event_type, source in missing
    ]
    if not findings:
        detail = (
            f"all {total} PHI access events have an actor"
            if total
            else "no PHI access events in the interval"
        )
        findings.append(Finding("phi_access", "pass", detail))
    data = {"phi_events": total, "without_actor": len(missing)}
    return findings, data


def _event_volume(q: _Query) -> CollectorResult:
    """Events per source over the interval and per hour (hours counted from ``period_start``; the last
    one may be partial; hours without events count as 0 in ``min_per_hour``).

    Every source declared in ``sources.yaml`` gets a finding: ``fail`` when it has no event in the
    interval and is not ``quiet_allowed``, ``pass`` otherwise. Sources found but not declared get a
    ``pass`` finding that says so (their quality is the audit_log_quality suite's business). NULL or
    blank sources are counted under ``(none)``.
    """
    query = sql.SQL(
        """SELECT coalesce(nullif({source}::text, ''), %(none)s) AS source,
                  floor(extract(epoch FROM ({ts} - %(start)s)) / 3600)::bigint AS hour,
                  count(*)
           FROM {table}
           WHERE {in_interval}
           GROUP BY 1, 2"""
    ).format(source=q.col("source"), ts=q.col("timestamp"), table=q.table, in_interval=q.in_interval)
    rows = q.rows(query, none=NONE_LABEL)
    whole, rest = divmod(q.end - q.start, timedelta(hours=1))
    hours = whole + (1 if rest else 0)
    per_source_hour: dict[str, dict[int, int]] = defaultdict(dict)
    all_hours: Counter[int] = Counter()
    for source, hour, count in rows:
        per_source_hour[str(source)][int(hour)] = int(count)
        all_hours[int(hour)] += int(count)

    def spread(counts: Mapping[int, int]) -> tuple[int, int]:
        values = list(counts.values())
        lowest = min(values) if len(values) >= hours else 0
        return lowest, max(values, default=0)

    declared = {s.name: s for s in q.policy.sources.sources}
    findings: list[Finding] = []
    by_source: dict[str, dict[str, Any]] = {}
    for name in sorted(set(declared) | set(per_source_hour)):
        counts = per_source_hour.get(name, {})
        events = sum(counts.values())
        lo, hi = spread(counts)
        source = declared.get(name)
        by_source[name] = {
            "events": events,
            "min_per_hour": lo,
            "max_per_hour": hi,
            "declared": source is not None,
            "quiet_allowed": bool(source and source.quiet_allowed),
        }
        resource = f"source:{name}"
        if source is None:
            findings.append(Finding(resource, "pass", f"{events} events (not declared in sources.yaml)"))
        elif events == 0 and not source.quiet_allowed:
            findings.append(Finding(resource, "fail", "declared source wrote no events in the interval"))
        elif events == 0:
            findings.append(Finding(resource, "pass", "no events in the interval (quiet allowed)"))
        else:
            findings.append(Finding(resource, "pass", f"{events} events; per hour min {lo}, max {hi}"))
    lo, hi = spread(all_hours)
    data = {
        "total": sum(all_hours.values()),
        "hours": hours,
        "min_per_hour": lo,
        "max_per_hour": hi,
        "by_source": by_source,
        "silent_declared_sources": sorted(
            n for n, s in declared.items() if by_source[n]["events"] == 0 and not s.quiet_allowed
        ),
    }
    return findings, data


_COLLECTORS: dict[str, Callable[[_Query], CollectorResult]] = {
    "auditdb.authorization_outcomes": _authorization_outcomes,
    "auditdb.authentication_failures": _authentication_failures,
    "auditdb.privileged_changes": _privileged_changes,
    "auditdb.phi_access_without_actor": _phi_access_without_actor,
    "auditdb.event_volume": _event_volume,
}


# ---------------------------------------------------------------------------------------- entry point


def _effective_params(collector_id: str, params: Mapping[str, Any] | None) -> dict[str, int | float]:
    """Defaults overlaid with ``params``; unknown keys, non-numbers, booleans and out-of-range values are
    refused with a ``ValueError`` naming the collector, the key and the value."""
    defaults = DEFAULT_PARAMS[collector_id]
    given = dict(params or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        allowed = ", ".join(sorted(defaults)) or "none"
        raise ValueError(f"{collector_id}: unknown parameter(s) {', '.join(unknown)} (accepted: {allowed})")
    out: dict[str, int | float] = dict(defaults)
    for key, value in given.items():
        wants_int = isinstance(defaults[key], int)
        ok_type = (int,) if wants_int else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_type):
            kind = "a whole number" if wants_int else "a number"
            raise ValueError(f"{collector_id}: parameter {key}={value!r} must be {kind}")
        out[key] = value
    for key, value in out.items():
        if key == "max_denial_rate" and not 0 <= value <= 1:
            raise ValueError(f"{collector_id}: parameter {key}={value!r} must be between 0 and 1")
        if key != "max_denial_rate" and value < 1:
            raise ValueError(f"{collector_id}: parameter {key}={value!r} must be at least 1")
    return out


def collect_auditdb(
    collector_id: str,
    *,
    period_start: datetime,
    period_end: datetime,
    conn_id: str = "audit_db",
    policy: Policy | None = None,
    params: Mapping[str, Any] | None = None,
    airflow: AirflowContext | None = None,
    observed_at: datetime | None = None,
) -> EvidenceItem:
    """Run one audit-database collector over ``[period_start, period_end)`` and return its evidence.

    ``observed_at`` (default: the wall clock when the transaction starts) is when the database was read;
    ``method`` holds every SQL statement run (parameters bound) and the effective parameters;
    ``population`` the interval's events of the table, counted in the same snapshot.

    ``policy`` defaults to :func:`attestly.policy.load_policy`; ``params`` overrides
    :data:`DEFAULT_PARAMS` for this collector; ``airflow`` is recorded as is. See the module docstring
    for the contract. Raises ``ValueError`` for bad arguments and :class:`AuditDbCollectorError` when
    the database cannot be read (connection missing or refused, query failed, column not mapped).
    """
    if collector_id not in _COLLECTORS:
        raise ValueError(
            f"unknown audit-database collector {collector_id!r} (known: {', '.join(AUDITDB_COLLECTORS)})"
        )
    for name, ts in (("period_start", period_start), ("period_end", period_end)):
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise ValueError(f"{collector_id}: {name} {ts!r} has no time zone; pass an aware UTC datetime")
    if period_end <= period_start:
        raise ValueError(
            f"{collector_id}: the interval [{iso(period_start)}, {iso(period_end)}) is empty "
            "(an Airflow 3 DAG needs an explicit data-interval timetable)"
        )
    effective = _effective_params(collector_id, params)
    pol = policy if policy is not None else load_policy()
    controls = tuple(pol.controls_for_collector(collector_id))
    if not controls:
        raise ValueError(f"{collector_id}: no control in controls.yaml uses this collector")
    table = pol.sources.audit_table
    start, end = period_start.astimezone(UTC), period_end.astimezone(UTC)

    try:
        conn = pg_connect(conn_id)
    except (psycopg.Error, ConnectionNotFound) as exc:
        raise AuditDbCollectorError(collector_id, f"cannot connect to {conn_id!r}: {exc}") from exc
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        conn.execute("SET TIME ZONE 'UTC'")
        database = str(conn.info.dbname)
        read_at = observed_at or datetime.now(UTC)
        q = _Query(collector_id, conn, pol, start, end, effective)
        findings, data = _COLLECTORS[collector_id](q)
        population = q.rows(sql.SQL("SELECT count(*) FROM {t} WHERE {w}").format(t=q.table, w=q.in_interval))
        population_sql = q.queries[-1]
        conn.rollback()  # read only: nothing to keep
    except psycopg.Error as exc:
        raise AuditDbCollectorError(collector_id, f"database error on {conn_id!r}: {exc}") from exc
    finally:
        conn.close()

    data = {**data, "params": dict(sorted(effective.items()))}
    return EvidenceItem(
        collector=collector_id,
        controls=controls,
        period_start=start,
        period_end=end,
        scope={"database": database, "table": f"{table.schema_name}.{table.table}"},
        retroactive=True,
        result=derive_result(findings),
        findings=tuple(findings),
        data=data,
        airflow=airflow,
        observed_at=read_at,
        method=Method(collector=collector_id, queries=tuple(q.queries[:-1]), parameters=dict(effective)),
        population=Population(
            what=f"events of {table.schema_name}.{table.table} with timestamp in [{iso(start)}, {iso(end)})",
            how=f"{population_sql} (REPEATABLE READ READ ONLY, the snapshot the collector's queries read)",
            size=int(population[0][0]),
        ),
    )
