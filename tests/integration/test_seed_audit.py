"""`attestly seed audit`: realistic data, contiguous sequences, a valid chain, and faults exactly as reported."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from typing import Any

import pytest

from attestly.audit import chain
from attestly.policy import load_policy
from attestly_dev import audit_seed as seed

pytestmark = pytest.mark.integration

RECOMPUTE = chain.sql_row_hash(dict(load_policy().sources.audit_table.columns))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attestly.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _bad_hashes(admin: Any) -> set[str]:
    rows = admin.execute(f"SELECT id::text FROM audit.events e WHERE e.row_hash <> {RECOMPUTE}").fetchall()
    return {r[0] for r in rows}


def _broken_links(admin: Any) -> int:
    """Rows whose predecessor (same source, seq - 1) exists but none of them has the row's prev_hash."""
    return admin.execute(
        """SELECT count(*) FROM audit.events e
           WHERE EXISTS (SELECT 1 FROM audit.events p WHERE p.source = e.source AND p.seq = e.seq - 1)
             AND NOT EXISTS (SELECT 1 FROM audit.events p
                             WHERE p.source = e.source AND p.seq = e.seq - 1 AND p.row_hash = e.prev_hash)"""
    ).fetchone()[0]


def test_clean_seed_has_contiguous_sequences_and_a_valid_chain(
    fresh_audit: dict[str, str], admin_audit: Any
) -> None:
    first = seed.seed_audit(start=date(2026, 5, 1), days=1, events_per_day=1500)
    second = seed.seed_audit(start=date(2026, 5, 2), days=1, events_per_day=1500)
    total = admin_audit.execute("SELECT count(*) FROM audit.events").fetchone()[0]
    assert total == first["rows"] + second["rows"]
    per_source = admin_audit.execute(
        "SELECT source, min(seq), max(seq), count(*), count(DISTINCT seq) FROM audit.events GROUP BY source"
    ).fetchall()
    assert {r[0] for r in per_source} == {"auth-service", "ehr-api", "billing", "admin-console"}
    for source, lo, hi, n, distinct in per_source:
        assert (lo, hi, distinct) == (1, n, n), source  # contiguous from 1 across both calls
    assert _bad_hashes(admin_audit) == set()
    assert _broken_links(admin_audit) == 0
    # Every hour of every non-quiet source has events.
    quiet_hours = admin_audit.execute(
        """SELECT count(*) FROM generate_series('2026-05-01'::timestamptz, '2026-05-02 23:00'::timestamptz, '1 hour') h
           CROSS JOIN (VALUES ('auth-service'), ('ehr-api'), ('billing')) s(source)
           WHERE NOT EXISTS (SELECT 1 FROM audit.events e WHERE e.source = s.source
                             AND e.occurred_at >= h AND e.occurred_at < h + interval '1 hour')"""
    ).fetchone()[0]
    assert quiet_hours == 0
    # Realistic: several event types and results; PHI-bearing events carry a subject.
    kinds = admin_audit.execute(
        "SELECT count(DISTINCT event_type), count(DISTINCT result) FROM audit.events"
    ).fetchone()
    assert kinds[0] >= 6 and kinds[1] == 3
    assert (
        admin_audit.execute(
            "SELECT count(*) FROM audit.events WHERE source = 'ehr-api' AND subject_id IS NOT NULL"
        ).fetchone()[0]
        > 0
    )


def test_seeding_refuses_days_before_what_is_loaded(fresh_audit: dict[str, str]) -> None:
    seed.seed_audit(start=date(2026, 5, 2), days=1, events_per_day=200)
    with pytest.raises(seed.SeedError, match="already has events up to"):
        seed.seed_audit(start=date(2026, 5, 1), days=1, events_per_day=200)


def test_every_fault_lands_exactly_as_reported(fresh_audit: dict[str, str], admin_audit: Any) -> None:
    result = _cli(
        "seed", "audit", "--start", "2026-06-01", "--days", "2", "--events-per-day", "2000", "--json",
        "--inject", "gap:source=billing,start=2026-06-01T03:00:00Z,hours=2",
        "--inject", "seq-hole:source=ehr-api,count=3",
        "--inject", "duplicate:count=2",
        "--inject", "null:column=actor,count=4",
        "--inject", "bad-enum:column=result,count=5",
        "--inject", "phi-leak:count=6",
        "--inject", "chain-break:count=7",
        "--inject", "future:count=8",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    planted = {i["kind"]: i for i in json.loads(result.stdout)["injected"]}
    assert set(planted) == set(seed.FAULT_KINDS)

    # gap: billing has no events 03:00-05:00 on day one, and its sequence stays contiguous.
    assert (
        admin_audit.execute(
            "SELECT count(*) FROM audit.events WHERE source = 'billing' "
            "AND occurred_at >= '2026-06-01T03:00Z' AND occurred_at < '2026-06-01T05:00Z'"
        ).fetchone()[0]
        == 0
    )
    assert planted["gap"]["count"] == 2

    # seq-hole: exactly the reported numbers are missing from ehr-api.
    missing = admin_audit.execute(
        """SELECT array_agg(s ORDER BY s) FROM generate_series(
             (SELECT min(seq) FROM audit.events WHERE source = 'ehr-api'),
             (SELECT max(seq) FROM audit.events WHERE source = 'ehr-api')) s
           WHERE NOT EXISTS (SELECT 1 FROM audit.events e WHERE e.source = 'ehr-api' AND e.seq = s)"""
    ).fetchone()[0]
    assert missing == planted["seq-hole"]["seqs"] and len(missing) == 3
    billing_holes = admin_audit.execute(
        "SELECT max(seq) - min(seq) + 1 - count(DISTINCT seq) FROM audit.events WHERE source = 'billing'"
    ).fetchone()[0]
    assert billing_holes == 0

    # duplicate: the reported (source, seq) pairs appear twice.
    dups = admin_audit.execute(
        "SELECT source, seq FROM audit.events GROUP BY source, seq HAVING count(*) > 1 ORDER BY 1, 2"
    ).fetchall()
    assert sorted((r["source"], r["seq"]) for r in planted["duplicate"]["rows"]) == [tuple(d) for d in dups]

    def ids_where(condition: str) -> set[str]:
        return {
            r[0]
            for r in admin_audit.execute(f"SELECT id::text FROM audit.events WHERE {condition}").fetchall()
        }

    assert ids_where("actor_id IS NULL") == set(planted["null"]["ids"])
    assert ids_where("result NOT IN ('success', 'failure', 'denied')") == set(planted["bad-enum"]["ids"])
    leaks = ids_where(
        r"metadata::text ~ '\d{3}-\d{2}-\d{4}' OR metadata::text ~ '\d{4} \d{4} \d{4} \d{4}' "
        r"OR metadata::text ~ '[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}'"
    )
    assert leaks == set(planted["phi-leak"]["ids"])
    assert ids_where("occurred_at > recorded_at + interval '5 minutes'") == set(planted["future"]["ids"])

    # chain-break: exactly those rows fail to recompute; links between present neighbours all hold.
    assert _bad_hashes(admin_audit) == set(planted["chain-break"]["ids"])
    assert _broken_links(admin_audit) == 0


def test_bad_inject_spec_is_a_usage_error_naming_the_part(fresh_audit: dict[str, str]) -> None:
    result = _cli("seed", "audit", "--start", "2026-06-01", "--days", "1", "--events-per-day", "10",
                  "--inject", "seq-hole:source=ehr-api,count=many")  # fmt: skip
    assert result.returncode == 2
    assert "count='many' is not a whole number" in result.stderr
    result = _cli("seed", "audit", "--start", "2026-06-01", "--days", "1", "--events-per-day", "10",
                  "--inject", "null:column=source,count=1")  # fmt: skip
    assert result.returncode == 2
    assert "column='source' is not a required non-key column" in result.stderr
