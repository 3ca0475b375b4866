"""Real Prowler (slow: `make test-all`, which installs .venv-prowler): `evidence_collection` runs Prowler
5.46 through each account's audit role against the local stack's moto estate; its FAILs on the planted
resources become evidence and appear in the control reports under the controls Prowler's own mappings
(or the native check testing the same property) give them.

Time: about 2-3 minutes (Prowler scans s3, iam and kms of both accounts).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from attestly.connections import aws_client
from attestly.ledger import Ledger
from tests.conftest import recreate_database
from tests.integration.test_evidence_dag import dags_test
from tests.sysdeps import unavailable

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TODAY = datetime.now(UTC).date()
PROD = "111111111111"


def test_real_prowler_findings_reach_the_control_reports(
    stack: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from attestly.scanners.prowler import ProwlerUnavailable, prowler_binary
    from attestly_dev.aws_seed import seed_aws_estate

    try:
        prowler_binary()
    except ProwlerUnavailable as exc:
        unavailable(str(exc), packages="(none: `make setup-prowler`)")
    seed_aws_estate()
    recreate_database("attestly")
    bucket = f"prowler-{uuid.uuid4().hex[:10]}"
    aws_client("s3").create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    monkeypatch.setenv("ATTESTLY_EVIDENCE_BUCKET", bucket)
    pdir = tmp_path / "policy"
    shutil.copytree(Path(__file__).resolve().parents[2] / "include" / "policy", pdir)
    with (pdir / "aws.yaml").open("a") as f:
        f.write("sources:\n  prowler:\n    enabled: true\n    services: [s3, iam, kms]\n")
    run = dags_test("evidence_collection", TODAY, env={"ATTESTLY_POLICY_DIR": str(pdir)})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    with Ledger.connect() as ledger:
        items = [e.body for e in ledger.entries(kind="evidence")]
        scans = [e.body for e in ledger.entries(kind="scan")]
    assert sorted(s["account"] for s in scans) == [PROD, "222222222222"]
    assert all(s["prowler_version"].startswith("5.46") for s in scans)
    by = {(i["collector"], i["scope"].get("account")): i for i in items}
    mfa = by[("prowler.iam_user_mfa_enabled_console_access", PROD)]
    assert mfa["result"] == "fail"
    rotation = by[("prowler.kms_cmk_rotation_enabled", PROD)]
    assert rotation["result"] == "fail"

    out = tmp_path / "reports"
    day = (TODAY - timedelta(days=1)).isoformat()
    render = subprocess.run(
        [sys.executable, "-m", "attestly.cli", "report", "render", "--framework", "all", "--from", day, "--to", day,
         "--out", str(out), "--formats", "json"],
        capture_output=True, text=True, check=False, env={**os.environ, "ATTESTLY_POLICY_DIR": str(pdir)},
    )  # fmt: skip
    assert render.returncode in (0, 1), render.stderr[-3000:]
    reports = {
        json.loads(p.read_text())["control"]["id"]: json.loads(p.read_text())
        for p in out.rglob("controls/*.json")
    }
    planted = [
        (cid, e["resource"])
        for cid, r in reports.items()
        for e in r["exceptions"]
        if e["collector"] == "prowler.iam_user_mfa_enabled_console_access"
    ]
    assert ("soc2:CC6.1", f"arn:aws:iam::{PROD}:user/alice-nomfa") in planted
    assert any(
        e["collector"] == "prowler.kms_cmk_rotation_enabled"
        for r in reports.values()
        for e in r["exceptions"]
    )
