"""Create-only archive objects: a streamed S3 multipart upload under Object Lock (COMPLIANCE).

- Refuses a bucket without Object Lock (:meth:`attestly.store.EvidenceStore.ensure_object_lock`).
- Never overwrites: before uploading, the caller looks for an existing version of the key (the first
  version is the authoritative one) and checks it instead; the completion itself is conditional
  (``If-None-Match: *``), so a concurrent writer cannot add a second version.
- Lock: the upload asks for COMPLIANCE and the retain-until date; :func:`ensure_lock` then reads the lock
  back from ``head_object`` and, where the store did not apply it (some emulators ignore lock headers on
  multipart uploads), sets it with ``PutObjectRetention``. Retention is only ever set or extended, never
  shortened.
- A crash mid-upload leaves an incomplete multipart upload (no object, no version); the next attempt
  aborts uploads left for that key before starting again.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from attestly import failpoints
from attestly.archive.errors import ArchiveError, ObjectConflict

if TYPE_CHECKING:
    from botocore.client import BaseClient

LOCK_MODE = "COMPLIANCE"
DEFAULT_PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024


@dataclass(frozen=True)
class ObjectLock:
    mode: str | None
    retain_until: datetime | None
    legal_hold: bool
    size: int
    version_id: str


def abort_stale_uploads(s3: BaseClient, *, bucket: str, key: str) -> int:
    """Abort incomplete multipart uploads of exactly ``key`` (left by a crash); returns how many."""
    aborted = 0
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": key}
    while True:
        resp = s3.list_multipart_uploads(**kwargs)
        for upload in resp.get("Uploads", []):
            if upload["Key"] == key:
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
                aborted += 1
        if not resp.get("IsTruncated"):
            return aborted
        kwargs["KeyMarker"] = resp.get("NextKeyMarker")
        kwargs["UploadIdMarker"] = resp.get("NextUploadIdMarker")


class MultipartSink:
    """Receives object bytes (``write``) and uploads them as parts of bounded size, ``max_inflight`` at a
    time in background threads, so memory stays bounded (about ``part_size * (max_inflight + 1)``).

    The mid-upload failpoint fires once the first part is stored and before completion.
    """

    def __init__(
        self,
        *,
        s3: BaseClient,
        bucket: str,
        key: str,
        retain_until: datetime,
        metadata: dict[str, str],
        part_size: int = DEFAULT_PART_SIZE,
        max_inflight: int = 2,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part size {part_size} is below the S3 minimum of {MIN_PART_SIZE}")
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.part_size = part_size
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._parts: dict[int, Future[dict[str, Any]]] = {}
        self._slots = threading.BoundedSemaphore(max_inflight)
        self._pool = ThreadPoolExecutor(max_workers=max_inflight, thread_name_prefix="archive-upload")
        self._failpoint_done = False
        self.upload_id: str = s3.create_multipart_upload(
            Bucket=bucket,
            Key=key,
            ContentType="application/octet-stream",
            ObjectLockMode=LOCK_MODE,
            ObjectLockRetainUntilDate=retain_until,
            Metadata=metadata,
        )["UploadId"]

    def write(self, data: bytes) -> None:
        """Queue object bytes; a part is sent once at least ``part_size`` bytes are queued (parts are
        whole pieces as written, joined once: one copy)."""
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= self.part_size:
            self._flush()

    def _flush(self) -> None:
        piece = b"".join(self._pending)
        self._pending = []
        self._pending_bytes = 0
        self._submit(piece)

    def _submit(self, piece: bytes) -> None:
        number = len(self._parts) + 1
        self._slots.acquire()

        def upload() -> dict[str, Any]:
            try:
                resp = self.s3.upload_part(
                    Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=piece
                )
                return {"PartNumber": number, "ETag": resp["ETag"]}
            finally:
                self._slots.release()

        self._parts[number] = self._pool.submit(upload)
        if number >= 2:
            self._mid_upload()

    def _mid_upload(self) -> None:
        """The mid-upload failpoint: once, when the first part is stored and the upload is incomplete."""
        if not self._failpoint_done:
            self._parts[1].result()
            self._failpoint_done = True
            failpoints.hit("archive.mid_upload")

    def complete(self) -> str:
        """Upload the rest, complete the upload (only if the key has no version yet); returns the version."""
        if self._pending or not self._parts:
            self._flush()
        parts = [self._parts[n].result() for n in sorted(self._parts)]
        self._mid_upload()
        self._pool.shutdown(wait=True)
        try:
            resp = self.s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except self.s3.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            self.abort()
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise ObjectConflict(
                    f"s3://{self.bucket}/{self.key} appeared during the upload; refusing to add a second version"
                ) from exc
            raise ArchiveError(
                f"s3://{self.bucket}/{self.key}: completing the upload failed ({code})"
            ) from exc
        version = resp.get("VersionId")
        if not version:
            raise ArchiveError(
                f"s3://{self.bucket}/{self.key}: no version id returned; is versioning enabled?"
            )
        return str(version)

    def abort(self) -> None:
        """Abandon the upload (nothing becomes visible)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
        except self.s3.exceptions.ClientError:
            # Already completed or aborted: nothing left to clean up; a leftover is aborted next time.
            return


def read_lock(s3: BaseClient, *, bucket: str, key: str, version_id: str) -> ObjectLock:
    """Lock mode, retain-until and legal hold of one version, from ``head_object``."""
    head = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
    until = head.get("ObjectLockRetainUntilDate")
    return ObjectLock(
        mode=head.get("ObjectLockMode"),
        retain_until=until.astimezone(UTC) if isinstance(until, datetime) else None,
        legal_hold=head.get("ObjectLockLegalHoldStatus") == "ON",
        size=int(head["ContentLength"]),
        version_id=version_id,
    )


def ensure_lock(
    s3: BaseClient, *, bucket: str, key: str, version_id: str, retain_until: datetime
) -> ObjectLock:
    """Make sure the version is COMPLIANCE-locked until at least ``retain_until``; never shortens."""
    lock = read_lock(s3, bucket=bucket, key=key, version_id=version_id)
    if lock.mode == LOCK_MODE and lock.retain_until is not None and lock.retain_until >= retain_until:
        return lock
    if lock.mode not in (None, LOCK_MODE):
        raise ObjectConflict(
            f"s3://{bucket}/{key} (version {version_id}) is locked in {lock.mode} mode, not {LOCK_MODE}"
        )
    s3.put_object_retention(
        Bucket=bucket,
        Key=key,
        VersionId=version_id,
        Retention={"Mode": LOCK_MODE, "RetainUntilDate": retain_until},
    )
    return read_lock(s3, bucket=bucket, key=key, version_id=version_id)


def set_legal_hold(s3: BaseClient, *, bucket: str, key: str, version_id: str, on: bool) -> None:
    s3.put_object_legal_hold(
        Bucket=bucket, Key=key, VersionId=version_id, LegalHold={"Status": "ON" if on else "OFF"}
    )
