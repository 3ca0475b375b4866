"""Scanners as evidence, through `airflow dags test evidence_collection` on the real stack:

* Prowler: a stand-in executable (``ATTESTLY_PROWLER_BIN``) that answers exactly as Prowler 5.46 did
  against the moto estate (the recorded OCSF of tests/fixtures/prowler/, re-addressed to the account whose
  role it was given) — so the subprocess contract, raw-output storage, ledgering and ingestion run for
  real without the 2.3 GB scanner (the slow suite runs real Prowler);
* Security Hub: control findings imported into moto's Security Hub of an account and read back per
  account and region;
* accepted risks, and a native check that disagrees with a source check, as the control report shows them;
* `attestly verify` re-hashes the raw scanner output it ledgered.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from attestly.connections import aws_client
from attestly.ledger import Ledger
from tests.conftest import recreate_database
from tests.integration.test_evidence_dag import dags_test

pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).date()
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "prowler" / "moto-estate.ocsf.json"
PROD = "111111111111"

FAKE_PROWLER = f"""#!{sys.executable}
# Stands in for Prowler 5.46: writes the recorded OCSF output for the account its credentials belong to.
import json, sys, boto3
args = sys.argv[1:]
if args == ["--version"]:
    print("Prowler 5.46.0 (stand-in)")
    sys.exit(0)
out = args[args.index("--output-directory") + 1]
name = args[args.index("--output-filename") + 1]
account = boto3.client("sts").get_caller_identity()["Account"]
text = open({str(FIXTURE)!r}).read().replace("123456789012", account)
open(out + "/" + name + ".ocsf.json", "w").write(text)
sys.exit(3)  # FAIL findings present, as Prowler says it
"""


def _asff(control: str, status: str, resource: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "SchemaVersion": "2018-10-08",
        "Id": f"arn:aws:securityhub:us-east-1:{PROD}:security-control/{control}/finding/{uuid.uuid4()}",
        "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/securityhub",
        "GeneratorId": f"security-control/{control}",
        "AwsAccountId": PROD,
        "Region": "us-east-1",
        "Types": ["Software and Configuration Checks/Industry and Regulatory Standards"],
        "CreatedAt": now,
        "UpdatedAt": now,
        "Severity": {"Label": "HIGH"},
        "Title": f"{control} check",
        "Description": f"{control} {status} for {resource}",
        "Resources": [{"Type": "AwsIamUser", "Id": resource}],
        "Compliance": {"Status": status, "SecurityControlId": control, "RelatedRequirements": ["PCI DSS v4.0.1/8.4.2"]},
        "Workflow": {"Status": "NEW"},
        "RecordState": "ACTIVE",
        "ProductName": "Security Hub",
    }  # fmt: skip


@pytest.fixture
def scanner_policy(stack: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from attestly.collectors.aws._session import assume_role_session
    from attestly_dev.aws_seed import seed_aws_estate

    seed_aws_estate()
    recreate_database("attestly")
    bucket = f"scan-{uuid.uuid4().hex[:10]}"
    aws_client("s3").create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    monkeypatch.setenv("ATTESTLY_EVIDENCE_BUCKET", bucket)
    fake = tmp_path / "prowler"
    fake.write_text(FAKE_PROWLER)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("ATTESTLY_PROWLER_BIN", str(fake))
    # Security Hub in the prod account: MFA for the user the native check finds without it PASSED (a
    # disagreement to show), and another control FAILED.
    hub = assume_role_session(
        aws_conn_id="aws_default", role_arn=f"arn:aws:iam::{PROD}:role/OrganizationAccountAccessRole",
        session_name="seed-hub", region_name="us-east-1",
    ).client("securityhub", region_name="us-east-1")  # fmt: skip
    hub.batch_import_findings(
        Findings=[
            _asff("IAM.5", "PASSED", f"arn:aws:iam::{PROD}:user/alice-nomfa"),
            _asff("IAM.3", "FAILED", f"arn:aws:iam::{PROD}:user/carol-admin"),
        ]
    )
    pdir = tmp_path / "policy"
    shutil.copytree(Path(__file__).resolve().parents[2] / "include" / "policy", pdir)
    with (pdir / "aws.yaml").open("a") as f:
        f.write(
            "sources:\n"
            "  prowler:\n    enabled: true\n    services: [s3, iam, kms, ec2, cloudtrail]\n"
            "  security_hub:\n    enabled: true\n    mode: per_account\n"
            "accepted_risks:\n"
            "  - check: prowler.s3_bucket_object_versioning\n"
            "    resource: 'arn:aws:s3:::attestly-fixture-open'\n"
            f'    accounts: ["{PROD}"]\n'
            "    reason: scratch bucket, no business data (ticket RISK-7)\n"
            "    approver: ciso@example.com\n"
            f"    expires: {(TODAY + timedelta(days=30)).isoformat()}\n"
        )
    return pdir


def test_prowler_and_security_hub_findings_become_evidence_mapped_to_controls(
    scanner_policy: Path, tmp_path: Path
) -> None:
    run = dags_test("evidence_collection", TODAY, env={"ATTESTLY_POLICY_DIR": str(scanner_policy)})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with Ledger.connect() as ledger:
        items = [e.body for e in ledger.entries(kind="evidence")]
        scans = [e.body for e in ledger.entries(kind="scan")]
    # Prowler: one raw output per account, stored write-once and ledgered.
    assert sorted(s["account"] for s in scans) == [PROD, "222222222222"]
    assert all(s["source"] == "prowler" and s["exit_code"] == 3 for s in scans)
    prowler = [i for i in items if i["collector"].startswith("prowler.")]
    by = {(i["collector"], i["scope"]["account"]): i for i in prowler}
    mfa = by[("prowler.iam_user_mfa_enabled_console_access", PROD)]
    assert mfa["result"] == "fail" and mfa["findings"] == {"fail": 1, "pass": 1}
    assert "soc2:CC6.1" in mfa["controls"]  # through the native check testing the same property
    assert by[("prowler.scan", PROD)]["result"] == "pass"
    versioning = by[("prowler.s3_bucket_object_versioning", PROD)]
    assert versioning["findings"].get("accepted") == 1  # the accepted risk
    assert "prowler.iam_support_role_created" not in {c for c, _ in by}  # maps to no control
    assert "prowler.s3_bucket_level_public_access_block" in {c for c, _ in by}  # via its native twin
    # Security Hub, per account and region: both PASSED and FAILED are findings.
    hub = {i["collector"]: i for i in items if i["collector"].startswith("securityhub.")}
    assert hub["securityhub.IAM.5"]["result"] == "pass" and hub["securityhub.IAM.3"]["result"] == "fail"
    assert "pci:8.4.2" in hub["securityhub.IAM.5"]["controls"]

    # The report: scanner checks count, the accepted risk is listed with who and until when, and the
    # native MFA check (fail) disagreeing with Security Hub's IAM.5 (pass) is said.
    out = tmp_path / "reports"
    day = (TODAY - timedelta(days=1)).isoformat()
    render = subprocess.run(
        [sys.executable, "-m", "attestly.cli", "report", "render", "--framework", "all", "--from", day, "--to", day,
         "--out", str(out), "--formats", "json", "--json"],
        capture_output=True, text=True, check=False, env={**os.environ, "ATTESTLY_POLICY_DIR": str(scanner_policy)},
    )  # fmt: skip
    assert render.returncode in (0, 1), render.stderr[-3000:]
    reports = {
        json.loads(p.read_text())["control"]["id"]: json.loads(p.read_text())
        for p in out.rglob("controls/*.json")
    }
    cc61 = reports["soc2:CC6.1"]
    assert "prowler.iam_user_mfa_enabled_console_access" in cc61["source_checks"]
    assert {
        (g["native"], g["native_result"], g["source"], g["source_result"]) for g in cc61["disagreements"]
    } >= {("iam.mfa_console_users", "fail", "securityhub.IAM.5", "pass")}
    accepted = [a for r in reports.values() for a in r["accepted"]]
    assert accepted and all("approved by ciso@example.com" in a["detail"] for a in accepted)

    # `attestly verify` re-hashes the raw scanner output the ledger recorded.
    verify = subprocess.run(
        [sys.executable, "-m", "attestly.cli", "verify", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(verify.stdout)
    assert verify.returncode == 0, verify.stdout[-2000:]
    assert report["found"]["objects_by_kind"]["scan"] == {"requested": 2, "verified": 2}
