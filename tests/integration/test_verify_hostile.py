"""`attestly verify` against a bucket writer: junk under ``digests/`` is a named problem with exit 1, never
a traceback; and every object kind the ledger records — report files and packets, archive objects,
certificates — is re-hashed at its recorded version, so replacing one is caught."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from attestly.ledger import Ledger, digest_key
from attestly.signing import signer_from_connection
from tests.integration import test_ledger_verify as lv
from tests.integration.test_ledger_verify import DAY, World

pytestmark = pytest.mark.integration

world = lv.world  # the fixture


def _cli(world: World, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    pem = tmp_path / "public.pem"
    pem.write_bytes(world.public_pem)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "attestly.cli",
            "verify",
            "--bucket",
            world.bucket,
            "--public-key",
            str(pem),
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"digest": [], "signature": ""}', "digest: missing or not an object"),
        (b'{"digest": {"schema": "attestly.digest/v1", "entries": [1]}, "signature": "AA=="}', "digest."),
        (b'{"digest": {"n": 1e400}, "signature": "AA=="}', "out of range"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
        (
            b'{"digest": {"schema": "attestly.digest/v1", "signature_algorithm": "ed25519", "merkle_root": "",'
            b' "entries": [{"seq": 1, "kind": "evidence", "recorded_at": "x", "body": {}, "prev_hash": "'
            + b"0" * 64
            + b'", "entry_hash": "'
            + b"0" * 64
            + b'"}]}, "signature": "AA=="}',
            "",
        ),
    ],
)
def test_junk_under_digests_is_reported_not_a_crash(
    world: World, tmp_path: Path, body: bytes, detail: str
) -> None:
    key = digest_key(999_999, 999_999)
    world.s3.put_object(Bucket=world.bucket, Key=key, Body=body)
    run = _cli(world, tmp_path, "--json")
    assert run.returncode == 1, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    report = json.loads(run.stdout)
    named = [p for p in report["problems"] if p["key"] == key]
    assert named and detail in named[0]["detail"]
    # Everything genuine still verifies.
    assert report["found"]["evidence_objects_verified"] == 10


def test_reversed_range_is_bad_input(world: World, tmp_path: Path) -> None:
    run = _cli(world, tmp_path, "--from", "2026-11-30", "--to", "2026-01-01")
    assert run.returncode == 2 and "--from 2026-11-30 is after --to 2026-01-01" in run.stderr


def _ledger_report_and_archive(world: World) -> dict[str, Any]:
    retain = world.store.retain_until_for(DAY + timedelta(days=90))
    index = world.store.put_bytes(
        "reports/pci/2026-Q2/0123456789abcdef/index.html", b"<h1>PCI</h1>", retain_until=retain
    )
    sums = world.store.put_bytes(
        "reports/pci/2026-Q2/0123456789abcdef/SHA256SUMS", b"ab  index.html\n", retain_until=retain
    )
    packet = world.store.put_bytes(
        "reports/pci/2026-Q2/0123456789abcdef/attestly-pci-packet.zip",
        b"PK\x05\x06" + bytes(18),
        retain_until=retain,
    )
    archive = world.store.put_bytes(
        "archive/audit.events/pci-audit/2026-04/b.parquet.aesgcm", b"\x01" * 4096, retain_until=retain
    )
    with Ledger.connect() as ledger:
        ledger.append(
            "report",
            {
                "framework": "pci",
                "period": {"start": "2026-04-01", "end": "2026-06-30", "days": 91, "label": "2026-Q2"},
                "objects": [
                    {
                        "path": "index.html",
                        "key": index.key,
                        "version_id": index.version_id,
                        "sha256": index.sha256,
                    },
                    {
                        "path": "SHA256SUMS",
                        "key": sums.key,
                        "version_id": sums.version_id,
                        "sha256": sums.sha256,
                    },
                ],
                "packet": {"key": packet.key, "version_id": packet.version_id, "sha256": packet.sha256},
                "retain_until": retain.isoformat(),
            },
            dedupe_key="report:hostile",
        )
        ledger.append(
            "archive",
            {
                "manifest": {
                    "batch": {"month": "2026-04", "retain_until": retain.isoformat()},
                    "object": {
                        "bucket": world.bucket,
                        "key": archive.key,
                        "version_id": archive.version_id,
                        "sha256": archive.sha256,
                    },
                },
                "evidence": {
                    "key": f"objects/sha256/{world.shas[0]}.json",
                    "version_id": _version_of(world, 0),
                    "sha256": world.shas[0],
                },
            },
            dedupe_key="archive:hostile",
        )
        assert ledger.seal(store=world.store, signer=signer_from_connection()) is not None
    return {"index": index, "sums": sums, "packet": packet, "archive": archive}


def _version_of(world: World, n: int) -> str:
    key = f"objects/sha256/{world.shas[n]}.json"
    return str(world.s3.head_object(Bucket=world.bucket, Key=key)["VersionId"])


def test_report_files_packets_and_archive_objects_are_verified_and_their_replacement_caught(
    world: World,
) -> None:
    stored = _ledger_report_and_archive(world)
    report = world.verify()
    assert report.ok, report.problems
    assert report.by_kind["report"] == {"requested": 3, "verified": 3}
    assert report.by_kind["archive"] == {"requested": 1, "verified": 1}

    for name in ("sums", "packet", "archive"):
        obj = stored[name]
        world.s3.put_object(Bucket=world.bucket, Key=obj.key, Body=b"forged " + name.encode())
    report = world.verify()
    replaced = {p.key for p in report.problems if p.kind == "replaced"}
    assert replaced == {stored["sums"].key, stored["packet"].key, stored["archive"].key}
    assert not report.ok
    # The period filter applies to them too: a range outside 2026-Q2 does not look at them.
    outside = world.verify(start=DAY + timedelta(days=400), end=DAY + timedelta(days=401))
    assert outside.ok and "report" not in outside.by_kind
