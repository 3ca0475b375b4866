"""Evidence v2 provenance (issue 19): ``observed_at`` distinct from the period, ``method`` (IPE) and
``population`` on every registered collector's items, the policy named by SHA-256 — and none of them
changes what counts as the same observation."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from attestly.collectors.aws import REGISTRY, run_collector
from attestly.evidence import (
    EvidenceError,
    EvidenceItem,
    Finding,
    Method,
    Population,
    canonical_json,
    parse_item,
)
from attestly.policy_evidence import POLICY_SCHEMA, bundle_policy, current_bundle

pytestmark = pytest.mark.unit

START = datetime(2026, 11, 30, tzinfo=UTC)
END = START + timedelta(days=1)
OBSERVED = datetime(2026, 12, 1, 14, 58, 3, tzinfo=UTC)


def _item(**kw: Any) -> EvidenceItem:
    base: dict[str, Any] = {
        "collector": "iam.inactive_users",
        "controls": ("soc2:CC6.1",),
        "period_start": START,
        "period_end": END,
        "scope": {"account": "111111111111", "region": "global"},
        "retroactive": False,
        "result": "pass",
        "findings": (Finding("iam:111111111111:user/a", "pass", "password used within 90 days"),),
        "data": {"examined": 1},
    }
    return EvidenceItem(**{**base, **kw})


def test_observed_at_is_the_real_observation_time_distinct_from_the_period() -> None:
    item = _item(
        observed_at=OBSERVED,
        method=Method("iam.inactive_users", version="1.2.3", operations={"iam:ListUsers": 1},
                      parameters={"inactive_user_days": 90}),
        population=Population("IAM users with a console password", "iam:ListUsers (every page)", 1),
        policy="ab" * 32,
    )  # fmt: skip
    body = parse_item(item.canonical())
    assert body["schema"] == "attestly.evidence/v2"
    assert body["observed_at"] == "2026-12-01T14:58:03Z"
    assert body["period"] == {"start": "2026-11-30T00:00:00Z", "end": "2026-12-01T00:00:00Z"}
    assert body["collected_at"] == "2026-12-01T00:00:00Z"  # the end of the period it is filed under
    assert body["method"] == {
        "collector": "iam.inactive_users",
        "version": "1.2.3",
        "operations": {"iam:ListUsers": 1},
        "queries": [],
        "parameters": {"inactive_user_days": 90},
    }
    assert body["population"] == {
        "what": "IAM users with a console password",
        "how": "iam:ListUsers (every page)",
        "size": 1,
    }
    assert body["policy"] == {"sha256": "ab" * 32}


def test_provenance_never_changes_the_observation() -> None:
    """A re-run observes the same state later, with another collector version or policy file layout:
    the ledger must still see the same observation (and the pre-v2 one)."""
    plain = _item()
    first = _item(observed_at=OBSERVED, method=Method("x", version="1"), population=Population("a", "b", 1))
    later = replace(
        first,
        observed_at=OBSERVED + timedelta(hours=5),
        method=Method("x", version="2", operations={"iam:ListUsers": 3}),
        population=Population("a", "c", 1),
        policy="cd" * 32,
    )
    v1 = replace(plain, version=1)
    assert first.sha256 != later.sha256  # different objects…
    assert (
        first.observation_sha256 == later.observation_sha256 == plain.observation_sha256
    )  # …one observation
    assert v1.observation_sha256 == plain.observation_sha256
    assert b"observed_at" not in v1.canonical()  # v1 items never carry v2 fields


def test_bad_provenance_is_refused() -> None:
    with pytest.raises(EvidenceError, match="policy"):
        _item(policy="not-a-hash")
    with pytest.raises(EvidenceError, match="negative"):
        Population("x", "y", -1)


def test_every_registered_aws_collector_says_what_it_enumerates() -> None:
    for cid, spec in REGISTRY.items():
        assert spec.population and spec.enumerated_by, cid
        assert ":" in spec.enumerated_by, (cid, spec.enumerated_by)  # names the API operation(s)


@pytest.mark.parametrize("collector", sorted(REGISTRY))
def test_every_registered_aws_collector_sets_method_and_population(collector: str) -> None:
    """Every collector, on every path that does not need AWS: a backfilled interval (nothing enumerated)
    and an account whose role cannot be assumed (an error item). The path through AWS is covered by
    tests/integration/test_aws_collectors.py against the moto server."""
    spec = REGISTRY[collector]
    target = {
        "collector": collector,
        "account_id": "111111111111",
        "role_arn": "arn:aws:iam::111111111111:role/AttestlyAudit",
        "region": "global" if spec.scope == "account" else "eu-west-1",
        "api_region": "eu-west-1",
    }
    kw: dict[str, Any] = {"controls": ("soc2:CC6.1",), "period_start": START, "period_end": END, "params": {}}
    backfill = run_collector(target, observed_at=END + timedelta(days=30), **kw)

    def refuse() -> Any:
        raise RuntimeError("AccessDenied: not authorized to perform sts:AssumeRole")

    error = run_collector(target, observed_at=OBSERVED, session_factory=refuse, **kw)
    for item, when in ((backfill, END + timedelta(days=30)), (error, OBSERVED)):
        body = parse_item(item.canonical())
        assert body["observed_at"] == when.isoformat().replace("+00:00", "Z")
        assert body["method"]["collector"] == collector and body["method"]["version"]
        assert body["population"]["size"] == 0
        assert body["population"]["how"].startswith("not enumerated")
        assert spec.population in body["population"]["what"]
    assert backfill.result == "not_applicable" and error.result == "error"


def test_the_collector_records_the_calls_it_made_and_the_thresholds_it_read() -> None:
    """The method is what the collection actually did: operations counted through botocore's event
    hook (a stubbed client: no network), the policy parameters the collector read."""
    import botocore.session
    from botocore.stub import Stubber

    client = botocore.session.get_session().create_client(
        "iam", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    stub = Stubber(client)
    created = datetime(2020, 1, 1, tzinfo=UTC)
    stub.add_response(
        "list_users",
        {"Users": [{"UserName": "alice", "UserId": "AIDAXXXXXXXXXXXXXXXX1", "Arn": "arn:aws:iam::111111111111:user/alice",
                    "Path": "/", "CreateDate": created, "PasswordLastUsed": OBSERVED - timedelta(days=3)}],
         "IsTruncated": False},
    )  # fmt: skip
    stub.add_response(
        "get_login_profile",
        {"LoginProfile": {"UserName": "alice", "CreateDate": created}},
        {"UserName": "alice"},
    )
    stub.activate()

    class Session:
        def client(self, *_a: Any, **_k: Any) -> Any:
            return client

    item = run_collector(
        {"collector": "iam.inactive_users", "account_id": "111111111111", "region": "global",
         "role_arn": "arn:aws:iam::111111111111:role/AttestlyAudit", "api_region": "us-east-1"},
        controls=("soc2:CC6.1",), period_start=START, period_end=END, observed_at=OBSERVED,
        params={"inactive_user_days": 45}, session_factory=Session,
    )  # fmt: skip
    stub.assert_no_pending_responses()
    assert item.result == "pass", item.findings
    assert item.method is not None and item.population is not None
    assert item.method.operations == {"iam:ListUsers": 1, "iam:GetLoginProfile": 1}
    assert item.method.parameters == {"inactive_user_days": 45}
    assert item.population.size == len(item.findings) == 1
    assert item.observed_at == OBSERVED


def test_the_policy_bundle_is_every_file_content_addressed(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "include" / "policy"
    for f in src.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    first = bundle_policy(tmp_path)
    doc = json.loads(first.canonical)
    assert doc["schema"] == POLICY_SCHEMA
    assert [f["path"] for f in doc["files"]] == sorted(f.name for f in src.iterdir())
    assert first.canonical == canonical_json(doc) and first.key == f"policy/sha256/{first.sha256}.json"
    assert bundle_policy(tmp_path).sha256 == first.sha256  # deterministic
    # Any file counts, binary ones too (base64), and any change is another policy.
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "approval.bin").write_bytes(b"\xff\x00")
    second = current_bundle(tmp_path)
    added = {f["path"]: f for f in json.loads(second.canonical)["files"]}["notes/approval.bin"]
    assert added["base64"] == "/wA=" and added["size"] == 2
    assert second.sha256 != first.sha256
