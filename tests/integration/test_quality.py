"""The audit-log quality suite against a real PostgreSQL: planted faults give exactly the planted counts.

Each test starts from an empty audit database (``fresh_audit``), seeds it with ``attestly_dev.audit_seed``
(faults planted exactly as reported) and validates through GX on the read-only ``audit_db`` connection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from attestly.audit import chain
from attestly.policy import load_policy
from attestly.quality import (
    QualityConfigError,
    QualityResult,
    format_result,
    quality_cli,
    run_quality,
)
from attestly_dev import audit_seed as seed

pytestmark = pytest.mark.integration

DAY1 = date(2026, 6, 1)
EVENTS_PER_DAY = 2000


def _utc(d: date, hours: int = 0) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(hours=hours)


def _validate(first: date, days: int = 1) -> QualityResult:
    return run_quality(start=_utc(first), end=_utc(first + timedelta(days=days)))


def _failures(result: QualityResult) -> dict[str, int]:
    return {c.name: c.unexpected_count for c in result.checks if not c.success}


def _planted_ids(report: dict[str, Any]) -> set[str]:
    ids: set[str] = set()
    for inj in report["injected"]:
        ids.update(inj.get("ids", []))
        ids.update(r["id"] for r in inj.get("rows", []))
    return ids


FAULTS = [
    ("gap:source=billing,start=2026-06-01T03:00:00Z,hours=2", "hourly_volume", 2),
    ("seq-hole:source=ehr-api,count=3", "sequence_contiguous", 3),
    ("duplicate:count=2", "source_seq_unique", 2),
    ("null:column=actor,count=4", "required_not_null:actor", 4),
    ("null:column=result,count=3", "required_not_null:result", 3),
    ("bad-enum:column=result,count=5", "enum:result", 5),
    ("phi-leak:count=6", "no_clear_text_phi", 6),
    ("chain-break:count=7", "row_hash_recomputes", 7),
    ("future:count=8", "timestamp_not_after_recorded", 8),
]


@pytest.mark.parametrize(("spec", "check", "count"), FAULTS, ids=[f[0].split(",")[0] for f in FAULTS])
def test_each_fault_fails_exactly_its_check_with_the_planted_count(
    fresh_audit: dict[str, str], spec: str, check: str, count: int
) -> None:
    report = seed.seed_audit(
        start=DAY1, days=1, events_per_day=EVENTS_PER_DAY, injections=[seed.parse_injection(spec)]
    )
    result = _validate(DAY1)
    assert _failures(result) == {check: count}, format_result(result)
    failed = result.check(check)
    assert failed.expectation  # the GX type that ran it
    assert len(failed.sample_ids) <= 5
    planted = _planted_ids(report)
    if planted and check != "sequence_contiguous":  # a hole's samples are the rows after it
        assert failed.sample_ids and set(failed.sample_ids) <= planted
    if check == "hourly_volume":
        assert failed.detail == "billing 2026-06-01T03:00Z, billing 2026-06-01T04:00Z"
    assert result.rows == report["rows"]
    # Evidence: one finding per check, ids and counts only.
    item = result.to_evidence().to_dict()
    assert item["result"] == "fail"
    bad = [f for f in item["findings"] if f["status"] != "pass"]
    assert [f["resource"] for f in bad] == [check]
    assert bad[0]["detail"].startswith(f"unexpected {count}")


def test_a_clean_interval_passes_every_check_and_is_evidence(fresh_audit: dict[str, str]) -> None:
    report = seed.seed_audit(start=DAY1, days=2, events_per_day=EVENTS_PER_DAY)
    result = _validate(DAY1, days=2)
    assert result.success, format_result(result)
    assert result.rows == report["rows"]
    names = [c.name for c in result.checks]
    for expected in (
        "required_not_null:actor", "enum:result", "id_unique", "source_seq_unique", "sequence_contiguous",
        "sequence_continuous_with_previous", "hourly_volume", "timestamp_in_interval",
        "timestamp_not_after_recorded", "row_hash_recomputes", "chain_links", "no_clear_text_phi",
    ):  # fmt: skip
        assert expected in names
    assert len(names) == len(set(names))
    assert result.skipped == {}
    by_type = {c.name: c.expectation for c in result.checks}
    assert by_type["required_not_null:actor"] == "expect_column_values_to_not_be_null"
    assert by_type["enum:result"] == "expect_column_values_to_be_in_set"
    assert by_type["id_unique"] == "expect_column_values_to_be_unique"
    assert by_type["chain_links"] == "unexpected_rows_expectation"

    policy = load_policy()
    item = result.to_evidence().to_dict()
    assert item["collector"] == "quality.audit_log"
    assert item["controls"] == sorted(policy.controls_for_collector("quality.audit_log"))
    assert item["period"] == {"start": "2026-06-01T00:00:00Z", "end": "2026-06-03T00:00:00Z"}
    assert item["collected_at"] == "2026-06-03T00:00:00Z"
    assert item["scope"] == {
        "database": "audit",
        "table": "audit.events",
        "sources": ",".join(sorted(policy.sources.source_names)),
    }
    assert item["retroactive"] is True and item["result"] == "pass"
    assert len(item["findings"]) == len(result.checks)
    assert all(f["detail"] == "unexpected 0" for f in item["findings"])
    assert item["data"]["gx_version"] == "1.24.1"
    assert [c["name"] for c in item["data"]["checks"]] == names
    # No timing in the evidence (the SQL the method names may say "INTERVAL '300 seconds'"; that is not one).
    assert '"seconds":' not in json.dumps(item)


def test_a_quiet_allowed_source_may_be_silent_but_a_required_one_may_not(fresh_audit: dict[str, str]) -> None:
    seed.seed_audit(
        start=DAY1, days=1, events_per_day=EVENTS_PER_DAY, sources=["auth-service", "ehr-api", "billing"]
    )
    result = _validate(DAY1)
    assert result.success, format_result(result)  # admin-console (quiet_allowed) wrote nothing

    seed.seed_audit(
        start=DAY1 + timedelta(days=1),
        days=1,
        events_per_day=EVENTS_PER_DAY,
        sources=["auth-service", "ehr-api"],
    )
    result = _validate(DAY1 + timedelta(days=1))
    assert _failures(result) == {"hourly_volume": 24}, format_result(result)
    assert result.check("hourly_volume").detail.startswith(
        "billing 2026-06-02T00:00Z, billing 2026-06-02T01:00Z"
    )


def test_a_heartbeat_keeps_a_quiet_hour_valid(fresh_audit: dict[str, str], admin_audit: Any) -> None:
    seed.seed_audit(
        start=DAY1, days=1, events_per_day=EVENTS_PER_DAY,
        injections=[seed.parse_injection("gap:source=billing,start=2026-06-01T03:00:00Z,hours=2")],
    )  # fmt: skip
    assert _failures(_validate(DAY1)) == {"hourly_volume": 2}
    # billing proves it is alive at 03:30 with a heartbeat (appended at the head of its chain, as a
    # writer would, but stamped inside the gap: the hour counts, nothing else changes for the suite).
    head = admin_audit.execute(
        "SELECT seq, row_hash FROM audit.events WHERE source = 'billing' ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    row: dict[str, Any] = {
        "id": uuid.uuid4(), "timestamp": _utc(DAY1, 3) + timedelta(minutes=30), "source": "billing",
        "sequence": head[0] + 1, "event_type": "system_access", "actor": "svc-billing", "resource": "service/billing",
        "action": "heartbeat", "result": "success", "severity": "info", "standard": "pci", "metadata": {},
        "prev_hash": bytes(head[1]),
    }  # fmt: skip
    _insert(admin_audit, row, recorded_at=row["timestamp"])
    result = _validate(DAY1)
    assert _failures(result) == {"hourly_volume": 1}, format_result(result)
    assert result.check("hourly_volume").detail == "billing 2026-06-01T04:00Z"


def _insert(admin: Any, row: dict[str, Any], *, recorded_at: datetime) -> None:
    """Insert one event as the superuser (the append-only trigger allows INSERT) with a valid hash."""
    from psycopg.types.json import Jsonb

    full = {k: row.get(k) for k in chain.HASHED_FIELDS}
    full["row_hash"] = chain.row_hash(full)
    admin.execute("SELECT audit.ensure_month_partition(%s)", (row["timestamp"].date(),))
    admin.execute(
        """INSERT INTO audit.events (id, occurred_at, recorded_at, source, seq, event_type, actor_id, resource_id,
               action, result, ip, user_agent, metadata, severity, standard, subject_id, phi_ciphertext,
               subject_key_id, prev_hash, row_hash)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            full["id"], full["timestamp"], recorded_at, full["source"], full["sequence"], full["event_type"],
            full["actor"], full["resource"], full["action"], full["result"], full["ip"], full["user_agent"],
            Jsonb(full["metadata"]) if full["metadata"] is not None else None, full["severity"], full["standard"],
            full["subject"], full["phi_ciphertext"], full["subject_key_id"], full["prev_hash"], full["row_hash"],
        ),
    )  # fmt: skip


def test_a_huge_sequence_jump_is_counted_up_to_the_cap(fresh_audit: dict[str, str], admin_audit: Any) -> None:
    from attestly.quality.checks import MAX_GAP

    seed.seed_audit(start=DAY1, days=1, events_per_day=EVENTS_PER_DAY)
    head = admin_audit.execute(
        "SELECT seq, row_hash FROM audit.events WHERE source = 'billing' ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    jump = 5 * MAX_GAP
    row: dict[str, Any] = {
        "id": uuid.uuid4(), "timestamp": _utc(DAY1, 23) + timedelta(minutes=59, seconds=59), "source": "billing",
        "sequence": head[0] + jump + 1, "event_type": "data_access", "actor": "u-0002", "resource": "payment/00001",
        "action": "view_payment", "result": "success", "severity": "info", "standard": "pci", "metadata": {},
        "prev_hash": bytes(head[1]),
    }  # fmt: skip
    _insert(admin_audit, row, recorded_at=row["timestamp"])
    result = _validate(DAY1)
    assert _failures(result) == {"sequence_contiguous": MAX_GAP}, format_result(result)
    check = result.check("sequence_contiguous")
    assert check.sample_ids == (str(row["id"]),)
    assert f"(gap of {jump}, counted {MAX_GAP})" in check.detail


def test_continuity_with_the_previous_interval(fresh_audit: dict[str, str], admin_audit: Any) -> None:
    day2 = DAY1 + timedelta(days=1)
    seed.seed_audit(start=DAY1, days=1, events_per_day=EVENTS_PER_DAY)
    seed.seed_audit(start=day2, days=1, events_per_day=EVENTS_PER_DAY)
    assert _validate(day2).success  # each source's first number on day 2 follows its last on day 1
    assert _validate(DAY1, days=2).success

    # Lose billing's first two events of day 2 (the superuser bypasses the append-only trigger).
    lost = admin_audit.execute(
        "SELECT id, occurred_at, seq FROM audit.events WHERE source = 'billing' AND occurred_at >= %s "
        "ORDER BY seq LIMIT 3",
        (_utc(day2),),
    ).fetchall()
    admin_audit.execute("SET session_replication_role = replica")
    admin_audit.execute("DELETE FROM audit.events WHERE id = ANY(%s)", ([lost[0][0], lost[1][0]],))
    admin_audit.execute("RESET session_replication_role")
    result = _validate(day2)
    assert _failures(result) == {"sequence_continuous_with_previous": 2}, format_result(result)
    check = result.check("sequence_continuous_with_previous")
    assert check.sample_ids == (str(lost[2][0]),)
    assert check.detail == f"billing first #{lost[2][2]} after #{lost[0][2] - 1}"
    # Within day 2 the sequence is contiguous, and day 1 alone is still clean.
    assert result.check("sequence_contiguous").success
    assert _validate(DAY1).success
    # Over both days the loss is a hole inside the interval instead.
    assert _failures(_validate(DAY1, days=2)) == {"sequence_contiguous": 2}


def test_phi_detection_is_precise(fresh_audit: dict[str, str], admin_audit: Any) -> None:
    texts = [
        ("SSN 123-45-6789 given", True),
        ("contact jane.doe@example.com", True),
        ("card 4111 1111 1111 1111 declined", True),
        ("card 4111-1111-1111-1111", True),
        ("card 4111 1111 1111 1112 (fails Luhn)", False),
        ("request 12345678-1234-4123-8123-123456789012", False),  # a digits-only UUID is not a card
        ("order 12345678901234567890", False),  # 20 digits
        ("date 2026-06-01 at 12:00, build 1.24.1", False),
    ]
    prev: bytes | None = None
    expected = set()
    for i, (text, is_phi) in enumerate(texts, start=1):
        row: dict[str, Any] = {
            "id": uuid.uuid4(), "timestamp": _utc(DAY1, 10) + timedelta(seconds=i), "source": "auth-service",
            "sequence": i, "event_type": "authentication", "actor": "u-0001", "resource": "session/00001",
            "action": "login", "result": "success", "severity": "info", "standard": "soc2",
            "metadata": {"note": text}, "prev_hash": prev,
        }  # fmt: skip
        _insert(admin_audit, row, recorded_at=row["timestamp"])
        prev = chain.row_hash({k: row.get(k) for k in chain.HASHED_FIELDS})
        if is_phi:
            expected.add(str(row["id"]))
    result = run_quality(start=_utc(DAY1, 10), end=_utc(DAY1, 11))
    phi = result.check("no_clear_text_phi")
    assert phi.unexpected_count == len(expected)
    assert set(phi.sample_ids) == expected
    assert result.check("chain_links").success and result.check("row_hash_recomputes").success
    # Evidence never carries the offending text.
    blob = json.dumps(result.to_evidence().to_dict())
    assert "6789" not in blob and "example.com" not in blob and "4111" not in blob


def test_results_are_identical_on_a_rerun(fresh_audit: dict[str, str]) -> None:
    seed.seed_audit(
        start=DAY1, days=1, events_per_day=EVENTS_PER_DAY,
        injections=[seed.parse_injection(s) for s in (
            "seq-hole:source=ehr-api,count=3", "duplicate:count=2", "null:column=actor,count=7",
            "phi-leak:count=9", "chain-break:count=6", "future:count=8",
        )],
    )  # fmt: skip
    first, second = _validate(DAY1), _validate(DAY1)
    assert not first.success
    assert first.to_evidence().sha256 == second.to_evidence().sha256
    one, two = first.to_dict(), second.to_dict()
    one.pop("seconds"), two.pop("seconds")
    assert one == two
    assert first.check("required_not_null:actor").unexpected_count == 7
    assert len(first.check("required_not_null:actor").sample_ids) == 5


def test_cli_exit_codes_and_json(fresh_audit: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    seed.seed_audit(
        start=DAY1, days=1, events_per_day=EVENTS_PER_DAY, injections=[seed.parse_injection("future:count=2")]
    )
    assert quality_cli(_utc(DAY1), _utc(DAY1, 24), as_json=False) == 1
    out = capsys.readouterr().out
    assert "FAIL  timestamp_not_after_recorded" in out or "FAIL timestamp_not_after_recorded" in out
    assert "PASS" in out
    # naive timestamps are UTC
    code = quality_cli(datetime(2026, 6, 2), datetime(2026, 6, 3), as_json=True)
    body = json.loads(capsys.readouterr().out)
    assert body["rows"] == 0 and body["start"] == "2026-06-02T00:00:00Z"
    assert code == 1 and not body["success"]  # nothing was written that day: every source is silent
    assert quality_cli(_utc(DAY1, 1), _utc(DAY1, 1), as_json=False) == 2
    assert "is not after start" in capsys.readouterr().err
    with pytest.raises(QualityConfigError, match="has no time zone"):
        run_quality(start=datetime(2026, 6, 1), end=_utc(DAY1, 1))


_PUSHDOWN_PROBE = textwrap.dedent(
    """
    import json, resource, sys
    from datetime import datetime, timedelta, timezone
    import pandas as pd
    from attestly.quality import run_quality

    frames = {"count": 0, "max_rows": 0}
    original = pd.DataFrame.__init__
    def counting_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        frames["count"] += 1
        frames["max_rows"] = max(frames["max_rows"], len(self))
    pd.DataFrame.__init__ = counting_init

    start = datetime.fromisoformat(sys.argv[1]); end = datetime.fromisoformat(sys.argv[2])
    run_quality(start=start, end=start + timedelta(hours=1))  # warm up: GX loaded, one small run
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run_quality(start=start, end=end)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": result.rows, "success": result.success, "growth_kib": after - before,
                      "frames": frames["count"], "max_frame_rows": frames["max_rows"]}))
    """
)


def test_validation_is_pushed_down_to_sql(fresh_audit: dict[str, str]) -> None:
    """200k rows validated with no DataFrame built and flat memory (a pandas pull would cost >150 MB)."""
    # One call: the seeder's chain_heads() grows quadratically with rows already loaded.
    total = seed.seed_audit(start=DAY1, days=4, events_per_day=50_000)["rows"]
    assert total >= 200_000
    probe = subprocess.run(
        [sys.executable, "-c", _PUSHDOWN_PROBE, _utc(DAY1).isoformat(), _utc(DAY1 + timedelta(days=4)).isoformat()],
        capture_output=True, text=True, timeout=600, env=dict(os.environ), check=False,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-3000:]
    figures = json.loads(probe.stdout.strip().splitlines()[-1])
    print("push-down probe:", figures)
    assert figures["rows"] == total and figures["success"], figures
    assert figures["max_frame_rows"] < 100, figures
    assert figures["growth_kib"] < 48 * 1024, figures


def test_custom_queries_survive_gx_formatting_and_sqlalchemy_text() -> None:
    """Every UnexpectedRowsExpectation query formats with only {batch} and has no bind parameters."""
    import sqlalchemy as sa

    from attestly.quality.checks import build_suite_spec

    spec = build_suite_spec(load_policy().sources, _utc(DAY1, 0) + timedelta(minutes=30), _utc(DAY1, 5))
    custom = [c for c in spec.checks if c.kind == "sql"]
    assert {c.name for c in custom} >= {
        "source_seq_unique",
        "hourly_volume",
        "chain_links",
        "no_clear_text_phi",
    }
    for check in custom:
        assert check.sql is not None
        text = check.sql.format(batch="(SELECT * FROM audit.events WHERE true) AS subselect")
        assert "JOIN" not in text.upper(), check.name
        assert sa.text(text).compile().params == {}, check.name
    hourly = next(c for c in custom if c.name == "hourly_volume")
    assert hourly.sql is not None
    # only the full hours inside [00:30, 05:00) are judged: 01:00 .. 04:00
    assert "TIMESTAMP '2026-06-01 01:00:00'" in hourly.sql and "TIMESTAMP '2026-06-01 04:00:00'" in hourly.sql
