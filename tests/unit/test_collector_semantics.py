"""Collector decisions on AWS responses as AWS may send them — optional fields omitted, several trails —
with a hand-built session object passed to the collector (the collectors take their session as an
argument; nothing in boto3 is patched). The integration suite checks the same collectors on moto."""

from __future__ import annotations

from typing import Any

import pytest

from attestly.collectors.aws import cloudtrail, kms

pytestmark = pytest.mark.unit


class _Paginator:
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages

    def paginate(self, **_: Any) -> list[dict[str, Any]]:
        return self.pages


class FakeClient:
    """Answers each operation with a canned response (or a function of its arguments)."""

    def __init__(self, **responses: Any) -> None:
        self.responses = responses

    def get_paginator(self, operation: str) -> _Paginator:
        return _Paginator([self.responses[operation]])

    def __getattr__(self, operation: str) -> Any:
        answer = self.responses[operation]
        return lambda **kw: answer(**kw) if callable(answer) else answer


class FakeSession:
    def __init__(self, **clients: FakeClient) -> None:
        self.clients = clients

    def client(self, service: str, region_name: str | None = None) -> FakeClient:
        return self.clients[service]


def test_a_key_whose_response_omits_optional_fields_is_judged_by_aws_defaults() -> None:
    """KeyUsage, KeySpec, KeyManager and Origin absent: a symmetric customer key with KMS material — its
    rotation is checked (it fails here), never waved through as "not applicable"."""
    meta = {"KeyId": "k-bare", "Arn": "arn:aws:kms:us-east-1:111111111111:key/k-bare", "Enabled": True}
    session = FakeSession(
        kms=FakeClient(
            list_keys={"Keys": [{"KeyId": "k-bare"}]},
            describe_key={"KeyMetadata": meta},
            get_key_rotation_status={"KeyRotationEnabled": False},
        )
    )
    findings, _ = kms.key_rotation(session, region="us-east-1", account_id="111111111111", params={})
    assert [(f.resource, f.status) for f in findings] == [("kms:111111111111:us-east-1:key/k-bare", "fail")]
    assert kms.with_documented_defaults(meta) == {
        **meta,
        "KeyUsage": "ENCRYPT_DECRYPT",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER",
        "KeyState": "Enabled",
    }
    # The defaults never override what the response does say.
    hmac = {**meta, "KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC", "KeyManager": "CUSTOMER"}
    session.clients["kms"].responses["describe_key"] = {"KeyMetadata": hmac}
    findings, _ = kms.key_rotation(session, region="us-east-1", account_id="111111111111", params={})
    assert [f.status for f in findings] == ["not_applicable"]


def test_each_trail_is_judged_on_its_own_validation_and_the_region_on_its_coverage() -> None:
    trails = [
        {"Name": "org", "TrailARN": "arn:org", "IsMultiRegionTrail": True, "LogFileValidationEnabled": True},
        {"Name": "local", "TrailARN": "arn:local", "IsMultiRegionTrail": False},  # validation field omitted
    ]
    session = FakeSession(
        cloudtrail=FakeClient(
            describe_trails={"trailList": trails},
            get_trail_status=lambda Name: {"IsLogging": Name == "arn:org"},
        )
    )
    findings, data = cloudtrail.multi_region_trail(
        session, region="eu-west-1", account_id="111111111111", params={}
    )
    got = {f.resource.rsplit(":", 1)[-1]: f.status for f in findings}
    assert got == {"trail/org": "pass", "trail/local": "fail", "eu-west-1": "pass"}
    assert "CIS AWS 3.2" in next(f.detail for f in findings if f.resource.endswith("trail/local"))
    assert data == {"trails": 2, "covering": ["org"]}

    # No multi-region trail that logs: the region fails, even if every trail validates its files.
    trails[0]["IsMultiRegionTrail"] = False
    trails[1]["LogFileValidationEnabled"] = True
    findings, _ = cloudtrail.multi_region_trail(
        session, region="eu-west-1", account_id="111111111111", params={}
    )
    assert {f.resource.rsplit(":", 1)[-1]: f.status for f in findings}["eu-west-1"] == "fail"
