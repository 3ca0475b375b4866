"""What Prowler adds on the demo estate: checks run and controls with evidence, native collectors only
vs native + Prowler (s3, iam, kms, ec2, cloudtrail), and the collection wall of each
(`airflow dags test evidence_collection`, same stack, same estate, same run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Figure, bench_stack, reset_database

SERVICES = ["s3", "iam", "kms", "ec2", "cloudtrail"]


def _collect(policy_dir: Path) -> tuple[float, set[str], set[str]]:
    """(wall seconds, collectors with evidence, controls with evidence) of one collection run."""
    from attestly.ledger import Ledger

    reset_database("attestly")
    airflow = str(Path(sys.executable).with_name("airflow"))
    today = datetime.now(UTC).date().isoformat()
    t0 = time.perf_counter()
    out = subprocess.run(
        [airflow, "dags", "test", "evidence_collection", today],
        capture_output=True, text=True, check=False, env={**os.environ, "ATTESTLY_POLICY_DIR": str(policy_dir)},
    )  # fmt: skip
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-2000:])
    with Ledger.connect() as ledger:
        items = [e.body for e in ledger.entries(kind="evidence") if e.body["result"] != "not_applicable"]
    collectors = {i["collector"] for i in items if i["collector"] != "prowler.scan"}
    return wall, collectors, {c for i in items for c in i["controls"]}


def run(*, quick: bool = False) -> list[Figure]:
    from attestly import config
    from attestly.connections import aws_client
    from attestly.scanners.prowler import prowler_binary
    from attestly_dev.aws_seed import seed_aws_estate
    from attestly_dev.stack import core

    prowler_binary()  # fails with the install command when Prowler is absent
    bench_stack("scanners")
    core.up(quiet=True)
    home = core.paths().home
    os.environ["ATTESTLY_EVIDENCE_BUCKET"] = f"bench-scanners-{int(time.time())}"
    aws_client("s3").create_bucket(
        Bucket=os.environ["ATTESTLY_EVIDENCE_BUCKET"], ObjectLockEnabledForBucket=True
    )
    seed_aws_estate()
    native = home / "policy-native"
    shutil.copytree(config.project_dir() / "include" / "policy", native, dirs_exist_ok=True)
    scanned = home / "policy-prowler"
    shutil.copytree(native, scanned, dirs_exist_ok=True)
    with (scanned / "aws.yaml").open("a") as f:
        f.write(f"sources:\n  prowler:\n    enabled: true\n    services: [{', '.join(SERVICES)}]\n")
    n_wall, n_checks, n_controls = _collect(native)
    p_wall, p_checks, p_controls = _collect(scanned)
    aws_native = {c for c in n_checks if not c.startswith("auditdb.")}
    return [
        Figure(
            name="checks with evidence, native + Prowler (demo estate, 2 accounts)",
            value=len(p_checks),
            unit="checks",
            baseline="native collectors only",
            baseline_value=len(n_checks),
            ratio=round(len(p_checks) / len(n_checks), 2),
            target="more",
            note=f"AWS: {len(aws_native)} native, {len(p_checks) - len(n_checks)} added by Prowler ({', '.join(SERVICES)})",
        ),
        Figure(
            name="policy controls with evidence, native + Prowler",
            value=len(p_controls),
            unit="controls",
            baseline="native collectors only",
            baseline_value=len(n_controls),
            ratio=round(len(p_controls) / max(1, len(n_controls)), 2),
            target="more",
            note=", ".join(sorted(p_controls - n_controls)) or "no control gained evidence only from Prowler",
        ),
        Figure(
            name="collection wall (airflow dags test), native + Prowler",
            value=round(p_wall, 1),
            unit="s",
            baseline="native collectors only",
            baseline_value=round(n_wall, 1),
            ratio=round(p_wall / n_wall, 2),
            target="—",
        ),
    ]
