"""From the sources' own framework mappings to ``controls.yaml`` ids — a checked translation.

* **Prowler**: its compliance files say which checks serve which requirement (``prowler_mappings.json``,
  derived from Prowler 5.46's ``soc2_aws``, ``hipaa_aws`` and ``pci_4.0_aws`` by
  ``scripts/prowler-mappings.py``). Their ids are translated: SOC 2 ``cc_6_1`` → ``soc2:CC6.1``
  (``cc_a_1_1`` → ``soc2:A1.1``, ``cc_c_1_2`` → ``soc2:C1.2``, ``pi_1_4`` → ``soc2:PI1.4``); HIPAA
  ``164_308_a_1_ii_b`` → ``hipaa:164.308(a)(1)(ii)(B)``; PCI DSS requirement ``10.2.1`` →
  ``pci:10.2.1``.
* **Security Hub**: PCI DSS from the finding's ``RelatedRequirements``; SOC 2 and HIPAA through the
  Prowler check that tests the same property (:data:`SECURITYHUB_TO_PROWLER`).

Only ids the policy has become an item's controls; :func:`coverage` says which mapped controls the policy
lacks and which checks map to none (``attestly policy check``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from attestly.scanners.model import SourceFinding

MAPPINGS_FILE = Path(__file__).with_name("prowler_mappings.json")

#: Security Hub controls and the Prowler check testing the same property.
SECURITYHUB_TO_PROWLER: dict[str, str] = {
    "IAM.5": "iam_user_mfa_enabled_console_access",
    "IAM.3": "iam_rotate_access_key_90_days",
    "IAM.4": "iam_no_root_access_key",
    "IAM.6": "iam_root_hardware_mfa_enabled",
    "IAM.9": "iam_root_mfa_enabled",
    "IAM.1": "iam_policy_no_administrative_privileges",
    "IAM.8": "iam_user_accesskey_unused",
    "IAM.15": "iam_password_policy_minimum_length_14",
    "IAM.16": "iam_password_policy_reuse_24",
    "S3.1": "s3_account_level_public_access_blocks",
    "S3.8": "s3_bucket_level_public_access_block",
    "S3.5": "s3_bucket_secure_transport_policy",
    "S3.14": "s3_bucket_object_versioning",
    "S3.15": "s3_bucket_object_lock",
    "KMS.4": "kms_cmk_rotation_enabled",
    "CloudTrail.1": "cloudtrail_multi_region_enabled",
    "CloudTrail.2": "cloudtrail_kms_encryption_enabled",
    "CloudTrail.4": "cloudtrail_log_file_validation_enabled",
    "EC2.13": "ec2_securitygroup_allow_ingress_from_internet_to_tcp_port_22",
    "EC2.14": "ec2_securitygroup_allow_ingress_from_internet_to_tcp_port_3389",
    "RDS.3": "rds_instance_storage_encrypted",
    "RDS.11": "rds_instance_backup_enabled",
    "Config.1": "config_recorder_all_regions_enabled",
    "GuardDuty.1": "guardduty_is_enabled",
}

#: Attestly's native collectors and the source checks that test the same property: where both report on
#: one account and day and disagree, the control report says so.
NATIVE_EQUIVALENTS: dict[str, tuple[str, ...]] = {
    "iam.mfa_console_users": ("prowler.iam_user_mfa_enabled_console_access", "securityhub.IAM.5"),
    "iam.access_key_age": ("prowler.iam_rotate_access_key_90_days", "securityhub.IAM.3"),
    "iam.admin_policies": ("prowler.iam_policy_no_administrative_privileges", "securityhub.IAM.1"),
    "s3.public_access_block": ("prowler.s3_bucket_level_public_access_block", "securityhub.S3.8"),
    "s3.tls_only": ("prowler.s3_bucket_secure_transport_policy", "securityhub.S3.5"),
    "s3.versioning": ("prowler.s3_bucket_object_versioning", "securityhub.S3.14"),
    "s3.object_lock": ("prowler.s3_bucket_object_lock", "securityhub.S3.15"),
    "s3.default_encryption": ("prowler.s3_bucket_default_encryption",),
    "kms.key_rotation": ("prowler.kms_cmk_rotation_enabled", "securityhub.KMS.4"),
    "cloudtrail.multi_region_trail": (
        "prowler.cloudtrail_log_file_validation_enabled",
        "prowler.cloudtrail_multi_region_enabled",
        "securityhub.CloudTrail.1",
        "securityhub.CloudTrail.4",
    ),
    "ec2.open_security_groups": (
        "prowler.ec2_securitygroup_allow_ingress_from_internet_to_tcp_port_22",
        "securityhub.EC2.13",
    ),
    "rds.storage_encryption": ("prowler.rds_instance_storage_encrypted", "securityhub.RDS.3"),
    "rds.backup_retention": ("prowler.rds_instance_backup_enabled", "securityhub.RDS.11"),
    "config.recorder": ("prowler.config_recorder_all_regions_enabled", "securityhub.Config.1"),
}

_ROMAN = {"i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"}


def soc2_control(req: str) -> str | None:
    """``cc_6_1`` → ``soc2:CC6.1``; ``cc_a_1_1`` → ``soc2:A1.1``; ``cc_c_1_2`` → ``soc2:C1.2``;
    ``pi_1_4`` → ``soc2:PI1.4``; ``p_1_1`` → ``soc2:P1.1``."""
    m = re.fullmatch(r"cc_(a|c)_(\d+)_(\d+)", req)
    if m:
        return f"soc2:{m[1].upper()}{m[2]}.{m[3]}"
    m = re.fullmatch(r"(cc|pi|p)_(\d+)_(\d+)", req)
    if m:
        return f"soc2:{m[1].upper()}{m[2]}.{m[3]}"
    return None


def hipaa_control(req: str) -> str | None:
    """``164_308_a_1_ii_b`` → ``hipaa:164.308(a)(1)(ii)(B)``: letters, then numbers, then roman
    numerals, then capital letters, as the CFR nests them."""
    parts = req.split("_")
    if len(parts) < 2 or parts[0] != "164" or not parts[1].isdigit():
        return None
    levels = (
        lambda p: p if re.fullmatch(r"[a-z]", p) else None,
        lambda p: p if p.isdigit() else None,
        lambda p: p if p in _ROMAN else None,
        lambda p: p.upper() if re.fullmatch(r"[a-z]", p) else None,
    )
    nested = []
    for depth, p in enumerate(parts[2:]):
        part = levels[depth](p) if depth < len(levels) else None
        if part is None:
            return None
        nested.append(part)
    return f"hipaa:164.{parts[1]}" + "".join(f"({p})" for p in nested)


def pci_control(req: str) -> str | None:
    """``10.2.1`` → ``pci:10.2.1``; Appendix A requirements too (``A1.2.3`` → ``pci:A1.2.3``)."""
    return f"pci:{req}" if re.fullmatch(r"(?:A\d+|\d+)(?:\.\d+)+", req) else None


TRANSLATE = {"soc2": soc2_control, "hipaa": hipaa_control, "pci": pci_control}


@lru_cache(maxsize=1)
def prowler_mappings() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(MAPPINGS_FILE.read_text(encoding="utf-8"))
    return data


def prowler_check_controls(check: str) -> set[str]:
    """Every controls.yaml-style id Prowler maps ``check`` to (whether or not the policy has it)."""
    out: set[str] = set()
    for framework, reqs in prowler_mappings()["checks"].get(check, {}).items():
        translate = TRANSLATE.get(framework)
        for r in reqs:
            cid = translate(r) if translate else None
            if cid:
                out.add(cid)
    return out


def source_controls(finding: SourceFinding) -> set[str]:
    """The controls a source finding's check maps to, translated (before intersecting with the policy)."""
    if finding.source == "prowler":
        return prowler_check_controls(finding.check)
    out = {c for r in finding.requirements.get("pci", ()) if (c := pci_control(r))}
    twin = SECURITYHUB_TO_PROWLER.get(finding.check)
    if twin:
        out |= {c for c in prowler_check_controls(twin) if not c.startswith("pci:")}
    return out


def coverage(policy_controls: Iterable[str], *, services: Iterable[str] = ()) -> dict[str, Any]:
    """For ``attestly policy check``: Prowler checks of ``services`` (all services when empty) mapped to
    controls, the mapped controls the policy lacks, and the checks that map to no control at all."""
    have = set(policy_controls)
    wanted = set(services)
    checks = [c for c in prowler_mappings()["all_checks"] if not wanted or c.split("_", 1)[0] in wanted]
    mapped = {c: prowler_check_controls(c) for c in checks}
    lacking = sorted({cid for ids in mapped.values() for cid in ids} - have)
    return {
        "prowler_version": prowler_mappings()["prowler_version"],
        "checks": len(checks),
        "checks_mapped_to_policy_controls": sum(1 for ids in mapped.values() if ids & have),
        "controls_mapped_but_not_in_policy": lacking,
        "checks_mapping_to_no_control": sorted(c for c, ids in mapped.items() if not ids),
    }
