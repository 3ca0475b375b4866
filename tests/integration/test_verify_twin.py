"""Two verifiers, one verdict: `attestly verify` (Python) and `verify.mjs` (Node.js, standard library only,
written from the VERIFY.md specification) read the same stores over S3 and must agree — clean, and after
every kind of tampering the Python suites plant (a replaced or deleted evidence object, a deleted or
rewritten digest, the wrong public key, a forged digest that skips entries, junk under ``digests/``,
replaced report files, packets and archive objects, a period filter).

The store mixes both formats, as an upgraded installation does: what a v1 installation wrote (sorted-keys
JSON, floats printed by Python, a key outside the Basic Multilingual Plane whose order differs between
code points and UTF-16) sealed in an ``attestly.digest/v1``, then RFC 8785 (JCS) entries and evidence
sealed in an ``attestly.digest/v2`` that chains to it. (The ledger database cross-check, ``--ledger``,
is Python's alone: Node's standard library has no PostgreSQL client.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import attestly
from attestly.connections import aws_client, get_conn
from attestly.evidence import EvidenceItem, Finding, canonical_json, canonical_json_v1, iso
from attestly.ledger import GENESIS, Ledger, digest_key, entry_canonical, entry_hash
from attestly.merkle import merkle_root
from attestly.recording import evidence_summary, record_evidence
from attestly.signing import Ed25519Signer, fingerprint, signer_from_connection
from attestly.store import EvidenceStore
from attestly.verify import verify_bucket
from tests.conftest import recreate_database
from tests.sysdeps import require_tool

pytestmark = pytest.mark.integration
VERIFY_MJS = Path(attestly.__file__).parent / "verify.mjs"
DAY = datetime(2026, 4, 1, tzinfo=UTC)


@dataclass
class Store:
    bucket: str
    store: EvidenceStore
    s3: Any
    public_pem: bytes
    keys: list[str]  # evidence object keys, v1 first
    extra: dict[str, Any]


def _item(n: int, *, version: int, data: dict[str, Any] | None = None) -> EvidenceItem:
    start = DAY + timedelta(days=n)
    return EvidenceItem(
        collector="auditdb.event_volume",
        controls=("soc2:CC7.2",),
        period_start=start,
        period_end=start + timedelta(days=1),
        scope={"database": "audit", "source": f"s{n}"},
        retroactive=True,
        result="pass",
        findings=(Finding(f"source:s{n}", "pass", f"{n} events"),),
        data=data if data is not None else {"n": n},
        version=version,
    )


# Values whose v1 (Python) and v2 (JCS) forms differ: floats, and keys ordered differently by code point
# (v1) and by UTF-16 code unit (JCS): U+1D11E sorts after U+FF5A by code point, before it in UTF-16.
_AWKWARD = {
    "ratio": 0.1,
    "tiny": 1e-7,
    "whole": 3.0,
    "half": 2.5,
    "\U0001d11e": "clef",
    "\uff5a": "z",
    "é": "e",
}


def _append_v1(ledger: Ledger, kind: str, body: dict[str, Any], at: datetime) -> None:
    """What Attestly before format 2 appended: the entry hash over the v1 form, the row's format 1."""
    from psycopg.types.json import Jsonb

    with ledger.conn.transaction():
        last = ledger.conn.execute(
            "SELECT seq, entry_hash FROM attestly.ledger ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        seq, prev = (int(last[0]) + 1, last[1]) if last else (1, GENESIS)
        content = {"seq": seq, "kind": kind, "recorded_at": iso(at), "body": body, "prev_hash": prev}
        ehash = hashlib.sha256(canonical_json_v1(content)).hexdigest()
        ledger.conn.execute(
            "INSERT INTO attestly.ledger (seq, kind, recorded_at, body, prev_hash, entry_hash, format) "
            "VALUES (%s, %s, %s, %s, %s, %s, 1)",
            (seq, kind, at, Jsonb(body), prev, ehash),
        )


def _seal_v1(ledger: Ledger, store: EvidenceStore, signer: Ed25519Signer) -> None:
    """The seal of a v1 installation: an ``attestly.digest/v1`` signed over its sorted-keys JSON."""
    entries = list(ledger.entries())
    assert all(e.format == 1 for e in entries)
    digest = {
        "schema": "attestly.digest/v1",
        "first_seq": entries[0].seq,
        "last_seq": entries[-1].seq,
        "entry_count": len(entries),
        "entries": [e.to_digest_dict() for e in entries],
        "merkle_root": merkle_root([canonical_json_v1(e.content()) for e in entries]).hex(),
        "last_entry_hash": entries[-1].entry_hash,
        "time_range": {"start": iso(entries[0].recorded_at), "end": iso(entries[-1].recorded_at)},
        "previous": None,
        "signature_algorithm": signer.algorithm,
        "public_key_fingerprint": fingerprint(signer.public_key_pem()),
    }
    signature = base64.b64encode(signer.sign(canonical_json_v1(digest))).decode()
    key = digest_key(entries[0].seq, entries[-1].seq)
    stored = store.put_bytes(
        key,
        canonical_json_v1({"digest": digest, "signature": signature}),
        retain_until=store.retain_until_for(entries[-1].recorded_at),
        content_type="application/json",
    )
    with ledger.conn.transaction():
        ledger.conn.execute(
            "INSERT INTO attestly.digests (first_seq, last_seq, key, version_id, sha256, signature, merkle_root) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                entries[0].seq,
                entries[-1].seq,
                key,
                stored.version_id,
                stored.sha256,
                signature,
                digest["merkle_root"],
            ),
        )


@pytest.fixture
def mixed(stack: dict[str, str]) -> Iterator[Store]:
    recreate_database("attestly")
    s3 = aws_client("s3")
    bucket = f"twin-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    store = EvidenceStore(bucket=bucket, s3=s3, retention_days=3650)
    signer = signer_from_connection()
    assert isinstance(signer, Ed25519Signer)
    keys: list[str] = []
    extra: dict[str, Any] = {}
    with Ledger.connect() as ledger:
        # 1. A v1 installation: v1 items and format-1 entries, sealed in a v1 digest.
        for n in range(3):
            item = _item(n, version=1, data={"n": n, **_AWKWARD})
            stored = store.put_evidence(item)
            assert stored.sha256 == hashlib.sha256(canonical_json_v1(item.to_dict())).hexdigest()
            body = {
                **evidence_summary(item),
                **stored.to_dict(),
                "sha256": item.sha256,
                "observation": item.observation_sha256,
            }
            _append_v1(ledger, "evidence", body, DAY + timedelta(days=n, hours=1))
            keys.append(stored.key)
        _append_v1(ledger, "note", {"what": "v1 floats", **_AWKWARD}, DAY + timedelta(days=3))
        _seal_v1(ledger, store, signer)
        # 2. The same installation after the upgrade: JCS items and format-2 entries.
        for n in range(3, 8):
            keys.append(
                record_evidence(_item(n, version=2, data={"n": n, **_AWKWARD}), store=store, ledger=ledger)[
                    "key"
                ]
            )
        # Recording v2 evidence stored and ledgered the policy in force (kind policy) once.
        from attestly.policy_evidence import current_bundle

        extra["policy"] = current_bundle().key
        assert store.s3.head_object(Bucket=bucket, Key=extra["policy"])
        retain = store.retain_until_for(DAY + timedelta(days=90))
        index = store.put_bytes(
            "reports/pci/2026-Q2/0123456789abcdef/index.html", b"<h1>PCI</h1>", retain_until=retain
        )
        packet = store.put_bytes(
            "reports/pci/2026-Q2/0123456789abcdef/packet.zip", b"PK\x05\x06" + bytes(18), retain_until=retain
        )
        archive = store.put_bytes(
            "archive/audit.events/a/2026-04/b.parquet.aesgcm", b"\x01" * 4096, retain_until=retain
        )
        ledger.append(
            "report",
            {
                "framework": "pci",
                "period": {"start": "2026-04-01", "end": "2026-06-30", "days": 91, "label": "2026-Q2"},
                "objects": [{"path": "index.html", **index.to_dict()}],
                "packet": packet.to_dict(),
                "retain_until": retain.isoformat(),
            },
            dedupe_key="report:twin",
        )
        ledger.append(
            "archive",
            {
                "manifest": {
                    "batch": {"month": "2026-04", "retain_until": retain.isoformat()},
                    "object": {"bucket": bucket, **archive.to_dict()},
                },
                "evidence": {
                    "key": keys[0],
                    "version_id": _version(s3, bucket, keys[0]),
                    "sha256": keys[0].rsplit("/", 1)[1][:-5],
                },
            },
            dedupe_key="archive:twin",
        )
        assert ledger.seal(store=store, signer=signer) is not None
        extra.update(index=index.key, packet=packet.key, archive=archive.key)
    yield Store(bucket, store, s3, signer.public_key_pem(), keys, extra)


def _version(s3: Any, bucket: str, key: str) -> str:
    return str(s3.head_object(Bucket=bucket, Key=key)["VersionId"])


def _node_env() -> dict[str, str]:
    conn = get_conn("aws_default")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=conn.login or "",
        AWS_SECRET_ACCESS_KEY=conn.password or "",
        AWS_DEFAULT_REGION=str(conn.extra.get("region_name", "us-east-1")),
    )
    if conn.extra.get("endpoint_url"):
        env["AWS_ENDPOINT_URL"] = str(conn.extra["endpoint_url"])
    return env


def _both(
    world: Store,
    tmp_path: Path,
    *,
    pem: bytes | None = None,
    start: str | None = None,
    end: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any], int]:
    node = require_tool("node", "nodejs", packages="nodejs", why="the independent verifier verify.mjs")
    pem = pem or world.public_pem
    key_file = tmp_path / "public-key.pem"
    key_file.write_bytes(pem)
    args = ["--bucket", world.bucket, "--public-key", str(key_file), "--json"]
    s = e = None
    if start:
        args += ["--from", start]
        s = datetime.fromisoformat(start).replace(tzinfo=UTC)
    if end:
        args += ["--to", end]
        e = datetime.fromisoformat(end).replace(tzinfo=UTC) + timedelta(days=1)
    run = subprocess.run(
        [node, str(VERIFY_MJS), *args],
        capture_output=True,
        text=True,
        env=_node_env(),
        timeout=300,
        check=False,
    )
    assert run.returncode in (0, 1), run.stderr[-3000:]
    py = verify_bucket(s3=world.s3, bucket=world.bucket, public_key_pem=pem, start=s, end=e).to_dict()
    return py, json.loads(run.stdout), run.returncode


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    problems = [
        (p["kind"], p["key"]) if p["kind"] == "malformed" else (p["kind"], p["key"], p["detail"])
        for p in report["problems"]
    ]
    return {
        "ok": report["ok"],
        "found": report["found"],
        "requested": report["requested"],
        "problems": problems,
    }


def _agree(world: Store, tmp_path: Path, **kw: Any) -> dict[str, Any]:
    py, js, code = _both(world, tmp_path, **kw)
    assert _comparable(js) == _comparable(py)
    assert code == (0 if py["ok"] else 1)
    return py


def _replace_evidence(w: Store) -> None:
    w.s3.put_object(Bucket=w.bucket, Key=w.keys[1], Body=b'{"forged": true}')  # a v1 item
    w.s3.put_object(Bucket=w.bucket, Key=w.keys[5], Body=b'{"forged": true}')  # a v2 item


def _delete_evidence(w: Store) -> None:
    w.s3.delete_object(Bucket=w.bucket, Key=w.keys[0])
    w.s3.delete_object(Bucket=w.bucket, Key=w.keys[6])


def _delete_v1_digest(w: Store) -> None:
    w.s3.delete_object(Bucket=w.bucket, Key=digest_key(1, 4))


def _rewrite(
    w: Store, key: str, change: Callable[[dict[str, Any]], None], form: Callable[[Any], bytes]
) -> None:
    doc = json.loads(w.s3.get_object(Bucket=w.bucket, Key=key)["Body"].read())
    change(doc)
    w.s3.put_object(Bucket=w.bucket, Key=key, Body=form(doc))


def _rewrite_v1_digest(w: Store) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["digest"]["entries"][3]["body"]["ratio"] = 0.2

    _rewrite(w, digest_key(1, 4), change, canonical_json_v1)


def _rewrite_v2_digest(w: Store) -> None:
    key = _digest_keys(w)[-1]

    def change(doc: dict[str, Any]) -> None:
        doc["digest"]["entries"][0]["body"]["result"] = "fail"

    _rewrite(w, key, change, canonical_json)


def _digest_keys(w: Store) -> list[str]:
    listing = w.s3.list_objects_v2(Bucket=w.bucket, Prefix="digests/")
    return sorted(o["Key"] for o in listing["Contents"])


def _forged_gap(w: Store) -> None:
    """A digest signed with the real key (a stolen key, or a bug) that skips ledger entries."""
    last_key = _digest_keys(w)[-1]
    last = json.loads(w.s3.get_object(Bucket=w.bucket, Key=last_key)["Body"].read())
    forged = dict(last["digest"])
    seq = last["digest"]["last_seq"] + 5
    e = dict(last["digest"]["entries"][-1], seq=seq)
    content = {k: e[k] for k in ("seq", "kind", "recorded_at", "body", "prev_hash", "format")}
    e["entry_hash"] = entry_hash(content)
    forged.update(
        first_seq=seq,
        last_seq=seq,
        entry_count=1,
        entries=[e],
        merkle_root=merkle_root([entry_canonical(content)]).hex(),
    )
    forged["previous"] = {
        "key": last_key,
        "sha256": hashlib.sha256(canonical_json(last)).hexdigest(),
        "signature": last["signature"],
    }
    sig = base64.b64encode(signer_from_connection().sign(canonical_json(forged))).decode()
    w.s3.put_object(
        Bucket=w.bucket, Key=digest_key(seq, seq), Body=canonical_json({"digest": forged, "signature": sig})
    )


def _junk(w: Store) -> None:
    w.s3.put_object(
        Bucket=w.bucket, Key=digest_key(999_990, 999_990), Body=b'{"digest": [], "signature": ""}'
    )
    w.s3.put_object(
        Bucket=w.bucket,
        Key=digest_key(999_991, 999_991),
        Body=b'{"digest": {"n": 1e400}, "signature": "AA=="}',
    )
    w.s3.put_object(Bucket=w.bucket, Key=digest_key(999_992, 999_992), Body=b"[" * 100_000 + b"]" * 100_000)
    w.s3.put_object(Bucket=w.bucket, Key=digest_key(999_993, 999_993), Body=b'{"a": 1, "a": 2}')


def _replace_report_packet_archive(w: Store) -> None:
    for name in ("index", "packet", "archive"):
        w.s3.put_object(Bucket=w.bucket, Key=w.extra[name], Body=b"forged " + name.encode())


def _replace_policy(w: Store) -> None:
    w.s3.put_object(
        Bucket=w.bucket, Key=w.extra["policy"], Body=b'{"schema":"attestly.policy/v1","files":[]}'
    )


def _lying_entry(w: Store) -> None:
    """A signed entry (a bug, or a stolen key) that records the wrong hash and a longer lock than the object
    has, for a manual statement whose own signature does not verify."""
    obj = w.store.put_bytes(
        "objects/sha256/" + "ab" * 32 + ".json", b"{}", retain_until=w.store.retain_until_for(DAY)
    )
    with Ledger.connect() as ledger:
        ledger.append(
            "evidence",
            {
                "collector": "manual",
                "key": obj.key,
                "version_id": obj.version_id,
                "sha256": "ab" * 32,
                "retain_until": "2099-01-01T00:00:00Z",
                "period_start": "2026-04-04T00:00:00Z",
                "period_end": "2026-04-05T00:00:00Z",
                "signature": {"algorithm": "ed25519", "signature": "AAAA"},
            },
        )
        assert ledger.seal(store=w.store, signer=signer_from_connection()) is not None


@pytest.mark.parametrize(
    ("tamper", "kinds"),
    [
        (None, set()),
        (_replace_evidence, {"replaced"}),
        (_delete_evidence, {"missing"}),
        (_delete_v1_digest, {"digest_missing"}),
        (_rewrite_v1_digest, {"digest_altered"}),
        (_rewrite_v2_digest, {"digest_altered"}),
        (_forged_gap, {"chain_broken"}),
        (_junk, {"malformed"}),
        (_replace_report_packet_archive, {"replaced"}),
        (_replace_policy, {"replaced"}),
        (_lying_entry, {"altered", "lock", "bad_signature"}),
    ],
    ids=lambda v: getattr(v, "__name__", "clean").lstrip("_") if callable(v) or v is None else None,
)
def test_both_verifiers_agree(
    mixed: Store, tmp_path: Path, tamper: Callable[[Store], None] | None, kinds: set[str]
) -> None:
    if tamper is not None:
        tamper(mixed)
    py = _agree(mixed, tmp_path)
    assert {p["kind"] for p in py["problems"]} == kinds
    if tamper is None:
        assert py["ok"] and py["found"]["digests_valid"] == 2
        assert (
            py["found"]["ledgered_objects_verified"] == py["found"]["ledgered_objects"] == 12
        )  # 8 items, 2 report files, 1 archive, 1 policy bundle
        assert py["found"]["objects_by_kind"]["policy"] == {"requested": 1, "verified": 1}


def test_both_verifiers_agree_on_the_wrong_key_and_a_period(mixed: Store, tmp_path: Path) -> None:
    other = Ed25519Signer.from_base64(base64.b64encode(b"\x07" * 32).decode()).public_key_pem()
    py = _agree(mixed, tmp_path, pem=other)
    assert {p["kind"] for p in py["problems"]} == {"bad_signature"} and py["found"]["entries_untrusted"] > 0
    py = _agree(mixed, tmp_path, start="2026-04-02", end="2026-04-03")
    # items 1 and 2, and item 0 as the April archive's manifest evidence
    assert py["ok"] and py["found"]["evidence_objects"] == 3
    py = _agree(mixed, tmp_path, start="2026-05-01", end="2026-06-30")
    assert py["ok"] and py["found"]["objects_by_kind"].get("report") == {"requested": 2, "verified": 2}


def test_node_verifier_usage_errors_exit_2(mixed: Store, tmp_path: Path) -> None:
    node = require_tool("node", "nodejs", packages="nodejs", why="the independent verifier verify.mjs")
    key_file = tmp_path / "k.pem"
    key_file.write_bytes(mixed.public_pem)
    for args, message in [
        (
            [
                "--bucket",
                mixed.bucket,
                "--public-key",
                str(key_file),
                "--from",
                "2026-11-30",
                "--to",
                "2026-01-01",
            ],
            "--from 2026-11-30 is after --to 2026-01-01",
        ),
        (["--bucket", mixed.bucket], "--public-key FILE is required"),
        (["--bucket", "no-such-bucket-here", "--public-key", str(key_file)], "NoSuchBucket"),
    ]:
        run = subprocess.run(
            [node, str(VERIFY_MJS), *args],
            capture_output=True,
            text=True,
            env=_node_env(),
            timeout=120,
            check=False,
        )
        assert run.returncode == 2 and message in run.stderr, (args, run.stderr)
