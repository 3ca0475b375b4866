"""The least-privilege IAM policies shipped in include/iam/ grant exactly what the collectors and the
population discovery call: every AWS operation in their source maps to an allowed action, and the
policies allow nothing else (no wildcard actions, no write)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COLLECTORS = ROOT / "include" / "attestly" / "collectors" / "aws"
IAM = ROOT / "include" / "iam"

# Client variable -> service prefix, as the collector modules name their clients.
CLIENTS = {
    "iam": "iam", "_iam": "iam", "s3": "s3", "home": "s3", "control": "s3control", "kms": "kms",
    "ct": "cloudtrail", "ec2": "ec2", "rds": "rds", "cfg": "config", "client": "organizations",
}  # fmt: skip
# S3's IAM action names are not its operation names.
S3_ACTIONS = {
    "s3:ListBuckets": "s3:ListAllMyBuckets",
    "s3:GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "s3:GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "s3:GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "s3control:GetPublicAccessBlock": "s3:GetAccountPublicAccessBlock",
}
_CALL = re.compile(r"\b(?P<client>[a-z0-9_]+)\.(?P<op>(?:get|list|describe)_[a-z_]+)\(")
_PAGINATE = re.compile(r'paginate\(\s*(?P<client>[a-z0-9_]+),\s*f?"(?P<op>[a-z_{}]+)"')


def _action(service: str, op: str) -> str:
    action = f"{service}:{''.join(p.capitalize() for p in op.split('_'))}"
    action = action.replace("Mfa", "MFA").replace("Db", "DB")
    return S3_ACTIONS.get(action, action)


def _called(paths: list[Path]) -> set[str]:
    actions: set[str] = set()
    for path in paths:
        text = path.read_text()
        for m in [*_CALL.finditer(text), *_PAGINATE.finditer(text)]:
            client, op = m["client"], m["op"]
            if client not in CLIENTS or op in ("get_paginator", "get_credentials", "get_frozen_credentials"):
                continue
            if "{kind}" in op:  # list_attached_{kind}_policies, list_{kind}_policies, get_{kind}_policy
                actions |= {_action(CLIENTS[client], op.replace("{kind}", k)) for k in ("user", "group")}
                continue
            actions.add(_action(CLIENTS[client], op))
    text = (COLLECTORS / "iam.py").read_text()
    if 'getattr(iam, f"get_{kind}_policy")' in text:
        actions |= {"iam:GetUserPolicy", "iam:GetGroupPolicy"}
    return actions


def _allowed(name: str) -> set[str]:
    doc = json.loads((IAM / name).read_text())
    actions: set[str] = set()
    for st in doc["Statement"]:
        assert st["Effect"] == "Allow"
        acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        assert all("*" not in a for a in acts), f"{name}: no wildcard actions"
        actions |= set(acts)
    return actions


def test_the_member_role_policy_is_exactly_what_the_collectors_call() -> None:
    modules = [
        p for p in COLLECTORS.glob("*.py") if p.name not in ("population.py", "batch.py", "__init__.py")
    ]
    called = _called(modules) | {"ec2:DescribeRegions"}  # population: each account's enabled regions
    allowed = _allowed("attestly-audit-member.json")
    assert called - allowed == set(), "collectors call what the member role may not"
    assert allowed - called == set(), "the member role allows what no collector calls"
    assert all(a.split(":")[1].startswith(("Get", "List", "Describe")) for a in allowed)


def test_the_organizations_reader_is_exactly_what_discovery_calls() -> None:
    called = {a for a in _called([COLLECTORS / "population.py"]) if a.startswith("organizations:")}
    assert called == _allowed("attestly-org-reader.json")
