"""AWS collectors against a real moto server over HTTP, seeded with the known estate.

Checks: every collector in every planned (account, region) reports exactly the planted findings; failures
(role not assumable, a refused call) become ``error`` items without raising; a past interval gives
``not_applicable`` without any AWS request; seeding is idempotent; unchanged state gives byte-identical
evidence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from attestly.collectors.aws import REGISTRY, AccountTarget, plan_collections, run_collector
from attestly.collectors.aws.ec2 import exposed_ports
from attestly.collectors.aws.iam import grants_everything
from attestly.collectors.aws.s3 import denies_insecure_transport
from attestly.evidence import AirflowContext, EvidenceItem, derive_result, parse_item
from attestly_dev.aws_seed import EXPECTED_FINDINGS, SEED_ACCOUNTS, SEED_PARAMS, seed_aws_estate
from tests.integration.aws_server import (  # fixtures are used by name
    MotoServer,
    aws_env,
    conn_json,
    moto_server,
    seeded,
    stub_aws,
)

pytestmark = pytest.mark.integration

_FIXTURES = (aws_env, moto_server, seeded)

NOW = datetime.now(UTC).replace(microsecond=0)
PERIOD_START = (NOW - timedelta(days=1)).replace(hour=0, minute=0, second=0)
PERIOD_END = PERIOD_START + timedelta(days=1)
CONTROLS = ("soc2:CC6.1",)
AIRFLOW = AirflowContext(dag_id="evidence_collection", run_id="test", task_id="collect_aws", try_number=1)

Expected = dict[str, dict[str, list[str]]]


def _run_all(*, observed_at: datetime = NOW, period_end: datetime = PERIOD_END) -> list[EvidenceItem]:
    return [
        run_collector(
            target,
            controls=CONTROLS,
            period_start=period_end - timedelta(days=1),
            period_end=period_end,
            observed_at=observed_at,
            params=SEED_PARAMS,
            airflow=AIRFLOW,
        )
        for target in plan_collections(SEED_ACCOUNTS)
    ]


def _by_status(items: Sequence[EvidenceItem]) -> Expected:
    out: dict[str, dict[str, list[str]]] = {}
    for item in items:
        for f in item.findings:
            out.setdefault(item.collector, {}).setdefault(f.status, []).append(f.resource)
    return {c: {s: sorted(r) for s, r in d.items()} for c, d in out.items()}


def _target_of(resource: str) -> tuple[str, str]:
    """(account, region) of a resource string: IAM and S3 are account-scoped ("global")."""
    parts = resource.split(":")
    return parts[1], parts[2] if parts[0] in ("kms", "cloudtrail", "ec2", "rds", "config") else "global"


@pytest.fixture(scope="module")
def first_run(seeded: Expected, moto_server: MotoServer) -> Iterator[list[EvidenceItem]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_AWS_DEFAULT", moto_server.conn_json())
        yield _run_all()


def test_plan_covers_every_collector_account_and_region() -> None:
    plan = plan_collections(SEED_ACCOUNTS)
    json.dumps(plan)  # JSON-able, for dynamic task mapping
    account_scoped = [c for c, s in REGISTRY.items() if s.scope == "account"]
    regional = [c for c, s in REGISTRY.items() if s.scope == "region"]
    assert len(REGISTRY) == 17
    assert len(plan) == 2 * len(account_scoped) + 3 * len(regional)
    for entry in plan:
        spec = REGISTRY[entry["collector"]]
        if spec.scope == "account":
            assert entry["region"] == "global"
            assert entry["api_region"] == "us-east-1"
        else:
            assert entry["region"] == entry["api_region"] != "global"
    assert {(e["account_id"], e["region"]) for e in plan} == {
        ("111111111111", "global"),
        ("111111111111", "us-east-1"),
        ("111111111111", "eu-west-1"),
        ("222222222222", "global"),
        ("222222222222", "us-east-1"),
    }


def test_every_collector_reports_exactly_the_planted_findings(
    aws_env: Expected, first_run: list[EvidenceItem]
) -> None:
    assert set(EXPECTED_FINDINGS) == set(REGISTRY)
    errors = [(i.collector, i.scope, i.findings) for i in first_run if i.result == "error"]
    assert errors == []
    assert _by_status(first_run) == aws_env
    # and each item's result follows from its own expected findings
    for item in first_run:
        mine = [
            f
            for f in item.findings
            if _target_of(f.resource) == (item.scope["account"], item.scope["region"])
        ]
        assert len(mine) == len(item.findings), item.collector
        assert item.result == derive_result(item.findings, empty=REGISTRY[item.collector].empty)
        assert item.retroactive is False
        assert item.airflow == AIRFLOW
        assert parse_item(item.canonical())["collector"] == item.collector


def test_every_collector_records_when_what_and_how_it_observed(
    aws_env: Expected, first_run: list[EvidenceItem]
) -> None:
    """IPE: every registered collector's item says when AWS was observed (not the period), the API
    operations it really called (through the moto server), the thresholds it read, and its population."""
    assert {i.collector for i in first_run} == set(REGISTRY)
    for item in first_run:
        body = parse_item(item.canonical())
        assert body["observed_at"] == NOW.isoformat().replace("+00:00", "Z") != body["collected_at"]
        method, population = body["method"], body["population"]
        assert (
            method["collector"] == item.collector
            and method["version"]
            and method["tool"].startswith("boto3 ")
        )
        service = REGISTRY[item.collector].service
        assert method["operations"] and all(n > 0 for n in method["operations"].values()), item.collector
        assert any(op.split(":")[0] in (service, "s3") for op in method["operations"]), method["operations"]
        assert "observed_at" not in method["parameters"]
        assert population["size"] == len(item.findings), item.collector
        assert REGISTRY[item.collector].population in population["what"]
        assert item.scope["account"] in population["what"]
    # Thresholds are the ones the policy gave, where the collector reads one.
    by_id = {i.collector: i for i in first_run}
    assert by_id["iam.access_key_age"].method.parameters == {  # type: ignore[union-attr]
        "access_key_max_age_days": SEED_PARAMS["access_key_max_age_days"]
    }
    assert "rds_min_backup_retention_days" in by_id["rds.backup_retention"].method.parameters  # type: ignore[union-attr]


def test_expected_constant_resolves_to_the_seed_result(aws_env: Expected) -> None:
    """The module constant is the seed's answer with generated ids as ``<kind:name>`` placeholders."""
    assert set(aws_env) == set(EXPECTED_FINDINGS)
    for collector, by_status in EXPECTED_FINDINGS.items():
        assert set(by_status) == set(aws_env[collector])
        for status, templates in by_status.items():
            resolved = aws_env[collector][status]
            assert len(resolved) == len(templates)
            for template in templates:
                pattern = re.sub(r"<[^>]*>", "[A-Za-z0-9-]+", re.escape(template))
                assert any(re.fullmatch(pattern, r) for r in resolved), (collector, status, template)
            assert not any("<" in r for r in resolved)


def test_unchanged_state_gives_byte_identical_evidence(
    aws_env: Expected, first_run: list[EvidenceItem]
) -> None:
    second = _run_all()
    assert [i.sha256 for i in second] == [i.sha256 for i in first_run]
    for item in second:
        raw = item.canonical()
        assert b"testing" not in raw and b"SecretAccessKey" not in raw


def test_seeding_twice_is_idempotent(aws_env: Expected, first_run: list[EvidenceItem]) -> None:
    again = seed_aws_estate()
    assert again == aws_env
    after = _run_all()
    assert [i.sha256 for i in after] == [i.sha256 for i in first_run]


def test_ages_are_decided_at_observed_at(aws_env: Expected) -> None:
    """moto cannot back-date keys or users: observe the same estate 100 days later instead."""
    later = NOW + timedelta(days=100)
    targets = plan_collections(SEED_ACCOUNTS, collectors=["iam.access_key_age", "iam.inactive_users"])
    items = [
        run_collector(
            t,
            controls=CONTROLS,
            period_start=later - timedelta(days=1),
            period_end=later,
            observed_at=later,
            params=SEED_PARAMS,
        )
        for t in targets
    ]
    got = _by_status(items)
    for collector in ("iam.access_key_age", "iam.inactive_users"):
        expected = dict(aws_env[collector])
        expected["fail"] = expected.pop("pass")
        assert got[collector] == expected
    assert {i.result for i in items} == {"fail"}


def test_role_that_cannot_be_assumed_gives_an_error_item(aws_env: Expected) -> None:
    with stub_aws() as stub:
        account = replace(SEED_ACCOUNTS[0], endpoint_url=stub.url)
        for target in plan_collections([account], collectors=["iam.mfa_console_users", "kms.key_rotation"]):
            item = run_collector(
                target,
                controls=CONTROLS,
                period_start=PERIOD_START,
                period_end=PERIOD_END,
                observed_at=NOW,
                params=SEED_PARAMS,
            )
            assert item.result == "error"
            assert item.data == {"error_code": "AccessDenied", "stage": "assume_role"}
            [finding] = item.findings
            assert finding.status == "error"
            service = REGISTRY[target["collector"]].service
            assert finding.resource == f"{service}:111111111111:{target['region']}"
            assert finding.detail.startswith("AccessDenied: stub: not authorized to perform AssumeRole")
        assert all(r.endswith("AssumeRole") for r in stub.requests)


def test_refused_collector_call_gives_an_error_item(aws_env: Expected) -> None:
    with stub_aws(allow_assume_role=True) as stub:
        account = replace(SEED_ACCOUNTS[1], endpoint_url=stub.url)
        targets = plan_collections([account], collectors=["iam.password_policy", "kms.key_rotation"])
        results = {}
        for target in targets:
            item = run_collector(
                target,
                controls=CONTROLS,
                period_start=PERIOD_START,
                period_end=PERIOD_END,
                observed_at=NOW,
                params=SEED_PARAMS,
            )
            results[target["collector"]] = item
        assert results["iam.password_policy"].findings[0].detail.startswith("AccessDenied: ")
        assert results["iam.password_policy"].findings[0].resource == "iam:222222222222:global"
        assert results["kms.key_rotation"].findings[0].detail == "AccessDeniedException: stub: access denied"
        assert results["kms.key_rotation"].findings[0].resource == "kms:222222222222:us-east-1"
        assert {i.result for i in results.values()} == {"error"}
        assert {i.data["stage"] for i in results.values()} == {"collect"}


def test_misconfigured_role_is_refused_by_moto_and_recorded(aws_env: Expected) -> None:
    """A role in the wrong account: S3 Control refuses the account-level call (a real moto AccessDenied)."""
    wrong = AccountTarget(
        id="222222222222",
        name="shared-services",
        role_arn="arn:aws:iam::333333333333:role/AttestlyAudit",
        regions=("us-east-1",),
    )
    [target] = plan_collections([wrong], collectors=["s3.public_access_block"])
    item = run_collector(
        target,
        controls=CONTROLS,
        period_start=PERIOD_START,
        period_end=PERIOD_END,
        observed_at=NOW,
        params=SEED_PARAMS,
    )
    assert item.result == "error"
    assert [f.to_dict() for f in item.findings] == [
        {"resource": "s3:222222222222:global", "status": "error", "detail": "AccessDenied: Access Denied"}
    ]


def test_past_interval_is_not_applicable_without_calling_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    end = datetime(2026, 1, 2, tzinfo=UTC)
    observed = datetime(2026, 3, 1, 12, tzinfo=UTC)
    with stub_aws() as stub:
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", conn_json(stub.url))
        items = [
            run_collector(
                target,
                controls=CONTROLS,
                period_start=end - timedelta(days=1),
                period_end=end,
                observed_at=observed,
                params=SEED_PARAMS,
            )
            for target in plan_collections([replace(a, endpoint_url=stub.url) for a in SEED_ACCOUNTS])
        ]
        assert stub.requests == []
        # just inside the grace period, the collector does call AWS (and is refused by the stub)
        inside = run_collector(
            plan_collections(SEED_ACCOUNTS, collectors=["config.recorder"])[0],
            controls=CONTROLS,
            period_start=end - timedelta(days=1),
            period_end=end,
            observed_at=end + timedelta(hours=23),
            params=SEED_PARAMS,
        )
        assert stub.requests == ["POST / AssumeRole"]
    assert inside.result == "error"
    for item in items:
        assert item.result == "not_applicable"
        assert item.findings == ()
        assert item.retroactive is False
        assert item.data == {
            "reason": "current-state collector: run after the interval ended 2026-01-02 (more than 1 day, "
            "0:00:00 later); present state is not evidence of the past"
        }


# --- the rules themselves, on literal inputs (no server) --------------------------------------------------

WATCHED = {22, 3389, 5432}


@pytest.mark.parametrize(
    ("permission", "expected"),
    [
        (
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            ["tcp 22 from 0.0.0.0/0"],
        ),
        ({"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}, []),
        (
            {"IpProtocol": "6", "FromPort": 5000, "ToPort": 6000, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
            ["tcp 5432 from ::/0"],
        ),
        (
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            ["all traffic 22,3389,5432 from 0.0.0.0/0"],
        ),
        (
            {"IpProtocol": "udp", "FromPort": 3389, "ToPort": 3389, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            ["udp 3389 from 0.0.0.0/0"],
        ),
        ({"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, []),
        ({"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, []),
    ],
)
def test_exposed_ports(permission: dict[str, object], expected: list[str]) -> None:
    assert exposed_ports(permission, WATCHED) == expected


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}, True),
        ({"Statement": {"Effect": "Allow", "Action": ["s3:*", "*"], "Resource": ["*"]}}, True),
        ({"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}, False),
        ({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}, False),
        (
            "%7B%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22*%22%2C%22Resource%22%3A%22*%22%7D%5D%7D",
            True,
        ),
    ],
)
def test_grants_everything(document: object, expected: bool) -> None:
    assert grants_everything(document) is expected


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            True,
        ),
        (
            {
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": ["*"],
                "Condition": {"Bool": {"aws:SecureTransport": False}},
            },
            True,
        ),
        (
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            False,
        ),
        (
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:*",
                "Condition": {"Bool": {"aws:SecureTransport": "true"}},
            },
            False,
        ),
        ({"Effect": "Deny", "Principal": "*", "Action": "s3:*"}, False),
    ],
)
def test_denies_insecure_transport(statement: dict[str, object], expected: bool) -> None:
    assert denies_insecure_transport({"Statement": [statement]}) is expected


def test_naive_datetimes_and_unknown_collectors_are_programming_errors() -> None:
    target = plan_collections(SEED_ACCOUNTS, collectors=["config.recorder"])[0]
    with pytest.raises(ValueError, match="timezone-aware"):
        run_collector(
            target,
            controls=CONTROLS,
            period_start=datetime(2026, 1, 1),
            period_end=datetime(2026, 1, 2),
            observed_at=datetime(2026, 1, 2),
            params={},
        )
    with pytest.raises(ValueError, match="unknown AWS collector"):
        plan_collections(SEED_ACCOUNTS, collectors=["s3.nope"])
