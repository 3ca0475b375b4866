"""The audit-log quality checks as data: names, kinds and the SQL of the custom ones.

This module builds, from ``sources.yaml`` and an interval ``[start, end)``, the list of
:class:`CheckSpec` that :mod:`attestly.quality.suite` turns into one Great Expectations suite. It imports
neither GX nor a database driver, so the SQL can be read, reviewed and unit-tested on its own.

Check ids (**stable**; evidence, reports and tests refer to them):

``required_not_null:<logical>``   built-in ``ExpectColumnValuesToNotBeNull`` per ``required`` column
``enum:<logical>``                built-in ``ExpectColumnValuesToBeInSet`` per ``enums`` entry (NULL is
                                  not an enum violation: the not-null check owns it)
``id_unique``                     built-in ``ExpectColumnValuesToBeUnique`` on ``id`` (GX counts every
                                  row that shares an id: two per duplicated id)
``source_seq_unique``             rows beyond the first per (source, sequence) — N planted duplicates
                                  count N (GX's compound-unique built-in would count 2N)
``sequence_contiguous``           sequence numbers missing between the lowest and highest of each source
                                  inside the interval, one per missing number (a single gap counts at
                                  most :data:`MAX_GAP`; its note gives the real size)
``sequence_continuous_with_previous``  per source with earlier events: the first number in the interval
                                  must be the last number before the interval + 1; a jump counts the
                                  numbers skipped (at most :data:`MAX_GAP`), a repeat or step back 1
``hourly_volume``                 one per (full UTC hour x non-quiet source) with fewer than
                                  ``min_events_per_hour`` events and no heartbeat event
``timestamp_in_interval``         built-in ``ExpectColumnValuesToBeBetween`` on ``timestamp``: every
                                  validated row lies in [start, end) (guards the batch definition)
``timestamp_not_after_recorded``  ``timestamp > recorded_at + clock_skew_seconds``
``row_hash_recomputes``           stored ``row_hash`` differs from the recomputed one
                                  (:func:`attestly.audit.chain.sql_row_hash`)
``chain_links``                   a predecessor (same source, sequence - 1) exists but none has
                                  ``row_hash`` = this row's ``prev_hash`` (EXISTS semantics: a hole or a
                                  duplicate does not also fail this check)
``no_clear_text_phi``             rows whose ``free_text`` columns hold a US SSN, a Luhn-valid 13-19
                                  digit card number (spaces/dashes allowed) or an e-mail address

Custom checks are ``UnexpectedRowsExpectation`` queries: one row per unexpected item, two columns,
``sample_id`` (a row id as text, or NULL when the item is not a row, e.g. a silent hour) and ``note``
(source names, hours, sequence numbers — never a column's content), in a deterministic order so the
first rows give stable samples. Rows of the interval come from GX's ``{batch}``; the two checks that must
look outside it (the previous interval's last number; a predecessor in the previous interval) read the
table directly through the ``(source, sequence)`` index, for few rows only.

Queries are written without the word JOIN (GX re-aliases ``{batch}`` differently when it sees one),
with literal braces doubled (GX formats the query with ``str.format``) and with bind-like colons
escaped (GX runs the text through ``sqlalchemy.text``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from attestly.audit.chain import HASHED_FIELDS, sql_row_hash
from attestly.policy import SourcesPolicy

CheckKind = Literal["not_null", "in_set", "unique", "between", "sql"]

#: How many sample row ids a check reports at most.
MAX_SAMPLES = 5
#: A single sequence gap counts at most this many missing numbers (a writer that jumps to 2**62 must not
#: make the check enumerate them); the note of such a gap says it was capped.
MAX_GAP = 1_000_000

# PostgreSQL ARE patterns (see module docstring). Card numbers must stand alone: a digit run glued to
# letters, '_' or '-' (a UUID's groups, an order reference) is not a candidate.
SSN_RE = r"(?<![0-9])[0-9]{3}-[0-9]{2}-[0-9]{4}(?![0-9])"
CARD_RE = r"(?<![0-9A-Za-z_-])[0-9](?:[ -]?[0-9]){12,18}(?![0-9A-Za-z_-])"
EMAIL_RE = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
# One cheap pass that every PHI-bearing text matches (an SSN, an '@', 13 digits with separators); the
# precise patterns and the Luhn check then run on the few rows that pass (halves the check's cost).
PHI_PREFILTER_RE = r"[0-9]{3}-[0-9]{2}-[0-9]{4}|@|[0-9](?:[ -]?[0-9]){12}"

_BATCH = "__ATTESTLY_BATCH__"
_BIND_LIKE = re.compile(r"(?<![:\w\\]):(?=\w)")
_JOIN = re.compile(r"\bJOIN\b", re.IGNORECASE)


class QualityConfigError(ValueError):
    """The suite cannot be built as asked (bad interval, unusable mapping); the message says which."""


@dataclass(frozen=True)
class CheckSpec:
    """One check: a stable ``name``, how GX runs it, and what it runs on.

    ``kind`` ``sql`` carries ``sql``, a ready-to-use ``unexpected_rows_query`` (with ``{batch}``);
    the built-in kinds carry the physical ``column`` and, for ``in_set``, ``values``.
    """

    name: str
    kind: CheckKind
    column: str | None = None
    values: tuple[str, ...] = ()
    sql: str | None = None


@dataclass(frozen=True)
class SuiteSpec:
    """Everything the GX suite needs: the interval, the table, the checks and what was left out."""

    start: datetime
    end: datetime
    schema_name: str
    table: str
    id_column: str
    timestamp_column: str
    checks: tuple[CheckSpec, ...]
    skipped: dict[str, str] = field(default_factory=dict)
    sources: tuple[str, ...] = ()


def ident(name: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A single-quoted SQL string literal (standard_conforming_strings)."""
    if "\x00" in value:
        raise QualityConfigError(f"value {value!r} contains NUL and cannot be a SQL literal")
    return "'" + value.replace("'", "''") + "'"


def ts_literal(ts: datetime) -> str:
    """``TIMESTAMPTZ '...'`` for an aware datetime, in UTC."""
    return f"TIMESTAMPTZ {literal(ts.astimezone(UTC).isoformat())}"


def utc_interval(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """Validate and normalise ``[start, end)``: both time-zone aware, ``end`` after ``start``."""
    for label, ts in (("start", start), ("end", end)):
        if not isinstance(ts, datetime):
            raise QualityConfigError(f"{label} {ts!r} is not a datetime")
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise QualityConfigError(f"{label} {ts.isoformat()} has no time zone; give UTC timestamps")
    s, e = start.astimezone(UTC), end.astimezone(UTC)
    if e <= s:
        raise QualityConfigError(f"interval end {e.isoformat()} is not after start {s.isoformat()}")
    return s, e


def gx_query(sql: str) -> str:
    """Make ``sql`` (with the batch placeholder) safe for ``UnexpectedRowsExpectation``.

    Doubles literal braces (GX calls ``str.format``), puts ``{batch}`` in place of the placeholder and
    escapes colons that ``sqlalchemy.text`` would read as bind parameters.
    """
    if _JOIN.search(sql):
        raise QualityConfigError("internal: quality queries must not use JOIN (GX re-aliases {batch})")
    if _BATCH not in sql:
        raise QualityConfigError("internal: quality query does not read the batch")
    out = sql.replace("{", "{{").replace("}", "}}").replace(_BATCH, "{batch}")
    return _BIND_LIKE.sub(r"\\:", out)


def luhn_sql(digits: str) -> str:
    """SQL boolean: the digit string expression ``digits`` passes the Luhn check."""
    return (
        "(SELECT sum(CASE WHEN z.i % 2 = 1 THEN (CASE WHEN z.v * 2 > 9 THEN z.v * 2 - 9 ELSE z.v * 2 END) "
        "ELSE z.v END) % 10 = 0 "
        f"FROM (SELECT k.i, substr(reverse({digits}), k.i + 1, 1)::int AS v "
        f"FROM generate_series(0, length({digits}) - 1) AS k(i)) AS z)"
    )


def phi_predicate(text: str) -> str:
    """SQL boolean: the text expression ``text`` holds an SSN, a Luhn-valid card number or an e-mail."""
    card = (
        f"EXISTS (SELECT 1 FROM regexp_matches({text}, {literal(CARD_RE)}, 'g') AS cm(m) WHERE "
        + luhn_sql("regexp_replace(cm.m[1], '[^0-9]', '', 'g')")
        + ")"
    )
    return (
        f"({text} ~ {literal(PHI_PREFILTER_RE)} AND "
        f"({text} ~ {literal(SSN_RE)} OR {text} ~ {literal(EMAIL_RE)} OR {card}))"
    )


def full_hours(start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
    """First and last UTC hour that lie entirely inside ``[start, end)``, or None."""
    first = start.replace(minute=0, second=0, microsecond=0)
    if first < start:
        first += timedelta(hours=1)
    last = end.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    return (first, last) if last >= first else None


def _wrap(cte_select: str, core: str) -> str:
    """The common envelope: interval rows as ``iv``, then the check's rows in a stable order."""
    return gx_query(
        f"WITH iv AS NOT MATERIALIZED ({cte_select}), u AS ({core}) "
        'SELECT u.sample_id, u.note FROM u ORDER BY u.sort_key COLLATE "C", u.sample_id COLLATE "C"'
    )


def build_suite_spec(sources: SourcesPolicy, start: datetime, end: datetime) -> SuiteSpec:
    """The checks for ``[start, end)`` under the mapping and sources of ``sources.yaml``.

    Checks whose columns the mapping lacks are left out and listed in ``SuiteSpec.skipped`` with the
    reason (e.g. no ``row_hash`` column: no chain checks).
    """
    start, end = utc_interval(start, end)
    table = sources.audit_table
    cols = dict(table.columns)

    def col(logical: str) -> str:
        return ident(cols[logical])

    def has(*logical: str) -> bool:
        return all(name in cols for name in logical)

    tbl = f"{ident(table.schema_name)}.{ident(table.table)}"
    ts, src, seq, rid = col("timestamp"), col("source"), col("sequence"), col("id")
    s_lit, e_lit = ts_literal(start), ts_literal(end)
    # Every mapped column, under its own name: the hash needs them all, the rest need a few.
    iv = (
        "SELECT "
        + ", ".join(ident(c) for c in dict.fromkeys(cols.values()))
        + f" FROM {_BATCH} WHERE {ts} >= {s_lit} AND {ts} < {e_lit}"
    )
    order_first = f"{col('recorded_at')}, {rid}" if has("recorded_at") else f"{ts}, {rid}"
    checks: list[CheckSpec] = []
    skipped: dict[str, str] = {}

    for logical in table.required:
        checks.append(CheckSpec(f"required_not_null:{logical}", "not_null", column=cols[logical]))
    for logical, values in table.enums.items():
        checks.append(CheckSpec(f"enum:{logical}", "in_set", column=cols[logical], values=tuple(values)))
    checks.append(CheckSpec("id_unique", "unique", column=cols["id"]))

    checks.append(
        CheckSpec(
            "source_seq_unique",
            "sql",
            sql=_wrap(
                iv,
                "SELECT d.sid AS sample_id, d.src AS note, d.src || lpad(d.seq::text, 20, '0') AS sort_key "
                f"FROM (SELECT {rid}::text AS sid, {src} AS src, {seq} AS seq, row_number() OVER "
                f"(PARTITION BY {src}, {seq} ORDER BY {order_first}) AS rn FROM iv) AS d WHERE d.rn > 1",
            ),
        )
    )
    checks.append(
        CheckSpec(
            "sequence_contiguous",
            "sql",
            sql=_wrap(
                iv,
                "SELECT g.sid AS sample_id, g.src || ' #' || m.n || CASE WHEN g.seq - g.prev - 1 > "
                f"{MAX_GAP} THEN ' (gap of ' || (g.seq - g.prev - 1) || ', counted {MAX_GAP})' ELSE '' END "
                "AS note, g.src || lpad(m.n::text, 20, '0') AS sort_key "
                f"FROM (SELECT {rid}::text AS sid, {src} AS src, {seq} AS seq, "
                f"lag({seq}) OVER (PARTITION BY {src} ORDER BY {seq}, {rid}) AS prev FROM iv) AS g, "
                f"generate_series(g.prev + 1, least(g.seq - 1, g.prev + {MAX_GAP})) AS m(n) "
                "WHERE g.seq - g.prev > 1",
            ),
        )
    )
    checks.append(
        CheckSpec(
            "sequence_continuous_with_previous",
            "sql",
            sql=_wrap(
                iv,
                # first number per source by hash aggregate; the last number before the interval and
                # the first row's id (the sample) by one probe each of the (source, sequence) index
                "SELECT fr.sid AS sample_id, "
                "f.src || ' first #' || f.first_seq || ' after #' || p.last_seq AS note, "
                "f.src || lpad(m.n::text, 20, '0') AS sort_key "
                f"FROM (SELECT {src} AS src, min({seq}) AS first_seq FROM iv GROUP BY {src}) AS f, "
                f"LATERAL (SELECT e.{seq} AS last_seq FROM {tbl} AS e WHERE e.{src} = f.src "
                f"AND e.{ts} < {s_lit} ORDER BY e.{seq} DESC LIMIT 1) AS p, "
                f"LATERAL (SELECT min(x.{rid}::text) AS sid FROM {tbl} AS x WHERE x.{src} = f.src "
                f"AND x.{seq} = f.first_seq AND x.{ts} >= {s_lit} AND x.{ts} < {e_lit}) AS fr, "
                "generate_series(1, CASE WHEN f.first_seq > p.last_seq + 1 THEN "
                f"least(f.first_seq - p.last_seq - 1, {MAX_GAP}) ELSE 1 END) AS m(n) "
                "WHERE f.first_seq <> p.last_seq + 1",
            ),
        )
    )

    expected = [(s.name, s.min_events_per_hour) for s in sources.sources if not s.quiet_allowed]
    expected = [(n, m) for n, m in expected if m > 0]
    hours = full_hours(start, end)
    if not expected:
        skipped["hourly_volume"] = "no source has a minimum hourly volume (all quiet_allowed or 0)"
    elif hours is None:
        checks.append(CheckSpec("hourly_volume", "sql", sql=_wrap(iv, _empty_core())))
    else:
        heartbeat = (
            f"bool_or({col('action')} = {literal(table.heartbeat_action)})" if has("action") else "false"
        )
        expected_sql = ", ".join(f"({literal(n)}, {m})" for n, m in expected)
        first, last = (h.strftime("%Y-%m-%d %H:%M:%S") for h in hours)
        checks.append(
            CheckSpec(
                "hourly_volume",
                "sql",
                sql=_wrap(
                    iv,
                    "SELECT NULL::text AS sample_id, "
                    """x.src || ' ' || to_char(h.h, 'YYYY-MM-DD"T"HH24":00Z"') AS note, """
                    "x.src || to_char(h.h, 'YYYYMMDDHH24') AS sort_key "
                    f"FROM (VALUES {expected_sql}) AS x(src, min_n), generate_series(TIMESTAMP {literal(first)}, "
                    f"TIMESTAMP {literal(last)}, INTERVAL '1 hour') AS h(h) "
                    "WHERE NOT EXISTS (SELECT 1 FROM "
                    f"(SELECT {src} AS src, date_trunc('hour', {ts} AT TIME ZONE 'UTC') AS h, "
                    f"count(*) AS n, {heartbeat} AS hb FROM iv GROUP BY 1, 2) AS c "
                    "WHERE c.src = x.src AND c.h = h.h AND (c.n >= x.min_n OR c.hb))",
                ),
            )
        )

    checks.append(CheckSpec("timestamp_in_interval", "between", column=cols["timestamp"]))

    if has("recorded_at"):
        skew = int(table.clock_skew_seconds)
        checks.append(
            CheckSpec(
                "timestamp_not_after_recorded",
                "sql",
                sql=_wrap(
                    iv,
                    f"SELECT {rid}::text AS sample_id, {src} AS note, {src} AS sort_key FROM iv "
                    f"WHERE {ts} > {col('recorded_at')} + INTERVAL '{skew} seconds'",
                ),
            )
        )
    else:
        skipped["timestamp_not_after_recorded"] = "sources.yaml maps no recorded_at column"

    if has("row_hash", *HASHED_FIELDS):
        checks.append(
            CheckSpec(
                "row_hash_recomputes",
                "sql",
                sql=_wrap(
                    iv,
                    f"SELECT r.{rid}::text AS sample_id, r.{src} AS note, r.{src} AS sort_key FROM iv AS r "
                    f"WHERE r.{col('row_hash')} IS DISTINCT FROM {sql_row_hash(cols, 'r')}",
                ),
            )
        )
    else:
        missing = [c for c in ("row_hash", *HASHED_FIELDS) if c not in cols]
        skipped["row_hash_recomputes"] = f"sources.yaml maps no {', '.join(missing)} column"

    if has("row_hash", "prev_hash"):
        rh, ph = col("row_hash"), col("prev_hash")
        checks.append(
            CheckSpec(
                "chain_links",
                "sql",
                sql=_wrap(
                    iv,
                    f"SELECT r.{rid}::text AS sample_id, r.{src} || ' #' || r.{seq} AS note, "
                    f"r.{src} || lpad(r.{seq}::text, 20, '0') AS sort_key FROM iv AS r "
                    # Most rows find their predecessor inside the interval (a hash anti-join) ...
                    f"WHERE NOT EXISTS (SELECT 1 FROM iv AS p WHERE p.{src} = r.{src} AND p.{seq} = r.{seq} - 1 "
                    f"AND p.{rh} = r.{ph}) "
                    # ... the few that do not are looked up in the whole table through the index.
                    f"AND (SELECT bool_or(q.{rh} IS NOT DISTINCT FROM r.{ph}) FROM {tbl} AS q "
                    f"WHERE q.{src} = r.{src} AND q.{seq} = r.{seq} - 1) IS FALSE",
                ),
            )
        )
    else:
        skipped["chain_links"] = "sources.yaml maps no row_hash/prev_hash columns"

    if table.free_text:
        text = "concat_ws(E'\\n', " + ", ".join(f"{col(c)}::text" for c in table.free_text) + ")"
        checks.append(
            CheckSpec(
                "no_clear_text_phi",
                "sql",
                sql=_wrap(
                    iv,
                    f"SELECT {rid}::text AS sample_id, {src} AS note, {src} AS sort_key "
                    f"FROM iv, LATERAL (SELECT {text} AS t) AS ft WHERE {phi_predicate('ft.t')}",
                ),
            )
        )
    else:
        skipped["no_clear_text_phi"] = "sources.yaml lists no free_text columns"

    return SuiteSpec(
        start=start,
        end=end,
        schema_name=table.schema_name,
        table=table.table,
        id_column=cols["id"],
        timestamp_column=cols["timestamp"],
        checks=tuple(checks),
        skipped=skipped,
        sources=tuple(sorted(s.name for s in sources.sources)),
    )


def _empty_core() -> str:
    """A check with nothing to look at in this interval (e.g. no full hour): never any row."""
    return "SELECT NULL::text AS sample_id, NULL::text AS note, NULL::text AS sort_key FROM iv WHERE false"
