"""KMS collector (per account x region). Resource: ``kms:<account>:<region>:key/<key-id>``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from attestly.collectors.aws._common import (
    CollectorResult,
    CollectorSpec,
    bad,
    ok,
    paginate,
    skip,
    summary,
)
from attestly.evidence import Finding

if TYPE_CHECKING:
    from boto3 import Session


def key_rotation(
    session: Session, *, region: str, account_id: str, params: Mapping[str, Any]
) -> CollectorResult:
    """Customer-managed symmetric encryption keys (KMS-generated key material) that are ``Enabled``
    must have automatic rotation on. AWS-managed keys are skipped (no finding); other customer keys
    (disabled, pending deletion, asymmetric, HMAC, imported or custom-key-store material) are
    ``not_applicable``. Optional fields a response omits take AWS's documented defaults
    (:func:`with_documented_defaults`), never "not applicable"."""
    kms = session.client("kms", region_name=region)
    findings: list[Finding] = []
    aws_managed = 0
    for entry in paginate(kms, "list_keys", "Keys"):
        key_id = entry["KeyId"]
        meta = with_documented_defaults(kms.describe_key(KeyId=key_id)["KeyMetadata"])
        if meta.get("KeyManager") == "AWS":
            aws_managed += 1
            continue
        res = f"kms:{account_id}:{region}:key/{key_id}"
        spec = meta.get("KeySpec") or meta.get("CustomerMasterKeySpec")
        state = meta.get("KeyState")
        if spec != "SYMMETRIC_DEFAULT" or meta.get("KeyUsage") != "ENCRYPT_DECRYPT":
            findings.append(skip(res, f"{spec} {meta.get('KeyUsage')} key: rotation not applicable"))
        elif meta.get("Origin", "AWS_KMS") != "AWS_KMS":
            findings.append(skip(res, f"key material origin {meta.get('Origin')}: rotation not applicable"))
        elif state != "Enabled":
            findings.append(skip(res, f"key state {state}"))
        elif kms.get_key_rotation_status(KeyId=key_id).get("KeyRotationEnabled"):
            findings.append(ok(res, "automatic rotation enabled"))
        else:
            findings.append(bad(res, "automatic rotation disabled"))
    return findings, summary(findings, aws_managed_keys_skipped=aws_managed)


def with_documented_defaults(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``KeyMetadata`` with AWS's documented defaults for the optional fields a response may omit: a key
    created without them is a symmetric encryption key (``KeyUsage`` ENCRYPT_DECRYPT, ``KeySpec``
    SYMMETRIC_DEFAULT) with KMS-generated material (``Origin`` AWS_KMS). ``KeyManager`` and ``KeyState``
    are always returned by AWS; when absent the key is treated as the customer's and as ``Enabled`` (when
    ``Enabled`` is not false), so it is checked rather than skipped — the safe reading for a control."""
    out = dict(meta)
    out.setdefault("KeyUsage", "ENCRYPT_DECRYPT")
    out["KeySpec"] = meta.get("KeySpec") or meta.get("CustomerMasterKeySpec") or "SYMMETRIC_DEFAULT"
    out.setdefault("Origin", "AWS_KMS")
    out.setdefault("KeyManager", "CUSTOMER")
    out.setdefault("KeyState", "Enabled" if meta.get("Enabled", True) else "Disabled")
    return out


COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec(
        "kms.key_rotation",
        "kms",
        "region",
        key_rotation,
        population="customer-managed KMS keys in the region",
        enumerated_by="kms:ListKeys (every page), kms:DescribeKey per key",
    ),
)
