"""Run the audit-log quality suite through Great Expectations 1.x with SQL push-down.

One call of :func:`run_quality` = one ephemeral GX context, one PostgreSQL data source on the
read-only ``audit_db`` connection, one table asset with a whole-table batch definition, one suite built
from ``sources.yaml`` (:mod:`attestly.quality.checks`) and one validation run. Nothing is pulled into
pandas: every metric is a SQL query; only counts and at most a few hundred narrow rows (ids and
notes) come back.

How the interval is applied (GX 1.24 behaviours this module depends on):

- a *query asset* would be introspected by running its query without LIMIT (the whole interval is
  fetched to get column names), so a *table asset* is used and each built-in expectation carries a
  ``row_condition`` (``timestamp >= start AND timestamp < end``), which GX renders as a WHERE on the
  table: PostgreSQL prunes partitions;
- ``UnexpectedRowsExpectation`` takes no ``row_condition``: its ``{batch}`` is the whole table and the
  queries filter the interval themselves (same bounds);
- the run-level ``result_format`` overrides any per-expectation one. ``COMPLETE`` is used so that
  ``UnexpectedRowsExpectation`` returns its rows (GX fetches at most 200); the built-ins' index lists
  are still limited to ``partial_unexpected_count`` rows.

Session settings on the reader connection make results reproducible: UTC time zone, read-only
transactions, no parallel scans and no synchronised scans (so "the first five unexpected rows" are the
same on every run over the same data).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from attestly.connections import Conn, get_conn
from attestly.quality.checks import MAX_SAMPLES, CheckSpec, SuiteSpec, build_suite_spec
from attestly.quality.result import COLLECTOR, CheckResult, QualityResult

if TYPE_CHECKING:
    from datetime import datetime

    from attestly.policy import Policy

log = logging.getLogger(__name__)

#: Settings of the validation session (libpq ``options``).
SESSION_OPTIONS = (
    "-c TimeZone=UTC -c default_transaction_read_only=on "
    "-c max_parallel_workers_per_gather=0 -c synchronize_seqscans=off"
)
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "partial_unexpected_count": MAX_SAMPLES,
    "exclude_unexpected_values": True,
    "include_unexpected_rows": False,
    "return_unexpected_index_query": False,
}


class QualityError(RuntimeError):
    """The suite could not run (connection, GX set-up); the message names the part and never a secret."""


def import_gx() -> Any:
    """Import great_expectations quietly.

    GX logs at INFO on import (its API-docs decorator) and several lines per expectation on every run;
    unless the application configured the ``great_expectations`` logger itself, it is set to WARNING.
    """
    logging.getLogger("great_expectations._docs_decorators").setLevel(logging.WARNING)
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        gx_logger.setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def engine_url(conn: Conn) -> str:
    """SQLAlchemy URL without the password (it goes in ``connect_args``, never in GX's config)."""
    user = quote(conn.login or "", safe="")
    host = conn.host or "localhost"
    port = conn.port or 5432
    db = quote(conn.schema or "postgres", safe="")
    return f"postgresql+psycopg2://{user}@{host}:{port}/{db}"


def connect_args(conn: Conn) -> dict[str, Any]:
    """psycopg2 connect arguments: the connection's libpq parameters (password or IAM token, TLS and the
    other extras, as :meth:`Conn.pg_params` reads them) and the session settings (after the connection's
    own ``options``, so they win)."""
    params = conn.pg_params()
    args: dict[str, Any] = {"application_name": "attestly-quality"}
    args.update({k: v for k, v in params.items() if k not in ("host", "port", "dbname", "user")})
    args["options"] = f"{params['options']} {SESSION_OPTIONS}" if params.get("options") else SESSION_OPTIONS
    return args


def describe_check(check: CheckSpec, spec: SuiteSpec) -> str:
    """What GX runs for ``check``, as text for the item's ``method``: the SQL of a ``sql`` check (``{batch}``
    is the interval's rows of the table), else the expectation with its column, values and row condition."""
    where = (
        f"{spec.timestamp_column} >= '{spec.start.isoformat()}' AND {spec.timestamp_column} < "
        f"'{spec.end.isoformat()}'"
    )
    if check.kind == "sql" and check.sql:
        return f"-- {check.name}: UnexpectedRowsExpectation\n{check.sql}"
    name = {
        "not_null": "ExpectColumnValuesToNotBeNull",
        "in_set": "ExpectColumnValuesToBeInSet",
        "unique": "ExpectColumnValuesToBeUnique",
        "between": "ExpectColumnValuesToBeBetween",
    }.get(check.kind, check.kind)
    values = f", value_set={list(check.values)!r}" if check.kind == "in_set" else ""
    bounds = (
        f", min_value='{spec.start.isoformat()}', max_value='{spec.end.isoformat()}', strict_max=True"
        if check.kind == "between"
        else ""
    )
    return (
        f"-- {check.name}: {name}(column={check.column!r}{values}{bounds}) on "
        f"{spec.schema_name}.{spec.table} WHERE {where}"
    )


def _expectation(gx: Any, check: CheckSpec, spec: SuiteSpec, row_condition: Any) -> Any:
    meta = {"attestly_check": check.name}
    e = gx.expectations
    if check.kind == "not_null":
        return e.ExpectColumnValuesToNotBeNull(column=check.column, row_condition=row_condition, meta=meta)
    if check.kind == "in_set":
        return e.ExpectColumnValuesToBeInSet(
            column=check.column, value_set=list(check.values), row_condition=row_condition, meta=meta
        )
    if check.kind == "unique":
        return e.ExpectColumnValuesToBeUnique(column=check.column, row_condition=row_condition, meta=meta)
    if check.kind == "between":
        return e.ExpectColumnValuesToBeBetween(
            column=check.column,
            min_value=spec.start,
            max_value=spec.end,
            strict_max=True,
            row_condition=row_condition,
            meta=meta,
        )
    if check.kind == "sql" and check.sql:
        return e.UnexpectedRowsExpectation(unexpected_rows_query=check.sql, meta=meta)
    raise QualityError(f"check {check.name!r}: unknown kind {check.kind!r}")


def _exception_message(info: Any) -> str | None:
    """The first raised exception in a GX ``exception_info`` (flat or keyed by metric), or None."""
    if not isinstance(info, Mapping):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "exception")
    for value in info.values():
        found = _exception_message(value)
        if found:
            return found
    return None


def _index_ids(entries: Any, id_column: str) -> list[str]:
    """Ids from GX's ``partial_unexpected_index_list`` (``[{col: v}]`` or ``[{col: [v, ...]}]``)."""
    ids: list[str] = []
    for entry in entries or []:
        if not isinstance(entry, Mapping) or id_column not in entry:
            continue
        value = entry[id_column]
        for v in value if isinstance(value, list | tuple) else [value]:
            if v is not None:
                ids.append(str(v))
    return ids


def _summarise_notes(notes: list[str], unexpected: int, fetched: int) -> str:
    distinct = list(dict.fromkeys(n for n in notes if n))
    shown = distinct[:MAX_SAMPLES]
    more = len(distinct) > len(shown) or unexpected > fetched
    return ", ".join(shown) + (", ..." if more and shown else "")


def _check_result(check: CheckSpec, gx_result: Any, id_column: str) -> tuple[CheckResult, int | None]:
    """Turn one GX ``ExpectationValidationResult`` into a :class:`CheckResult` (and the row count)."""
    expectation = str(gx_result.expectation_config.type)
    message = _exception_message(gx_result.exception_info)
    if message is not None:
        log.error("quality check %s could not be evaluated: %s", check.name, message)
        first = message.strip().splitlines()[0] if message.strip() else "exception"
        kind = first.split(":", 1)[0][:80]
        return (
            CheckResult(
                name=check.name,
                success=False,
                unexpected_count=0,
                expectation=expectation,
                error=f"error: {kind} (see the task log)",
            ),
            None,
        )
    result = gx_result.result or {}
    if check.kind == "sql":
        count = int(result.get("observed_value") or 0)
        rows = (result.get("details") or {}).get("unexpected_rows") or []
        ids = list(dict.fromkeys(str(r["sample_id"]) for r in rows if r.get("sample_id") is not None))
        detail = _summarise_notes([str(r.get("note") or "") for r in rows], count, len(rows))
        return (
            CheckResult(
                name=check.name,
                success=bool(gx_result.success) and count == 0,
                unexpected_count=count,
                sample_ids=tuple(ids[:MAX_SAMPLES]),
                detail=detail,
                expectation=expectation,
            ),
            None,
        )
    count = int(result.get("unexpected_count") or 0)
    element_count = result.get("element_count")
    ids = sorted(set(_index_ids(result.get("partial_unexpected_index_list"), id_column)))
    detail = f"{count} of {element_count} rows" if count else ""
    return (
        CheckResult(
            name=check.name,
            success=bool(gx_result.success) and count == 0,
            unexpected_count=count,
            sample_ids=tuple(ids[:MAX_SAMPLES]),
            detail=detail,
            expectation=expectation,
        ),
        int(element_count) if element_count is not None else None,
    )


def run_quality(
    *,
    start: datetime,
    end: datetime,
    conn_id: str = "audit_db",
    policy: Policy | None = None,
) -> QualityResult:
    """Validate the audit log over ``[start, end)`` (aware datetimes) and return every check's result.

    Uses the read-only connection ``conn_id``; the policy defaults to :func:`attestly.policy.load_policy`.
    Raises :class:`~attestly.quality.checks.QualityConfigError` for a bad interval or mapping and
    :class:`QualityError` when the database or GX cannot be set up. A check GX could not evaluate is
    returned with ``error`` set rather than raised, so the other checks still count.
    """
    if policy is None:
        from attestly.policy import load_policy

        policy = load_policy()
    spec = build_suite_spec(policy.sources, start, end)
    conn = get_conn(conn_id)
    gx = import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.row_conditions import Column

    t0 = time.perf_counter()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    where = f"{conn.login}@{conn.host}:{conn.port}/{conn.schema}"
    try:
        source = context.data_sources.add_postgres(
            name="attestly_audit",
            connection_string=engine_url(conn),
            kwargs={"connect_args": connect_args(conn), "pool_pre_ping": True},
        )
    except Exception as exc:  # GX wraps driver errors in its own TestConnectionError
        raise QualityError(
            f"cannot connect to the audit database ({where}, connection {conn_id!r}): {type(exc).__name__}"
        ) from None
    try:
        try:
            asset = source.add_table_asset(
                name="audit_events", table_name=spec.table, schema_name=spec.schema_name
            )
        except Exception as exc:  # GX checks the table exists and is readable
            raise QualityError(
                f"table {spec.schema_name}.{spec.table} (sources.yaml audit_table) is not readable through "
                f"connection {conn_id!r} ({where}): {type(exc).__name__}"
            ) from None
        batch_definition = asset.add_batch_definition_whole_table("interval")
        ts = Column(spec.timestamp_column)
        row_condition = (ts >= spec.start.isoformat()) & (ts < spec.end.isoformat())
        suite = gx.ExpectationSuite(name="attestly_audit_log_quality")
        for check in spec.checks:
            suite.add_expectation(_expectation(gx, check, spec, row_condition))
        suite = context.suites.add(suite)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name="attestly_audit_log_quality", data=batch_definition, suite=suite)
        )
        outcome = definition.run(
            result_format={**RESULT_FORMAT, "unexpected_index_column_names": [spec.id_column]}
        )
    finally:
        with contextlib.suppress(Exception):  # best effort: give the reader connections back
            source.get_engine().dispose()

    by_name = {c.name: c for c in spec.checks}
    results: dict[str, CheckResult] = {}
    rows: int | None = None
    for gx_result in outcome.results:
        name = (gx_result.expectation_config.meta or {}).get("attestly_check")
        if name not in by_name:
            raise QualityError(f"GX returned a result for an unknown expectation {name!r}")
        check_result, element_count = _check_result(by_name[name], gx_result, spec.id_column)
        results[name] = check_result
        if rows is None and element_count is not None:
            rows = element_count
    missing = [c.name for c in spec.checks if c.name not in results]
    if missing:
        raise QualityError(f"GX returned no result for {', '.join(missing)}")

    return QualityResult(
        start=spec.start,
        end=spec.end,
        checks=[results[c.name] for c in spec.checks],
        rows=rows or 0,
        database=conn.schema or "",
        table=f"{spec.schema_name}.{spec.table}",
        sources=spec.sources,
        controls=tuple(policy.controls_for_collector(COLLECTOR)),
        skipped=dict(spec.skipped),
        gx_version=str(gx.__version__),
        seconds=time.perf_counter() - t0,
        queries=tuple(describe_check(c, spec) for c in spec.checks),
    )
