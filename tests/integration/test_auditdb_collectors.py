"""Audit-database collectors against a real PostgreSQL: realistic seeded volume plus exact planted cases."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from attestly.collectors.auditdb import (
    AUDITDB_COLLECTORS,
    AuditDbCollectorError,
    collect_auditdb,
)
from attestly.evidence import AirflowContext, EvidenceItem, Finding, parse_item
from attestly.policy import Policy, load_policy
from attestly_dev.audit_seed import seed_audit

pytestmark = pytest.mark.integration

DAY = date(2026, 5, 1)
START = datetime(2026, 5, 1, tzinfo=UTC)
END = START + timedelta(days=1)
POLICY = load_policy()
_SEQ = itertools.count(10_000_000)


def _seed(**kwargs: Any) -> dict[str, Any]:
    return seed_audit(start=DAY, days=1, events_per_day=2000, **kwargs)


def _plant(
    admin: Any,
    *,
    at: datetime,
    event_type: str,
    action: str,
    result: str = "success",
    source: str = "auth-service",
    actor: str | None = "u-0001",
    resource: str | None = None,
    ip: str | None = None,
    subject: str | None = None,
) -> str:
    """Insert one exact row as superuser (INSERT is allowed; UPDATE/DELETE are not) and return its id."""
    admin.execute("SELECT audit.ensure_month_partition(%s)", (date(at.year, at.month, 1),))
    event_id = uuid.uuid4()
    admin.execute(
        """INSERT INTO audit.events (id, occurred_at, recorded_at, source, seq, event_type, actor_id,
                                     resource_id, action, result, ip, severity, standard, subject_id, row_hash)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'info', 'general', %s, %s)""",
        (
            event_id,
            at,
            at + timedelta(milliseconds=50),
            source,
            next(_SEQ),
            event_type,
            actor,
            resource,
            action,
            result,
            ip,
            subject,
            hashlib.sha256(event_id.bytes).digest(),
        ),
    )
    return str(event_id)


OBSERVED = datetime(2026, 5, 3, 9, 30, tzinfo=UTC)  # when the database was read: after the interval


def _collect(collector: str, **kwargs: Any) -> EvidenceItem:
    kwargs.setdefault("observed_at", OBSERVED)
    kwargs.setdefault("period_start", START)
    kwargs.setdefault("period_end", END)
    kwargs.setdefault("policy", POLICY)
    return collect_auditdb(collector, **kwargs)


def _failing(item: EvidenceItem) -> list[Finding]:
    return sorted((f for f in item.findings if f.status == "fail"), key=lambda f: (f.resource, f.detail))


# ---------------------------------------------------------------------------------------------- clean


def test_clean_seeded_day_passes_every_collector_deterministically(fresh_audit: dict[str, str]) -> None:
    loaded = _seed()
    airflow = AirflowContext("evidence_collection", "scheduled__2026-05-02T00:00:00+00:00", "auditdb", 1)
    items = {c: _collect(c, airflow=airflow) for c in AUDITDB_COLLECTORS}

    for collector, item in items.items():
        assert item.result == "pass", (collector, _failing(item))
        assert item.collector == collector
        assert item.retroactive is True
        assert item.scope == {"database": "audit", "table": "audit.events"}
        assert list(item.controls) == POLICY.controls_for_collector(collector)
        assert item.data["params"] is not None
        body = item.canonical()
        # Never PHI: no subject id (p-000123), no metadata content (request ids, reasons).
        assert b"p-0" not in body, collector
        assert b"request_id" not in body and b"invalid_credentials" not in body, collector
        # Re-running the same interval gives byte-identical evidence.
        again = _collect(collector, airflow=airflow)
        assert again.canonical() == body and again.sha256 == item.sha256, collector

    # IPE: the SQL each collector ran (parameters bound), and the interval's events as its population.
    for collector, item in items.items():
        body = parse_item(item.canonical())
        assert body["observed_at"] == "2026-05-03T09:30:00Z", collector
        assert body["method"]["queries"] and all("%(" not in q for q in body["method"]["queries"]), collector
        assert any('FROM "audit"."events"' in q for q in body["method"]["queries"]), collector
        assert body["method"]["parameters"] == item.data["params"]
        assert body["population"]["size"] == loaded["rows"], collector
        assert "count(*)" in body["population"]["how"]

    volume = items["auditdb.event_volume"].data
    assert volume["total"] == loaded["rows"]
    assert volume["hours"] == 24
    assert sum(s["events"] for s in volume["by_source"].values()) == loaded["rows"]
    assert set(volume["by_source"]) == {"auth-service", "ehr-api", "billing", "admin-console"}
    for name in ("auth-service", "ehr-api", "billing"):
        assert volume["by_source"][name]["min_per_hour"] >= 1

    authz = items["auditdb.authorization_outcomes"].data
    assert authz["events"] == authz["granted"] + authz["denied"] + authz["other"] > 0
    assert 0 < authz["denial_rate"] < 0.2
    assert set(authz["by_resource_prefix"]) == {"token", "role", "consent", "vault"}

    authn = items["auditdb.authentication_failures"]
    assert authn.data["failures"] > 0 and authn.data["bursts"] == 0
    assert [f.resource for f in authn.findings] == ["authentication"]

    changes = items["auditdb.privileged_changes"]
    assert changes.data["total"] > 0 and changes.data["without_actor"] == 0
    assert all(f.resource.startswith("actor:") for f in changes.findings)
    assert sum(int(f.detail.split()[0]) for f in changes.findings) == changes.data["total"]

    phi = items["auditdb.phi_access_without_actor"]
    assert phi.data["without_actor"] == 0 and phi.data["phi_events"] > 0
    assert phi.findings == (
        Finding("phi_access", "pass", f"all {phi.data['phi_events']} PHI access events have an actor"),
    )


def test_empty_interval_passes_with_explanations_except_event_volume(fresh_audit: dict[str, str]) -> None:
    items = {c: _collect(c) for c in AUDITDB_COLLECTORS}
    details = {c: [f.detail for f in i.findings] for c, i in items.items()}
    assert details["auditdb.authorization_outcomes"] == ["no authorization events in the interval"]
    assert details["auditdb.authentication_failures"] == ["no authentication events in the interval"]
    assert details["auditdb.privileged_changes"] == ["no configuration changes in the interval"]
    assert details["auditdb.phi_access_without_actor"] == ["no PHI access events in the interval"]
    for collector in AUDITDB_COLLECTORS[:-1]:
        assert items[collector].result == "pass"
    volume = items["auditdb.event_volume"]
    assert volume.result == "fail"
    assert [f.resource for f in _failing(volume)] == [
        "source:auth-service",
        "source:billing",
        "source:ehr-api",
    ]
    assert volume.data["silent_declared_sources"] == ["auth-service", "billing", "ehr-api"]


# ------------------------------------------------------------------------------------- planted cases


def test_failed_login_bursts_per_actor_and_per_ip(fresh_audit: dict[str, str], admin_audit: Any) -> None:
    _seed()
    t0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    # Six failures by one actor within five minutes, each from a different IP: one actor burst.
    for i in range(6):
        _plant(
            admin_audit,
            at=t0 + timedelta(minutes=i),
            event_type="authentication",
            action="login",
            result="failure",
            actor="u-9001",
            ip=f"198.51.100.{i + 1}",
        )
    # Five failures from one IP within nine minutes, five different actors: one IP burst.
    ip_start = datetime(2026, 5, 1, 14, 0, tzinfo=UTC)
    for i in range(5):
        _plant(
            admin_audit,
            at=ip_start + timedelta(minutes=2 * i, seconds=15),
            event_type="authentication",
            action="login",
            result="failure",
            actor=f"u-91{i:02d}",
            ip="203.0.113.7",
        )
    # Two separate bursts of one actor (an hour apart) are two findings.
    for base in (datetime(2026, 5, 1, 16, 0, tzinfo=UTC), datetime(2026, 5, 1, 17, 0, tzinfo=UTC)):
        for i in range(5):
            _plant(
                admin_audit,
                at=base + timedelta(seconds=30 * i),
                event_type="authentication",
                action="login",
                result="denied",
                actor="u-9002",
                ip=None,
            )
    # Four failures within a minute (below 5), and five spread over more than ten minutes: no burst.
    for i in range(4):
        _plant(
            admin_audit,
            at=t0 + timedelta(seconds=10 * i),
            event_type="authentication",
            action="login",
            result="failure",
            actor="u-9003",
        )
    for i in range(5):
        _plant(
            admin_audit,
            at=t0 + timedelta(minutes=3 * i),
            event_type="authentication",
            action="login",
            result="failure",
            actor="u-9004",
        )

    item = _collect("auditdb.authentication_failures")
    assert item.result == "fail"
    failing = _failing(item)
    assert [f.resource for f in failing] == ["actor:u-9001", "actor:u-9002", "actor:u-9002", "ip:203.0.113.7"]
    actor_burst = failing[0]
    assert "burst of 6 failed authentication events" in actor_burst.detail
    assert "window start 2026-05-01T10:00:00Z" in actor_burst.detail
    assert "last failure 2026-05-01T10:05:00Z" in actor_burst.detail
    assert {f.detail.split(", window start ")[1][:20] for f in failing[1:3]} == {
        "2026-05-01T16:00:00Z",
        "2026-05-01T17:00:00Z",
    }
    assert (
        "burst of 5 failed" in failing[3].detail and "window start 2026-05-01T14:00:15Z" in failing[3].detail
    )
    assert item.data["bursts"] == 4
    assert item.data["bursts_by_kind"] == {"actor": 3, "ip": 1}

    # Thresholds are parameters: 7 failures needed → no burst at all; a 20-minute window catches u-9004.
    assert _collect("auditdb.authentication_failures", params={"burst_failures": 7}).result == "pass"
    wide = _collect("auditdb.authentication_failures", params={"burst_minutes": 20})
    assert "actor:u-9004" in {f.resource for f in _failing(wide)}
    assert wide.data["params"] == {"burst_failures": 5, "burst_minutes": 20}


def test_configuration_change_without_actor_fails(fresh_audit: dict[str, str], admin_audit: Any) -> None:
    _seed()
    at = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
    null_actor = _plant(
        admin_audit, at=at, event_type="configuration", action="role_grant", actor=None, resource="role/00042"
    )
    blank_actor = _plant(
        admin_audit,
        at=at + timedelta(minutes=1),
        event_type="configuration",
        action="change_setting",
        source="admin-console",
        actor="  ",
        resource="setting/00007",
    )
    _plant(
        admin_audit,
        at=at + timedelta(minutes=2),
        event_type="configuration",
        action="rotate_key",
        actor="u-9100",
        resource="vault-key/00001",
    )
    _plant(
        admin_audit,
        at=at + timedelta(minutes=3),
        event_type="configuration",
        action="deploy",
        actor="u-9100",
        resource="service/00002",
    )
    item = _collect("auditdb.privileged_changes")
    assert item.result == "fail"
    failing = _failing(item)
    assert sorted(f.resource for f in failing) == sorted([f"event:{null_actor}", f"event:{blank_actor}"])
    by_resource = {f.resource: f for f in item.findings}
    assert "'role_grant' on 'role/00042'" in by_resource[f"event:{null_actor}"].detail
    assert "at 2026-05-01T09:30:00Z has no actor" in by_resource[f"event:{null_actor}"].detail
    assert by_resource["actor:u-9100"] == Finding("actor:u-9100", "pass", "2 changes: deploy, rotate_key")
    assert item.data["without_actor"] == 2
    listed = {c["id"]: c for c in item.data["changes"]}
    assert listed[null_actor]["actor"] is None and listed[null_actor]["at"] == "2026-05-01T09:30:00Z"
    assert [c["at"] for c in item.data["changes"]] == sorted(c["at"] for c in item.data["changes"])

    short = _collect("auditdb.privileged_changes", params={"max_listed": 3})
    assert len(short.data["changes"]) == 3 and short.data["listed_truncated"] is True
    assert short.data["total"] == item.data["total"]


def test_configuration_change_on_a_subject_never_names_the_subject(
    fresh_audit: dict[str, str], admin_audit: Any
) -> None:
    _plant(
        admin_audit,
        at=START + timedelta(hours=3),
        event_type="configuration",
        action="consent_override",
        source="ehr-api",
        actor="u-0002",
        resource="patient-record/p-000777",
        subject="p-000777",
    )
    item = _collect("auditdb.privileged_changes")
    assert item.result == "pass"
    assert b"p-000777" not in item.canonical()
    assert item.data["changes"][0]["resource"] == "patient-record/[subject redacted]"


def test_phi_access_without_actor_names_the_event_not_the_subject(
    fresh_audit: dict[str, str], admin_audit: Any
) -> None:
    _seed()
    at = datetime(2026, 5, 1, 11, 0, tzinfo=UTC)
    orphan = _plant(
        admin_audit,
        at=at,
        source="ehr-api",
        event_type="data_access",
        action="read_record",
        actor=None,
        resource="patient-record/p-000123",
        subject="p-000123",
    )
    blank = _plant(
        admin_audit,
        at=at + timedelta(seconds=1),
        source="ehr-api",
        event_type="data_modify",
        action="update_record",
        actor="",
        resource="patient-record/p-000124",
        subject="p-000124",
    )
    # No subject: not PHI-bearing, so not this collector's concern even without an actor.
    _plant(
        admin_audit,
        at=at + timedelta(seconds=2),
        source="ehr-api",
        event_type="data_access",
        action="search_records",
        actor=None,
        resource="patient-index/00001",
    )
    item = _collect("auditdb.phi_access_without_actor")
    assert item.result == "fail"
    assert [f.resource for f in _failing(item)] == sorted([f"event:{orphan}", f"event:{blank}"])
    detail = {f.resource: f.detail for f in item.findings}[f"event:{orphan}"]
    assert detail == "PHI data_access event from source ehr-api at 2026-05-01T11:00:00Z has no actor"
    body = item.canonical()
    assert b"p-000123" not in body and b"p-000124" not in body and b"patient-record" not in body
    assert item.data["without_actor"] == 2


def test_denial_rate_per_resource_prefix(fresh_audit: dict[str, str], admin_audit: Any) -> None:
    _seed()
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    for i in range(25):  # 10 of 25 denied: 0.4 > 0.2 with enough events
        _plant(
            admin_audit,
            at=at + timedelta(seconds=i),
            event_type="authorization",
            action="export_check",
            result="denied" if i < 10 else "success",
            resource=f"exports/{i:05d}",
        )
    for i in range(10):  # all denied but only 10 events: not assessed
        _plant(
            admin_audit,
            at=at + timedelta(minutes=1, seconds=i),
            event_type="authorization",
            action="peek",
            result="denied",
            resource=f"tiny/{i}",
        )
    for i in range(20):  # exactly at the threshold (4 of 20 = 0.2): does not exceed
        _plant(
            admin_audit,
            at=at + timedelta(minutes=2, seconds=i),
            event_type="authorization",
            action="edge_check",
            result="denied" if i < 4 else "success",
            resource=f"edge/{i}",
        )
    item = _collect("auditdb.authorization_outcomes")
    assert item.result == "fail"
    assert [f.resource for f in _failing(item)] == ["resource:exports"]
    found = {f.resource: f for f in item.findings}
    assert found["resource:exports"].detail == (
        "10 denied, 15 granted of 25 authorization events (denial rate 0.4000) exceeds 0.2"
    )
    assert found["resource:tiny"].status == "pass" and "not assessed" in found["resource:tiny"].detail
    assert found["resource:edge"].status == "pass"
    assert item.data["by_resource_prefix"]["exports"] == {
        "events": 25,
        "granted": 15,
        "denied": 10,
        "other": 0,
        "denial_rate": 0.4,
    }
    assert _collect("auditdb.authorization_outcomes", params={"max_denial_rate": 0.5}).result == "pass"
    strict = _collect("auditdb.authorization_outcomes", params={"min_events": 5})
    assert [f.resource for f in _failing(strict)] == ["resource:exports", "resource:tiny"]


def test_declared_source_without_events_fails_event_volume(fresh_audit: dict[str, str]) -> None:
    _seed(sources=["auth-service", "ehr-api"])  # billing silent; admin-console silent but quiet_allowed
    item = _collect("auditdb.event_volume")
    assert item.result == "fail"
    assert _failing(item) == [
        Finding("source:billing", "fail", "declared source wrote no events in the interval")
    ]
    found = {f.resource: f for f in item.findings}
    assert found["source:admin-console"] == Finding(
        "source:admin-console", "pass", "no events in the interval (quiet allowed)"
    )
    assert item.data["by_source"]["billing"] == {
        "events": 0,
        "min_per_hour": 0,
        "max_per_hour": 0,
        "declared": True,
        "quiet_allowed": False,
    }


# ------------------------------------------------------------------------------------------ interval


def test_interval_boundaries_are_half_open(fresh_audit: dict[str, str], admin_audit: Any) -> None:
    """Events at the start are in; a microsecond before the start and exactly at the end are out."""
    before, first, last, after = (
        START - timedelta(microseconds=1),
        START,
        END - timedelta(microseconds=1),
        END,
    )
    phi_ids: dict[str, str] = {}
    cfg_ids: dict[str, str] = {}
    for label, at in (("before", before), ("first", first), ("last", last), ("after", after)):
        phi_ids[label] = _plant(
            admin_audit,
            at=at,
            source="ehr-api",
            event_type="data_access",
            action="read_record",
            actor=None,
            subject="p-000001",
        )
        cfg_ids[label] = _plant(admin_audit, at=at, event_type="configuration", action="deploy", actor=None)
        _plant(admin_audit, at=at, event_type="authorization", action="role_check", result="denied")
    # Bursts straddling each boundary: 3 failures outside and 3 inside → only 3 counted, no burst.
    straddling = [START - timedelta(seconds=10 * i) for i in (1, 2, 3)]
    straddling += [START + timedelta(seconds=10 * i) for i in (0, 1, 2)]
    straddling += [last - timedelta(seconds=10 * i) for i in (0, 1, 2)]
    straddling += [END + timedelta(seconds=10 * i) for i in (0, 1, 2)]
    for at in straddling:
        _plant(
            admin_audit, at=at, event_type="authentication", action="login", result="failure", actor="u-9500"
        )

    phi = _collect("auditdb.phi_access_without_actor")
    assert {f.resource for f in _failing(phi)} == {f"event:{phi_ids['first']}", f"event:{phi_ids['last']}"}
    cfg = _collect("auditdb.privileged_changes")
    assert {f.resource for f in _failing(cfg)} == {f"event:{cfg_ids['first']}", f"event:{cfg_ids['last']}"}
    authz = _collect("auditdb.authorization_outcomes")
    assert authz.data["events"] == 2
    authn = _collect("auditdb.authentication_failures")
    assert authn.result == "pass" and authn.data["failures"] == 6
    volume = _collect("auditdb.event_volume")
    assert volume.data["total"] == 2 * 3 + 6
    assert volume.data["by_source"]["ehr-api"]["events"] == 2
    # The neighbouring day sees exactly its own side of the boundary.
    next_day = _collect(
        "auditdb.phi_access_without_actor", period_start=END, period_end=END + timedelta(days=1)
    )
    assert {f.resource for f in _failing(next_day)} == {f"event:{phi_ids['after']}"}


# ---------------------------------------------------------------------------------- mapping, errors


def _policy_with_table(schema: str, table: str, columns: dict[str, str] | None = None) -> Policy:
    audit_table = POLICY.sources.audit_table.model_copy(
        update={"schema_name": schema, "table": table, **({"columns": columns} if columns else {})}
    )
    sources = POLICY.sources.model_copy(update={"audit_table": audit_table})
    return POLICY.model_copy(update={"sources": sources})


def test_the_policy_column_mapping_is_used(fresh_audit: dict[str, str], admin_audit: Any) -> None:
    """A user table with other names (and a text IP column) works once sources.yaml maps it."""
    admin_audit.execute(
        """CREATE SCHEMA app;
           CREATE TABLE app."Log Entries" (
             event_uuid uuid, happened timestamptz, app text, n bigint, kind text, who text, what text,
             verb text, outcome text, addr text, patient text);
           GRANT USAGE ON SCHEMA app TO attestly_reader;
           GRANT SELECT ON app."Log Entries" TO attestly_reader;"""
    )
    base = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    rows = [
        (uuid.uuid4(), base + timedelta(minutes=i), "auth-service", i, "authentication", "u-0042", "session/1",
         "login", "failure", "192.0.2.1", None)
        for i in range(5)
    ] + [
        (uuid.uuid4(), base, "ehr-api", 99, "data_access", None, "patient-record/x", "read_record", "success",
         None, "p-000555"),
    ]  # fmt: skip
    with admin_audit.cursor() as cur:
        cur.executemany(
            'INSERT INTO app."Log Entries" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)', rows
        )
    columns = {
        "id": "event_uuid",
        "timestamp": "happened",
        "source": "app",
        "sequence": "n",
        "event_type": "kind",
        "actor": "who",
        "resource": "what",
        "action": "verb",
        "result": "outcome",
        "ip": "addr",
        "subject": "patient",
    }
    policy = _policy_with_table("app", "Log Entries", columns)
    authn = _collect("auditdb.authentication_failures", policy=policy)
    assert authn.scope == {"database": "audit", "table": "app.Log Entries"}
    assert {f.resource for f in _failing(authn)} == {"actor:u-0042", "ip:192.0.2.1"}
    phi = _collect("auditdb.phi_access_without_actor", policy=policy)
    assert [f.resource for f in _failing(phi)] == [f"event:{rows[-1][0]}"]
    volume = _collect("auditdb.event_volume", policy=policy)
    assert volume.data["by_source"]["auth-service"]["events"] == 5

    # Without an IP column, actor bursts are still found and the evidence says IPs were not checked.
    no_ip = _policy_with_table("app", "Log Entries", {k: v for k, v in columns.items() if k != "ip"})
    item = _collect("auditdb.authentication_failures", policy=no_ip)
    assert {f.resource for f in _failing(item)} == {"actor:u-0042"}
    assert item.data["ip_bursts_checked"] is False
    # A collector that needs an unmapped column says which.
    no_subject = _policy_with_table(
        "app", "Log Entries", {k: v for k, v in columns.items() if k != "subject"}
    )
    with pytest.raises(AuditDbCollectorError, match=r"^auditdb.phi_access_without_actor: .*'subject'"):
        _collect("auditdb.phi_access_without_actor", policy=no_subject)


def test_database_errors_name_the_collector(fresh_audit: dict[str, str]) -> None:
    missing = _policy_with_table("audit", "no_such_table")
    for collector in AUDITDB_COLLECTORS:
        with pytest.raises(AuditDbCollectorError, match=rf"^{collector}: .*no_such_table") as info:
            _collect(collector, policy=missing)
        assert info.value.collector_id == collector
    with pytest.raises(AuditDbCollectorError, match=r"^auditdb.event_volume: cannot connect to 'nope'"):
        _collect("auditdb.event_volume", conn_id="nope")


def test_bad_arguments_are_refused_before_any_query(stack: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="unknown audit-database collector"):
        _collect("auditdb.nope")
    with pytest.raises(ValueError, match="no time zone"):
        _collect("auditdb.event_volume", period_start=datetime(2026, 5, 1))
    with pytest.raises(ValueError, match="is empty"):
        _collect("auditdb.event_volume", period_end=START)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) max_denial"):
        _collect("auditdb.authorization_outcomes", params={"max_denial": 0.1})
    with pytest.raises(ValueError, match="must be a whole number"):
        _collect("auditdb.authentication_failures", params={"burst_failures": 2.5})
    with pytest.raises(ValueError, match="between 0 and 1"):
        _collect("auditdb.authorization_outcomes", params={"max_denial_rate": 1.5})
    with pytest.raises(ValueError, match="at least 1"):
        _collect("auditdb.authentication_failures", params={"burst_minutes": 0})
