"""The one ingestion path for the ecosystem's scanners, on recorded output: Prowler's OCSF (a real run
against the moto estate, tests/fixtures/prowler/) and Security Hub's ASFF; the translation of their
framework mappings; status from pass/fail, never severity; accepted risks."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from attestly.scanners.asff import parse_asff
from attestly.scanners.mapping import (
    coverage,
    hipaa_control,
    pci_control,
    prowler_check_controls,
    soc2_control,
    source_controls,
)
from attestly.scanners.model import SourceFinding, SourceFormatError
from attestly.scanners.normalize import to_items
from attestly.scanners.ocsf import parse_ocsf

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "prowler" / "moto-estate.ocsf.json"
START = datetime(2026, 11, 30, tzinfo=UTC)
END = START + timedelta(days=1)


def test_the_recorded_prowler_run_parses_to_its_findings() -> None:
    findings = parse_ocsf(FIXTURE.read_bytes(), name="moto-estate.ocsf.json")
    assert Counter(f.status for f in findings) == {"PASS": 64, "FAIL": 61, "MANUAL": 2}
    assert {f.account for f in findings} == {"123456789012"}
    mfa = [f for f in findings if f.check == "iam_user_mfa_enabled_console_access"]
    assert {(f.resource.rsplit("/", 1)[-1], f.status) for f in mfa} == {
        ("alice-nomfa", "FAIL"),
        ("bob", "PASS"),
    }
    assert all(f.collector == f"prowler.{f.check}" for f in findings)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{}", "expected a JSON array"),
        (b"[1]", "finding 0: not an object"),
        (b'[{"metadata": {}}]', "finding 0: no metadata.event_code"),
        (b'[{"metadata": {"event_code": "x"}, "status_code": "MAYBE"}]', "status_code 'MAYBE' is not one of"),
        (
            b'[{"metadata": {"event_code": "x"}, "status_code": "PASS", "resources": []}]',
            "no resources.0.name",
        ),
        (b"not json", "not JSON"),
    ],
)
def test_bad_prowler_output_is_named(raw: bytes, message: str) -> None:
    with pytest.raises(SourceFormatError, match=message) as info:
        parse_ocsf(raw, name="scan.ocsf.json")
    assert str(info.value).startswith("scan.ocsf.json")


def test_prowler_requirement_ids_translate_to_policy_ids() -> None:
    assert soc2_control("cc_6_1") == "soc2:CC6.1"
    assert soc2_control("cc_a_1_1") == "soc2:A1.1" and soc2_control("cc_c_1_2") == "soc2:C1.2"
    assert soc2_control("pi_1_4") == "soc2:PI1.4" and soc2_control("banana") is None
    assert hipaa_control("164_308_a_1_ii_b") == "hipaa:164.308(a)(1)(ii)(B)"
    assert hipaa_control("164_312_b") == "hipaa:164.312(b)"
    assert hipaa_control("164_312_a_2_iv") == "hipaa:164.312(a)(2)(iv)"
    assert hipaa_control("164_308_zz") is None
    assert pci_control("10.2.1") == "pci:10.2.1" and pci_control("10.x") is None
    # PCI: the requirement (Prowler's Section), never its synthetic per-rule id.
    assert "pci:8.4.1" in prowler_check_controls("iam_user_mfa_enabled_console_access")
    assert "pci:10.5.1" not in prowler_check_controls("iam_user_mfa_enabled_console_access")


def test_every_prowler_requirement_id_translates() -> None:
    """A translation that silently drops ids would hide controls: every id in the mappings parses."""
    from attestly.scanners.mapping import TRANSLATE, prowler_mappings

    bad = [
        (fw, rid)
        for per in prowler_mappings()["checks"].values()
        for fw, ids in per.items()
        for rid in ids
        if TRANSLATE[fw](rid) is None
    ]
    assert bad == []


def _sf(
    status: str, *, resource: str = "arn:aws:s3:::b1", check: str = "s3_bucket_object_versioning", **kw: Any
) -> SourceFinding:
    return SourceFinding(
        source="prowler", check=check, title="t", account="111111111111", region="us-east-1",
        resource=resource, status=status, detail=f"{resource} is {status}", **kw,
    )  # type: ignore[arg-type]  # fmt: skip


def _items(findings: list[SourceFinding], **kw: Any) -> list[Any]:
    return to_items(
        findings,
        controls_of=lambda f: ("soc2:A1.2",),
        period_start=START,
        period_end=END,
        today=date(2026, 12, 1),
        **kw,
    )


def test_status_comes_from_pass_fail_never_from_severity() -> None:
    (item,) = _items(
        [_sf("FAIL", severity="Low"), _sf("PASS", resource="arn:aws:s3:::b2", severity="Critical")]
    )
    assert item.collector == "prowler.s3_bucket_object_versioning" and item.result == "fail"
    assert {(f.resource, f.status) for f in item.findings} == {
        ("arn:aws:s3:::b1", "fail"),
        ("arn:aws:s3:::b2", "pass"),
    }
    assert item.scope == {"account": "111111111111", "region": "us-east-1"} and item.retroactive is False


def test_manual_and_muted_are_not_applicable_with_the_reason() -> None:
    (item,) = _items(
        [
            _sf("MANUAL"),
            _sf("FAIL", resource="arn:aws:s3:::b2", muted=True, muted_reason="muted by Prowler's mutelist"),
        ]
    )
    assert item.result == "not_applicable"
    details = sorted(f.detail for f in item.findings)
    assert details[0].startswith("manual check") and details[1] == "muted by Prowler's mutelist"


def test_an_accepted_risk_is_an_accepted_exception_until_it_expires() -> None:
    from attestly.policy.models import AcceptedRisk

    risk = AcceptedRisk(
        check="prowler.s3_bucket_object_*", resource="arn:aws:s3:::b1", reason="logs bucket, ticket R-12",
        approver="ciso@example.com", expires=date(2026, 12, 31),
    )  # fmt: skip
    (item,) = _items([_sf("FAIL"), _sf("PASS", resource="arn:aws:s3:::b2")], accepted=[risk])
    (accepted,) = [f for f in item.findings if f.status == "accepted"]
    assert item.result == "pass"  # every failure is accepted
    assert "approved by ciso@example.com until 2026-12-31: logs bucket, ticket R-12" in accepted.detail
    assert item.data["accepted"] == [
        {
            "resource": "arn:aws:s3:::b1",
            "approver": "ciso@example.com",
            "expires": "2026-12-31",
            "reason": "logs bucket, ticket R-12",
        }
    ]
    later = to_items([_sf("FAIL")], controls_of=lambda f: ("soc2:A1.2",), period_start=START, period_end=END,
                     today=date(2027, 1, 1), accepted=[risk])  # fmt: skip
    assert later[0].result == "fail" and "expired 2026-12-31" in later[0].findings[0].detail
    other = _items([_sf("FAIL", resource="arn:aws:s3:::b9")], accepted=[risk])
    assert other[0].result == "fail"  # another resource: not covered


def test_checks_that_map_to_no_policy_control_give_no_item() -> None:
    assert (
        to_items(
            [_sf("FAIL")],
            controls_of=lambda f: (),
            period_start=START,
            period_end=END,
            today=date(2026, 12, 1),
        )
        == []
    )


def _asff(control: str, status: str, *, account: str = "111111111111", **extra: Any) -> dict[str, Any]:
    return {
        "SchemaVersion": "2018-10-08",
        "Id": f"arn:aws:securityhub:us-east-1:{account}:security-control/{control}/finding/{status}",
        "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/securityhub",
        "GeneratorId": f"security-control/{control}",
        "AwsAccountId": account,
        "Region": "us-east-1",
        "Title": f"{control} title",
        "Description": f"{control} {status}",
        "Severity": {"Label": "CRITICAL"},
        "Resources": [{"Type": "AwsS3Bucket", "Id": f"arn:aws:s3:::bucket-{status.lower()}"}],
        "Compliance": {"Status": status, "SecurityControlId": control, "RelatedRequirements": ["PCI DSS v4.0.1/1.4.4", "NIST.800-53.r5 AC-21"]},
        "Workflow": {"Status": "NEW"},
        "RecordState": "ACTIVE",
        **extra,
    }  # fmt: skip


def test_security_hub_control_findings_parse_both_passed_and_failed() -> None:
    findings = parse_asff(
        [
            _asff("S3.8", "FAILED"),
            _asff("S3.8", "PASSED"),
            _asff("S3.8", "FAILED", RecordState="ARCHIVED"),  # not current: skipped
            {**_asff("S3.8", "FAILED"), "Compliance": {}},  # not a control finding (e.g. GuardDuty): skipped
            _asff(
                "IAM.5",
                "FAILED",
                Workflow={"Status": "SUPPRESSED"},
                Note={"Text": "break-glass user", "UpdatedBy": "secops"},
            ),
            _asff("KMS.4", "NOT_AVAILABLE"),
        ]
    )
    assert [(f.check, f.status, f.muted) for f in findings] == [
        ("S3.8", "FAIL", False), ("S3.8", "PASS", False), ("IAM.5", "FAIL", True), ("KMS.4", "NOT_AVAILABLE", False),
    ]  # fmt: skip
    assert findings[2].muted_reason == "suppressed in Security Hub by secops: break-glass user"
    assert findings[0].requirements == {"pci": ("1.4.4",)}
    assert "pci:1.4.4" in source_controls(findings[0])
    with pytest.raises(SourceFormatError, match=r"finding 0 \(S3\.8\): no Resources"):
        parse_asff([{**_asff("S3.8", "FAILED"), "Resources": []}])


def test_policy_coverage_names_what_the_policy_lacks_and_what_maps_to_nothing() -> None:
    from attestly.policy import load_policy

    cov = coverage(load_policy().controls, services=["s3"])
    assert cov["checks"] > 10 and cov["checks_mapped_to_policy_controls"] > 0
    # The full catalogs hold every SOC 2 criterion, HIPAA specification and PCI requirement Prowler maps
    # to, except PCI DSS Appendix A (multi-tenant service providers, SSL/early TLS, designated entities).
    missing = cov["controls_mapped_but_not_in_policy"]
    assert missing and all(m.startswith("pci:A") for m in missing), missing
    assert "s3_bucket_level_public_access_block" in cov["checks_mapping_to_no_control"]


def test_policy_names_unknown_prowler_checks_and_a_double_scope(tmp_path: Path) -> None:
    import shutil

    from attestly.policy import PolicyErrors, load_policy

    pdir = tmp_path / "policy"
    shutil.copytree(Path(__file__).resolve().parents[2] / "include" / "policy", pdir)
    shipped = (pdir / "aws.yaml").read_text()
    (pdir / "aws.yaml").write_text(
        shipped + "sources:\n  prowler:\n    enabled: true\n    checks: [s3_bucket_object_versionng]\n"
    )
    with pytest.raises(PolicyErrors) as info:
        load_policy(pdir)
    (err,) = info.value.errors
    assert (
        err.key_path == "sources.prowler.checks[0]"
        and "did you mean 's3_bucket_object_versioning'" in err.message
    )
    (pdir / "aws.yaml").write_text(
        shipped
        + "sources:\n  prowler:\n    enabled: true\n    services: [s3]\n    checks: [s3_bucket_object_versioning]\n"
    )
    with pytest.raises(PolicyErrors) as info:
        load_policy(pdir)
    (err,) = info.value.errors
    assert "give services or checks, not both" in err.message and err.file == "aws.yaml"
    json.dumps([str(e) for e in info.value.errors])
