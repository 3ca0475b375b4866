"""`attestly verify` never crashes on what a bucket writer can put under ``digests/``: random and
adversarial digest documents (structure-aware: valid digests with fields removed, retyped, nested,
oversized, or replaced by hostile numbers) always give a report, and a problem for anything not
well-formed and authentic.

The bucket here is an in-memory stand-in passed to ``verify_bucket`` (the verifier takes its S3 client
as an argument); tests/integration/test_verify_hostile.py plants the same kinds of junk in the real
bucket over HTTP.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attestly.evidence import canonical_json
from attestly.ledger import DIGEST_SCHEMA, GENESIS, digest_key, entry_hash
from attestly.merkle import merkle_root
from attestly.signing import Ed25519Signer
from attestly.verify import MAX_DIGEST_DEPTH, Report, parse_digest, verify_bucket

pytestmark = pytest.mark.unit

SIGNER = Ed25519Signer(Ed25519PrivateKey.generate())
PUBLIC = SIGNER.public_key_pem()
T0 = datetime(2026, 4, 1, tzinfo=UTC)


class _ClientError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


class _Body(io.BytesIO):
    def iter_chunks(self, chunk_size: int = 1024) -> Any:
        while chunk := self.read(chunk_size):
            yield chunk


class MemoryBucket:
    """Just what verify_bucket calls: list_object_versions (paginated), get_object (the current version,
    or one by its id)."""

    class exceptions:
        ClientError = _ClientError

    def __init__(self) -> None:
        self.objects: dict[str, list[tuple[str, bytes]]] = {}

    def put(self, key: str, body: bytes) -> str:
        versions = self.objects.setdefault(key, [])
        vid = f"v{len(versions) + 1}"
        versions.append((vid, body))
        return vid

    def get_paginator(self, name: str) -> Any:
        assert name == "list_object_versions"
        bucket = self

        class _P:
            def paginate(self, *, Bucket: str, Prefix: str) -> Any:
                versions = []
                for key, vs in sorted(bucket.objects.items()):
                    if key.startswith(Prefix):
                        for i, (vid, _) in enumerate(vs):
                            versions.append(
                                {
                                    "Key": key,
                                    "VersionId": vid,
                                    "LastModified": T0,
                                    "IsLatest": i == len(vs) - 1,
                                }
                            )
                yield {"Versions": versions}

        return _P()

    def get_object(self, *, Bucket: str, Key: str, VersionId: str | None = None) -> dict[str, Any]:
        versions = self.objects.get(Key, [])
        if VersionId is None and not versions:
            raise _ClientError("NoSuchKey")
        for vid, body in versions:
            if vid == (VersionId if VersionId is not None else versions[-1][0]):
                return {
                    "Body": _Body(body),
                    "VersionId": vid,
                    "ObjectLockMode": "COMPLIANCE",
                    "ObjectLockRetainUntilDate": datetime(2036, 1, 1, tzinfo=UTC),
                }
        raise _ClientError("NoSuchVersion")


def _entry(seq: int, prev: str, body: dict[str, Any]) -> dict[str, Any]:
    content = {
        "seq": seq,
        "kind": "evidence",
        "recorded_at": "2026-04-01T00:00:00Z",
        "body": body,
        "prev_hash": prev,
    }
    return {**content, "entry_hash": entry_hash(content)}


def valid_world() -> tuple[MemoryBucket, dict[str, Any]]:
    """A bucket with two evidence objects and one authentic digest over them; returns the digest."""
    bucket = MemoryBucket()
    entries, prev = [], GENESIS
    for n in range(2):
        data = canonical_json({"n": n})
        sha = hashlib.sha256(data).hexdigest()
        key = f"objects/sha256/{sha}.json"
        vid = bucket.put(key, data)
        e = _entry(
            n + 1,
            prev,
            {
                "key": key,
                "version_id": vid,
                "sha256": sha,
                "period_start": "2026-04-01T00:00:00Z",
                "period_end": "2026-04-02T00:00:00Z",
                "retain_until": "2033-04-01T00:00:00Z",
            },
        )
        entries.append(e)
        prev = e["entry_hash"]
    digest = {
        "schema": DIGEST_SCHEMA,
        "first_seq": 1,
        "last_seq": 2,
        "entry_count": 2,
        "entries": entries,
        "merkle_root": merkle_root(
            [
                canonical_json({k: e[k] for k in ("seq", "kind", "recorded_at", "body", "prev_hash")})
                for e in entries
            ]
        ).hex(),
        "last_entry_hash": prev,
        "time_range": {"start": "2026-04-01T00:00:00Z", "end": "2026-04-01T00:00:00Z"},
        "previous": None,
        "signature_algorithm": SIGNER.algorithm,
        "public_key_fingerprint": "x",
    }
    return bucket, digest


_CONTENT = ("seq", "kind", "recorded_at", "body", "prev_hash")


def reseal(digest: Any) -> None:
    """Re-chain the entries and recompute the Merkle root, as a forger with the signing key would."""
    if not isinstance(digest, dict) or not isinstance(digest.get("entries"), list):
        return
    prev, leaves = GENESIS, []
    with contextlib.suppress(TypeError, ValueError, RecursionError, AttributeError):
        for e in digest["entries"]:
            if isinstance(e, dict) and all(k in e for k in _CONTENT):
                e["prev_hash"] = prev
                content = {k: e[k] for k in _CONTENT}
                e["entry_hash"] = prev = entry_hash(content)
                leaves.append(canonical_json(content))
        digest["merkle_root"] = merkle_root(leaves).hex()
        digest["last_entry_hash"] = prev


def signed(digest: Any) -> bytes:
    try:
        sig = base64.b64encode(SIGNER.sign(canonical_json(digest))).decode()
    except (TypeError, ValueError, RecursionError):
        sig = "AAAA"
    return json.dumps({"digest": digest, "signature": sig}, allow_nan=True).encode()


def run(raw: bytes, bucket: MemoryBucket | None = None) -> Report:
    bucket = bucket or valid_world()[0]
    bucket.put(digest_key(1, 2), raw)
    return verify_bucket(s3=bucket, bucket="b", public_key_pem=PUBLIC)


def test_the_valid_world_verifies() -> None:
    bucket, digest = valid_world()
    report = run(signed(digest), bucket)
    assert report.ok, report.problems
    assert (report.objects_requested, report.objects_verified) == (2, 2)


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b'{"digest": [], "signature": ""}', "digest: missing or not an object"),
        (
            b'{"digest": {"schema": "attestly.digest/v1", "entries": [1]}, "signature": "AA=="}',
            "digest.signature_algorithm",
        ),
        (b'{"digest": {"x": 1e400}, "signature": "AA=="}', "out of range"),
        (b'{"digest": {"x": NaN}, "signature": "AA=="}', "NaN is not a JSON number"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
        (b'{"digest": {}, "digest": {}, "signature": "AA=="}', "duplicate key 'digest'"),
        (b"\xff\xfe not json", "not readable JSON"),
        (b'{"digest": {}, "signature": "not base64!"}', "signature: not base64"),
    ],
)
def test_named_junk_is_a_malformed_digest(raw: bytes, detail: str) -> None:
    report = run(raw)
    assert not report.ok
    (problem,) = [p for p in report.problems if p.kind == "malformed"]
    assert detail in problem.detail and problem.key == digest_key(1, 2)


def test_an_entry_without_its_key_is_named() -> None:
    bucket, digest = valid_world()
    del digest["entries"][0]["body"]["key"]
    reseal(digest)
    report = run(signed(digest), bucket)
    assert any(p.kind == "malformed" and "lacks 'key'" in p.detail for p in report.problems)


def test_entries_of_an_unauthenticated_digest_are_not_used() -> None:
    bucket, digest = valid_world()
    raw = json.loads(signed(digest))
    raw["signature"] = base64.b64encode(b"\0" * 64).decode()
    report = run(json.dumps(raw).encode(), bucket)
    assert [p.kind for p in report.problems] == ["bad_signature"]
    assert report.objects_requested == 0 and report.entries_untrusted == 2


def test_an_oversized_digest_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import attestly.verify as v

    monkeypatch.setattr(v, "MAX_DIGEST_BYTES", 1000)
    bucket, digest = valid_world()
    report = run(signed(digest) + b" " * 2000, bucket)
    assert any(p.kind == "malformed" and "may be at most 1,000" in p.detail for p in report.problems)


# ------------------------------------------------------------------------------------------- fuzzing

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
PATHS = [
    (),
    ("schema",),
    ("entries",),
    ("entries", 0),
    ("entries", 0, "seq"),
    ("entries", 0, "body"),
    ("entries", 0, "body", "key"),
    ("entries", 0, "body", "sha256"),
    ("entries", 0, "body", "version_id"),
    ("entries", 0, "body", "period_start"),
    ("entries", 0, "body", "retain_until"),
    ("entries", 1, "prev_hash"),
    ("entries", 1, "kind"),
    ("merkle_root",),
    ("previous",),
    ("time_range",),
    ("signature_algorithm",),
]


def _mutate(doc: Any, path: tuple[Any, ...], value: Any, how: str) -> Any:
    if not path:
        return value
    target = doc
    for step in path[:-1]:
        target = target[step]
    last = path[-1]
    if how == "delete" and isinstance(target, dict):
        target.pop(last, None)
    elif how == "deep":
        nested: Any = value
        for _ in range(MAX_DIGEST_DEPTH + 5):
            nested = [nested]
        target[last] = nested
    else:
        target[last] = value
    return doc


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(PATHS),
    value=JSON,
    how=st.sampled_from(["replace", "delete", "deep"]),
    resign=st.booleans(),
    kind=st.sampled_from(["evidence", "report", "archive", "disposal", "run"]),
)
def test_fuzzed_digests_always_give_a_report(
    path: tuple[Any, ...], value: Any, how: str, resign: bool, kind: str
) -> None:
    bucket, digest = valid_world()
    digest["entries"][0]["kind"] = kind
    doc = _mutate(digest, path, value, how)
    if resign:
        reseal(doc)
    raw = signed(doc)
    report = run(raw, bucket)  # must not raise
    assert isinstance(report, Report)
    json.dumps(report.to_dict())  # a printable report
    if not report.ok:
        assert report.problems and all(p.kind and p.key for p in report.problems)
    # The shape checks name the problem; the last-resort net (an unexpected exception) is never needed.
    assert not [p for p in report.problems if "unexpected content" in p.detail]


@settings(max_examples=1500, deadline=None)
@given(raw=st.one_of(st.binary(max_size=300), JSON.map(lambda v: json.dumps(v, allow_nan=True).encode())))
def test_arbitrary_bytes_never_crash_the_parser(raw: bytes) -> None:
    from attestly.verify import MalformedDigest

    try:
        parse_digest(raw)
    except MalformedDigest as exc:
        assert str(exc)
