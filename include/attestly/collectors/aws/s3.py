"""S3 collectors (account-scoped: every bucket of the account, each queried in its own region).

Resources: ``s3:<account>:bucket/<name>``, and ``s3:<account>:account-public-access-block`` for the
account-level Block Public Access setting (S3 Control).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from attestly.collectors.aws._common import (
    CollectorResult,
    CollectorSpec,
    bad,
    is_error,
    ok,
    paginate,
    param,
    skip,
    summary,
)
from attestly.evidence import Finding

if TYPE_CHECKING:
    from boto3 import Session

PAB_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


def _bucket_res(account_id: str, name: str) -> str:
    return f"s3:{account_id}:bucket/{name}"


def _buckets(session: Session, region: str) -> Iterator[tuple[str, Any]]:
    """``(bucket name, s3 client in the bucket's region)`` for every bucket of the account."""
    home = session.client("s3", region_name=region)
    clients: dict[str, Any] = {region: home}
    for bucket in paginate(home, "list_buckets", "Buckets"):
        name = bucket["Name"]
        bucket_region = bucket.get("BucketRegion")
        if not bucket_region:
            location = home.get_bucket_location(Bucket=name).get("LocationConstraint")
            bucket_region = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)
        if bucket_region not in clients:
            clients[bucket_region] = session.client("s3", region_name=bucket_region)
        yield name, clients[bucket_region]


def default_encryption(
    session: Session, *, region: str, account_id: str, params: Mapping[str, Any]
) -> CollectorResult:
    """Every bucket has a default server-side encryption configuration (SSE-S3, SSE-KMS, DSSE-KMS)."""
    findings: list[Finding] = []
    for name, s3 in _buckets(session, region):
        res = _bucket_res(account_id, name)
        try:
            rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
        except Exception as exc:
            if is_error(exc, "ServerSideEncryptionConfigurationNotFoundError"):
                findings.append(bad(res, "no default encryption configuration"))
                continue
            raise
        algorithms = sorted(
            {
                r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm", "")
                for r in rules
                if r.get("ApplyServerSideEncryptionByDefault")
            }
        )
        if algorithms:
            findings.append(ok(res, "default encryption " + ", ".join(algorithms)))
        else:
            findings.append(bad(res, "encryption configuration has no default algorithm"))
    return findings, summary(findings)


def _pab(config: Mapping[str, Any] | None) -> dict[str, bool]:
    config = config or {}
    return {flag: bool(config.get(flag, False)) for flag in PAB_FLAGS}


def public_access_block(
    session: Session, *, region: str, account_id: str, params: Mapping[str, Any]
) -> CollectorResult:
    """Block Public Access: the account-level setting must have all four flags on; each bucket must
    have all four flags on effectively (bucket flag OR account flag, as S3 applies them)."""
    control = session.client("s3control", region_name=region)
    account_res = f"s3:{account_id}:account-public-access-block"
    try:
        account_cfg = _pab(
            control.get_public_access_block(AccountId=account_id)["PublicAccessBlockConfiguration"]
        )
        account_set = True
    except Exception as exc:
        if not is_error(exc, "NoSuchPublicAccessBlockConfiguration"):
            raise
        account_cfg, account_set = _pab(None), False
    findings: list[Finding] = []
    missing = [f for f in PAB_FLAGS if not account_cfg[f]]
    if not account_set:
        findings.append(bad(account_res, "account-level public access block not configured"))
    elif missing:
        findings.append(bad(account_res, "account-level flags off: " + ", ".join(missing)))
    else:
        findings.append(ok(account_res, "account-level: all four flags on"))

    for name, s3 in _buckets(session, region):
        res = _bucket_res(account_id, name)
        try:
            cfg = _pab(s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"])
        except Exception as exc:
            if not is_error(exc, "NoSuchPublicAccessBlockConfiguration"):
                raise
            cfg = _pab(None)
        off = [f for f in PAB_FLAGS if not (cfg[f] or account_cfg[f])]
        if off:
            findings.append(bad(res, "public access not blocked: " + ", ".join(off) + " off"))
        elif all(cfg.values()):
            findings.append(ok(res, "bucket-level: all four flags on"))
        else:
            findings.append(ok(res, "all four flags on (with the account-level setting)"))
    return findings, summary(findings, account_level=account_cfg if account_set else None)


def versioning(
    session: Session, *, region: str, account_id: str, params: Mapping[str, Any]
) -> CollectorResult:
    """Every bucket has versioning ``Enabled`` (``Suspended`` or never enabled fails)."""
    findings: list[Finding] = []
    for name, s3 in _buckets(session, region):
        res = _bucket_res(account_id, name)
        status = s3.get_bucket_versioning(Bucket=name).get("Status")
        if status == "Enabled":
            findings.append(ok(res, "versioning enabled"))
        elif status:
            findings.append(bad(res, f"versioning {status.lower()}"))
        else:
            findings.append(bad(res, "versioning never enabled"))
    return findings, summary(findings)


def object_lock(
    session: Session, *, region: str, account_id: str, params: Mapping[str, Any]
) -> CollectorResult:
    """Buckets whose name matches a pattern of ``object_lock_required_buckets`` (fnmatch) must have
    Object Lock enabled; other buckets are ``not_applicable``."""
    patterns = [str(p) for p in param(params, "object_lock_required_buckets")]
    findings: list[Finding] = []
    for name, s3 in _buckets(session, region):
        res = _bucket_res(account_id, name)
        if not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            findings.append(skip(res, "Object Lock not required for this bucket"))
            continue
        try:
            cfg = s3.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"]
        except Exception as exc:
            if is_error(exc, "ObjectLockConfigurationNotFoundError"):
                findings.append(bad(res, "Object Lock required but not enabled"))
                continue
            raise
        if cfg.get("ObjectLockEnabled") != "Enabled":
            findings.append(bad(res, "Object Lock required but not enabled"))
            continue
        retention = (cfg.get("Rule") or {}).get("DefaultRetention") or {}
        if retention:
            period = f"{retention['Days']} days" if "Days" in retention else f"{retention.get('Years')} years"
            findings.append(ok(res, f"Object Lock enabled; default {retention.get('Mode')} {period}"))
        else:
            findings.append(ok(res, "Object Lock enabled; no default retention"))
    return findings, summary(findings, patterns=sorted(patterns))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def denies_insecure_transport(policy: Mapping[str, Any]) -> bool:
    """True when a statement denies every principal when ``aws:SecureTransport`` is false."""
    for st in _as_list(policy.get("Statement")):
        if not isinstance(st, Mapping) or st.get("Effect") != "Deny":
            continue
        principal = st.get("Principal")
        if principal != "*" and not (
            isinstance(principal, Mapping) and "*" in _as_list(principal.get("AWS"))
        ):
            continue
        actions = _as_list(st.get("Action"))
        if not any(a in ("*", "s3:*") for a in actions):
            continue
        for op, cond in (st.get("Condition") or {}).items():
            if op not in ("Bool", "BoolIfExists") or not isinstance(cond, Mapping):
                continue
            for key, value in cond.items():
                if key.lower() == "aws:securetransport" and any(
                    str(v).lower() == "false" for v in _as_list(value)
                ):
                    return True
    return False


def tls_only(session: Session, *, region: str, account_id: str, params: Mapping[str, Any]) -> CollectorResult:
    """Every bucket policy denies ``s3:*`` to ``*`` when ``aws:SecureTransport`` is false."""
    findings: list[Finding] = []
    for name, s3 in _buckets(session, region):
        res = _bucket_res(account_id, name)
        try:
            policy = json.loads(s3.get_bucket_policy(Bucket=name)["Policy"])
        except Exception as exc:
            if is_error(exc, "NoSuchBucketPolicy"):
                findings.append(bad(res, "no bucket policy (plain HTTP allowed)"))
                continue
            raise
        if denies_insecure_transport(policy):
            findings.append(ok(res, "policy denies requests without TLS"))
        else:
            findings.append(bad(res, "policy does not deny aws:SecureTransport=false"))
    return findings, summary(findings)


COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec(
        "s3.default_encryption",
        "s3",
        "account",
        default_encryption,
        population="S3 buckets of the account",
        enumerated_by="s3:ListBuckets (every page)",
    ),
    CollectorSpec(
        "s3.public_access_block",
        "s3",
        "account",
        public_access_block,
        population="the account-level setting and every S3 bucket",
        enumerated_by="s3:GetPublicAccessBlock (account), s3:ListBuckets (every page)",
    ),
    CollectorSpec(
        "s3.versioning",
        "s3",
        "account",
        versioning,
        population="S3 buckets of the account",
        enumerated_by="s3:ListBuckets (every page)",
    ),
    CollectorSpec(
        "s3.object_lock",
        "s3",
        "account",
        object_lock,
        population="S3 buckets of the account",
        enumerated_by="s3:ListBuckets (every page)",
    ),
    CollectorSpec(
        "s3.tls_only",
        "s3",
        "account",
        tls_only,
        population="S3 buckets of the account",
        enumerated_by="s3:ListBuckets (every page)",
    ),
)
