"""The evidence bucket: write-once objects under S3 Object Lock (COMPLIANCE mode).

Layout: ``objects/sha256/<hex>.json`` (evidence, content-addressed), ``digests/`` (signed ledger
digests), ``archive/`` (encrypted audit archives), ``reports/`` (reports and auditor packets),
``keys/`` (public keys). Every write is create-only: an existing key is never overwritten (the first
version of a key is the authoritative one), and retain-until is never shortened by this code — the
local emulator would not refuse it (see DESIGN facts), so the rule is ours to keep.

Imports nothing from Airflow.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from attestly.evidence import EvidenceItem

if TYPE_CHECKING:
    from botocore.client import BaseClient

LOCK_MODE = "COMPLIANCE"


class StoreError(RuntimeError):
    """The store refused or failed; the message names the bucket and key."""


class ObjectLockMissing(StoreError):
    """The bucket has no Object Lock: Attestly refuses to write evidence or archives to it."""


class ContentConflict(StoreError):
    """A create-only key already holds different content (tampering, or a bug): never overwritten."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    version_id: str
    sha256: str
    size: int
    retain_until: datetime
    lock_mode: str
    created: bool  # False when the exact content was already there (idempotent re-run)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "version_id": self.version_id,
            "sha256": self.sha256,
            "size": self.size,
            "retain_until": self.retain_until.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "lock_mode": self.lock_mode,
        }


class EvidenceStore:
    """Create-only, Object-Locked writes to one bucket."""

    def __init__(self, *, bucket: str, s3: BaseClient, retention_days: int) -> None:
        self.bucket = bucket
        self.s3 = s3
        self.retention_days = retention_days
        self._lock_checked = False

    @classmethod
    def from_connection(cls, *, bucket: str | None = None, aws_conn_id: str = "aws_default") -> EvidenceStore:
        from attestly import config
        from attestly.connections import aws_client
        from attestly.policy import load_policy

        days = load_policy().retention.evidence.retention_days
        return cls(
            bucket=bucket or config.evidence_bucket(),
            s3=aws_client("s3", aws_conn_id=aws_conn_id),
            retention_days=days,
        )

    def ensure_object_lock(self) -> None:
        """Refuse a bucket without Object Lock enabled."""
        if self._lock_checked:
            return
        try:
            cfg = self.s3.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
        except self.s3.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise ObjectLockMissing(
                f"s3://{self.bucket}: Object Lock is not enabled ({code}); refusing to store evidence there"
            ) from exc
        if cfg.get("ObjectLockEnabled") != "Enabled":
            raise ObjectLockMissing(
                f"s3://{self.bucket}: Object Lock is not enabled; refusing to store evidence there"
            )
        self._lock_checked = True

    def retain_until_for(self, period_end: datetime) -> datetime:
        """Deterministic from the period, so a re-run asks for the same retention (never a shorter one)."""
        day = period_end.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return day + timedelta(days=self.retention_days + 1)

    def put_evidence(self, item: EvidenceItem) -> StoredObject:
        return self.put_bytes(
            item.object_key,
            item.canonical(),
            retain_until=self.retain_until_for(item.period_end),
            content_type="application/json",
        )

    def put_bytes(
        self,
        key: str,
        body: bytes,
        *,
        retain_until: datetime,
        content_type: str = "application/octet-stream",
        expected_sha256: str | None = None,
    ) -> StoredObject:
        """Create ``key`` with ``body`` under COMPLIANCE lock; if it exists with the same bytes, return it."""
        self.ensure_object_lock()
        digest = hashlib.sha256(body).hexdigest()
        if expected_sha256 is not None and expected_sha256 != digest:
            raise StoreError(
                f"s3://{self.bucket}/{key}: content hash {digest} is not the expected {expected_sha256}"
            )
        # Cheap existence check first (HEAD); the version listing is only needed on a re-run, when the key
        # exists or a delete marker hides it.
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
            present = True
        except self.s3.exceptions.ClientError as exc:
            headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            present = headers.get("x-amz-delete-marker") == "true"
        if present:
            existing = self.first_version(key)
            if existing is not None:
                return self._confirm_existing(key, existing, digest, len(body))
        try:
            resp = self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                ChecksumAlgorithm="SHA256",
                ObjectLockMode=LOCK_MODE,
                ObjectLockRetainUntilDate=retain_until,
                IfNoneMatch="*",
                Metadata={"sha256": digest},
            )
        except self.s3.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                existing = self.first_version(key)
                if existing is not None:
                    return self._confirm_existing(key, existing, digest, len(body))
            raise StoreError(f"s3://{self.bucket}/{key}: put failed ({code})") from exc
        version = resp.get("VersionId")
        if not version:
            raise StoreError(f"s3://{self.bucket}/{key}: no version id returned; is versioning enabled?")
        return StoredObject(key, version, digest, len(body), retain_until, LOCK_MODE, created=True)

    def first_version(self, key: str) -> str | None:
        """The oldest version id of ``key`` (the authoritative one), or None if the key was never written."""
        versions: list[tuple[datetime, bool, str]] = []
        paginator = self.s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
            for v in page.get("Versions", []):
                if v["Key"] == key:
                    # LastModified ties (one-second resolution): the latest version is not the oldest.
                    versions.append((v["LastModified"], bool(v["IsLatest"]), v["VersionId"]))
        return min(versions)[2] if versions else None

    def _confirm_existing(self, key: str, version_id: str, digest: str, size: int) -> StoredObject:
        obj = self.s3.get_object(Bucket=self.bucket, Key=key, VersionId=version_id)
        data = obj["Body"].read()
        found = hashlib.sha256(data).hexdigest()
        if found != digest:
            raise ContentConflict(
                f"s3://{self.bucket}/{key} (version {version_id}) holds different content (sha256 {found}); "
                "refusing to overwrite"
            )
        return StoredObject(
            key,
            version_id,
            digest,
            size,
            obj.get("ObjectLockRetainUntilDate") or datetime.min.replace(tzinfo=UTC),
            obj.get("ObjectLockMode") or "",
            created=False,
        )

    def extend_retention(self, key: str, version_id: str, retain_until: datetime) -> None:
        """Lengthen the COMPLIANCE lock of one version to ``retain_until`` (never shortens it: an earlier
        date is refused here, whatever the emulator would allow)."""
        head = self.s3.head_object(Bucket=self.bucket, Key=key, VersionId=version_id)
        current = head.get("ObjectLockRetainUntilDate")
        if current is not None and current >= retain_until:
            return
        self.s3.put_object_retention(
            Bucket=self.bucket,
            Key=key,
            VersionId=version_id,
            Retention={"Mode": LOCK_MODE, "RetainUntilDate": retain_until},
        )

    def get_bytes(self, key: str, version_id: str | None = None) -> bytes:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id:
            kwargs["VersionId"] = version_id
        return bytes(self.s3.get_object(**kwargs)["Body"].read())
