"""``attestly verify`` throughput at 10,000 and 100,000 evidence objects against the floor any verifier
pays: plain boto3 GETs of the same object versions with the same concurrency, in the same run. Peak
traced memory is compared between a quarter of the period and all of it, and between the two sizes (aim:
flat, within 10 %, from 10k to 100k)."""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import Figure, bench_stack, reset_database

BUCKET_PREFIX = f"bench-verify-{int(time.time())}"
DAYS = 40
START = datetime(2026, 1, 1, tzinfo=UTC)


def _items(n: int) -> list[Any]:
    from attestly.evidence import EvidenceItem, Finding

    per_day = max(1, n // DAYS)
    out = []
    for i in range(n):
        day = START + timedelta(days=min(i // per_day, DAYS - 1))
        findings = tuple(
            Finding(f"arn:aws:s3:::bucket-{i}-{k}", "pass", "encryption AES256") for k in range(8)
        )
        out.append(
            EvidenceItem(
                collector="s3.default_encryption",
                controls=("soc2:CC6.7", "hipaa:164.312(a)(2)(iv)", "pci:3.5.1"),
                period_start=day,
                period_end=day + timedelta(days=1),
                scope={"account": "111111111111", "region": "global", "shard": str(i)},
                retroactive=False,
                result="pass",
                findings=findings,
                data={"buckets": 8, "i": i},
            )
        )
    return out


#: Ledger entries appended per transaction while preparing (one ``Ledger.record_evidence_many`` call each).
LEDGER_BATCH = 5_000


class _NewBucketS3:
    """The S3 client, except that ``head_object`` answers 404 without a request: in a bucket this run has
    just created every key is absent, and on moto a HEAD costs about as much as the PUT it precedes. The
    PUT itself is the product's (``EvidenceStore.put_bytes``: ``IfNoneMatch="*"``, COMPLIANCE lock, the
    same key, body and metadata), and a key that did exist would still be refused by that precondition."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def head_object(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        raise ClientError(
            {
                "Error": {"Code": "404", "Message": "Not Found"},
                "ResponseMetadata": {"HTTPStatusCode": 404, "HTTPHeaders": {}},
            },
            "HeadObject",
        )


def prepare(n: int, bucket: str) -> dict[str, float]:
    """Store ``n`` items (parallel PUTs) in a new bucket, ledger them and seal once, as the product writes
    them: the same objects (``EvidenceStore.put_evidence``), ledger entries and digests
    (``Ledger.record_evidence_many``, byte for byte what ``record_evidence`` one at a time writes, in
    transactions of ``LEDGER_BATCH``). Returns the seconds each part took."""
    from attestly.connections import aws_client
    from attestly.ledger import Ledger
    from attestly.recording import evidence_summary
    from attestly.signing import signer_from_connection
    from attestly.store import EvidenceStore

    parts: dict[str, float] = {}
    t0 = time.perf_counter()
    reset_database("attestly")
    s3 = aws_client("s3")
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    store = EvidenceStore(bucket=bucket, s3=_NewBucketS3(s3), retention_days=3650)
    items = _items(n)
    parts["setup"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        stored = list(pool.map(store.put_evidence, items))
    parts["puts"] = time.perf_counter() - t0
    store.s3 = s3  # the digests: the product's full path
    t0 = time.perf_counter()
    with Ledger.connect() as ledger:
        for i in range(0, n, LEDGER_BATCH):
            ledger.record_evidence_many(
                (item.sha256, obj, evidence_summary(item), item.observation_sha256)
                for item, obj in zip(items[i : i + LEDGER_BATCH], stored[i : i + LEDGER_BATCH], strict=True)
            )
        parts["ledger"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ledger.seal(store=store, signer=signer_from_connection())
        parts["seal"] = time.perf_counter() - t0
    return parts


def measure(objects: int, concurrency: int) -> dict[str, Any]:
    """One size: a fresh bucket and ledger of ``objects`` items; verify vs plain GETs; peak memory."""
    from attestly.connections import aws_client
    from attestly.ledger import Ledger
    from attestly.signing import signer_from_connection
    from attestly.verify import verify_bucket

    bucket = f"{BUCKET_PREFIX}-{objects}"
    t0 = time.perf_counter()
    parts = prepare(objects, bucket)
    setup = time.perf_counter() - t0
    s3 = aws_client("s3", endpoint_url=None)
    public = signer_from_connection().public_key_pem()

    with Ledger.connect() as ledger:
        targets = [(e.body["key"], e.body["version_id"]) for e in ledger.entries(kind="evidence")]

    def get(target: tuple[str, str]) -> int:
        body = s3.get_object(Bucket=bucket, Key=target[0], VersionId=target[1])["Body"].read()
        return len(body)

    load_before = os.getloadavg()[0]
    # Warm both paths once (connection pools), then measure.
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(get, targets[:200]))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        total_bytes = sum(pool.map(get, targets))
    floor_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    report = verify_bucket(s3=s3, bucket=bucket, public_key_pem=public, concurrency=concurrency)
    verify_s = time.perf_counter() - t0

    # Memory in separate passes: tracemalloc slows allocation and would distort the timing above.
    tracemalloc.start()
    quarter = verify_bucket(
        s3=s3, bucket=bucket, public_key_pem=public, start=START, end=START + timedelta(days=DAYS // 4),
        concurrency=concurrency,
    )  # fmt: skip
    quarter_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.reset_peak()
    verify_bucket(s3=s3, bucket=bucket, public_key_pem=public, concurrency=concurrency)
    full_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    if not report.ok or not quarter.ok:
        raise RuntimeError(f"verify found problems in the benchmark bucket: {report.problems[:3]}")
    return {
        "objects": report.objects_verified,
        "quarter_objects": quarter.objects_verified,
        "verify_seconds": verify_s,
        "get_seconds": floor_s,
        "verify_rate": report.objects_verified / verify_s,
        "get_rate": len(targets) / floor_s,
        "mb": total_bytes / 2**20,
        "quarter_peak_mib": quarter_peak,
        "full_peak_mib": full_peak,
        "setup_seconds": setup,
        "setup_parts": {k: round(v, 1) for k, v in parts.items()},
        "load_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }


def run(*, objects: int = 10_000, large: int | None = 100_000, concurrency: int = 16) -> list[Figure]:
    from attestly import config
    from attestly_dev.stack import core

    os.environ["ATTESTLY_HOME"] = str(config.project_dir() / ".attestly" / "bench-verify")
    services = core.status()["services"]
    was_up = all(services.get(name, {}).get("healthy") for name in ("postgres", "moto"))
    bench_stack("verify")
    try:
        sizes = [objects] + ([large] if large and large > objects else [])
        results = [measure(n, concurrency) for n in sizes]
    finally:
        if not was_up:
            core.down()  # leave the machine as found: stop what this run started
    figures = []
    for r in results:
        n = r["objects"]
        figures += [
            Figure(
                name=f"attestly verify ({n:,} objects, {concurrency} threads)",
                value=r["verify_rate"],
                unit="objects/s",
                baseline="plain boto3 GET of the same versions, same concurrency",
                baseline_value=r["get_rate"],
                ratio=r["verify_rate"] / r["get_rate"],
                target=">= 0.7",
                note=(
                    f"{r['mb'] / r['verify_seconds']:.1f} MB/s vs {r['mb'] / r['get_seconds']:.1f} MB/s; "
                    f"setup {r['setup_seconds']:.0f}s ({r['setup_parts']}); load {r['load_1m']['before']}->{r['load_1m']['after']}"
                ),
            ),
            Figure(
                name=f"attestly verify peak traced memory, 1/4 of {n:,} objects vs all",
                value=r["full_peak_mib"],
                unit="MiB (all)",
                baseline=f"{r['quarter_objects']:,} objects",
                baseline_value=r["quarter_peak_mib"],
                ratio=r["full_peak_mib"] / r["quarter_peak_mib"] if r["quarter_peak_mib"] else 0.0,
                target="flat (ratio near 1)",
                note=f"{r['full_peak_mib'] * 2**20 / n:,.0f} bytes per object",
            ),
        ]
    if len(results) > 1:
        small, big = results[0], results[-1]
        figures.append(
            Figure(
                name=f"attestly verify peak traced memory, {big['objects']:,} vs {small['objects']:,} objects",
                value=big["full_peak_mib"],
                unit="MiB",
                baseline=f"{small['objects']:,} objects",
                baseline_value=small["full_peak_mib"],
                ratio=big["full_peak_mib"] / small["full_peak_mib"] if small["full_peak_mib"] else 0.0,
                target="<= 1.10 (flat)",
            )
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=int(os.environ.get("BENCH_VERIFY_OBJECTS", "10000")))
    parser.add_argument("--large", type=int, default=int(os.environ.get("BENCH_VERIFY_LARGE", "100000")))
    args = parser.parse_args()
    for f in run(objects=args.objects, large=args.large):
        print(f)


if __name__ == "__main__":
    main()
