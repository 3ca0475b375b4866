"""Policy as code: the shipped policy loads, and every kind of mistake is reported at file, line, key."""

from __future__ import annotations

import json
import re
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest

from attestly.policy import (
    KNOWN_COLLECTORS,
    Policy,
    PolicyError,
    PolicyErrors,
    add_months,
    check_policy_cli,
    load_policy,
    policy_dir,
)
from attestly.policy.dates import dispose_after, online_until

pytestmark = pytest.mark.unit

SHIPPED = Path(__file__).resolve().parents[2] / "include" / "policy"

REQUIRED_CONTROLS = {
    "soc2": ["CC6.1", "CC6.2", "CC6.3", "CC6.6", "CC6.7", "CC7.1", "CC7.2", "CC7.3", "CC8.1", "C1.2", "A1.2"],
    "hipaa": [
        "164.312(a)(1)",
        "164.312(a)(2)(i)",
        "164.312(a)(2)(iv)",
        "164.312(b)",
        "164.312(c)(1)",
        "164.312(d)",
        "164.312(e)(1)",
        "164.316(b)(2)",
        "164.310(d)(2)(i)",
    ],
    "pci": ["3.2.1", "3.5.1", "8.4.2", "10.2.1", "10.3.3", "10.5.1"],
}

#: The full catalogs: SOC 2 TSC 2017 (CC1.1-CC9.2, A1.1-A1.3, C1.1-C1.2, PI1.1-PI1.5, P1.1-P8.1), every HIPAA
#: Security Rule standard and implementation specification of 164.308-164.316, PCI DSS v4.0.1 requirements.
CATALOG_SIZES = {"soc2": 61, "hipaa": 69, "pci": 250}

BRIEF_COLLECTORS = {
    "iam.mfa_console_users", "iam.root_account", "iam.access_key_age", "iam.inactive_users",
    "iam.password_policy", "iam.admin_policies", "s3.default_encryption", "s3.public_access_block",
    "s3.versioning", "s3.object_lock", "s3.tls_only", "kms.key_rotation", "cloudtrail.multi_region_trail",
    "ec2.open_security_groups", "rds.storage_encryption", "rds.backup_retention", "config.recorder",
    "auditdb.authorization_outcomes", "auditdb.authentication_failures", "auditdb.privileged_changes",
    "auditdb.phi_access_without_actor", "auditdb.event_volume",
    "quality.audit_log", "archive.manifest", "disposal.certificate", "aws.population", "archive.restore_test",
}  # fmt: skip


# --------------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATTESTLY_POLICY_DIR", raising=False)
    monkeypatch.delenv("ATTESTLY_AWS_ENDPOINT_URL", raising=False)


@pytest.fixture
def pdir(tmp_path: Path) -> Path:
    """A private copy of the shipped policy to break."""
    target = tmp_path / "policy"
    shutil.copytree(SHIPPED, target)
    return target


def edit(directory: Path, name: str, old: str, new: str, *, count: int = 1) -> None:
    """Replace ``old`` (which must occur exactly ``count`` times) with ``new`` in one policy file."""
    path = directory / name
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == count, f"{old!r} occurs {text.count(old)} times in {name}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def control_index(directory: Path, control_id: str) -> int:
    """Position of ``control_id`` in controls.yaml's ``controls:`` list (as error key paths count)."""
    ids = re.findall(r"^  - id: (\S+)$", (directory / "controls.yaml").read_text(), flags=re.M)
    return ids.index(control_id)


def edit_control(directory: Path, control_id: str, old: str, new: str) -> None:
    """Replace ``old`` (exactly once) inside the entry of ``control_id`` only."""
    path = directory / "controls.yaml"
    text = path.read_text(encoding="utf-8")
    start = text.index(f"  - id: {control_id}\n")
    end = text.find("\n  - id: ", start + 1)
    end = len(text) if end < 0 else end
    block = text[start:end]
    assert block.count(old) == 1, f"{old!r} occurs {block.count(old)} times in the entry of {control_id}"
    path.write_text(text[:start] + block.replace(old, new) + text[end:], encoding="utf-8")


def line_of(directory: Path, name: str, needle: str, *, nth: int = 1) -> int:
    """1-based line of the ``nth`` line of a file containing ``needle``."""
    hits = [i for i, line in enumerate((directory / name).read_text().splitlines(), 1) if needle in line]
    assert len(hits) >= nth, f"{needle!r} not found {nth} times in {name}"
    return hits[nth - 1]


def errors_of(directory: Path, **kwargs: object) -> list[PolicyError]:
    with pytest.raises(PolicyErrors) as info:
        load_policy(directory, **kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    return info.value.errors


def only_error(directory: Path) -> PolicyError:
    errors = errors_of(directory)
    assert len(errors) == 1, "\n".join(map(str, errors))
    return errors[0]


# --------------------------------------------------------------------------------------------------
# the shipped policy


def test_shipped_policy_loads() -> None:
    policy = load_policy(SHIPPED)
    assert isinstance(policy, Policy)
    for framework, refs in REQUIRED_CONTROLS.items():
        ids = {f"{framework}:{r}" for r in refs}
        assert ids <= set(policy.controls), ids - set(policy.controls)
    assert {f: len(policy.controls_for_framework(f)) for f in policy.frameworks} == CATALOG_SIZES
    assert set(policy.frameworks) == {"soc2", "hipaa", "pci"}
    assert policy.frameworks["pci"].version == "v4.0.1"
    for control in policy.controls.values():
        assert control.collectors or control.manual, control.id
        assert control.owner.endswith("@example.com")
        assert all(ref in policy.controls for ref in control.maps_to)
        assert all(ref.split(":")[0] != control.framework for ref in control.maps_to)
    assert len(policy.fingerprint) == 64


def test_known_collectors_are_exactly_the_brief() -> None:
    assert KNOWN_COLLECTORS == BRIEF_COLLECTORS


def test_collector_mapping_is_sensible() -> None:
    policy = load_policy(SHIPPED)
    assert {"soc2:CC6.1", "hipaa:164.312(d)", "pci:8.4.2"} <= set(
        policy.controls_for_collector("iam.mfa_console_users")
    )
    assert {"soc2:CC6.7", "hipaa:164.312(a)(2)(iv)", "pci:3.5.1"} <= set(
        policy.controls_for_collector("s3.default_encryption")
    )
    assert {"soc2:CC7.2", "hipaa:164.312(b)", "hipaa:164.312(c)(1)", "pci:10.2.1"} <= set(
        policy.controls_for_collector("quality.audit_log")
    )
    assert {"pci:10.5.1", "pci:10.3.3", "hipaa:164.316(b)(2)", "soc2:C1.2"} <= set(
        policy.controls_for_collector("archive.manifest")
    )
    assert {"soc2:C1.2", "hipaa:164.310(d)(2)(i)", "pci:3.2.1"} <= set(
        policy.controls_for_collector("disposal.certificate")
    )
    used = {c for control in policy.controls.values() for c in control.collectors}
    assert used == KNOWN_COLLECTORS  # every collector serves some control
    assert policy.controls_for_collector("iam.root_account") == sorted(
        policy.controls_for_collector("iam.root_account")
    )
    with pytest.raises(KeyError):
        policy.controls_for_collector("iam.nope")


def test_shipped_sources_retention_aws() -> None:
    policy = load_policy(SHIPPED)
    assert policy.sources.audit_table.schema_name == "audit"
    assert policy.sources.audit_table.table == "events"
    assert policy.sources.column("timestamp") == "occurred_at"
    assert policy.sources.column("sequence") == "seq"
    assert policy.sources.source_names == ["auth-service", "ehr-api", "billing", "admin-console"]
    assert policy.sources.source("admin-console").quiet_allowed is True
    assert policy.sources.audit_table.enums["result"] == ("success", "failure", "denied")

    retention = policy.retention
    assert retention.evidence.retention_days == 2557
    assert [c.name for c in retention.classes] == ["hipaa-audit", "pci-audit", "security-audit"]
    hipaa = retention.class_named("hipaa-audit")
    assert (hipaa.online_months, hipaa.retention_months, hipaa.kms_key_deletion_window_days) == (12, 72, 7)
    assert hipaa.legal_basis.citation == "45 CFR 164.316(b)(2)(i)"
    assert retention.selector_column == "standard"
    assert [c.name for c in retention.classes_for_row("general")] == ["security-audit"]
    assert retention.classes_for_row(None) == []
    assert retention.classes_for_row("unknown") == []

    aws = policy.aws
    assert [a.id for a in aws.accounts] == ["111111111111", "222222222222"]
    assert aws.account("prod").regions == ("us-east-1", "eu-west-1")
    assert aws.account("222222222222").name == "shared-services"
    assert all(a.endpoint is None for a in aws.accounts)  # ${ATTESTLY_AWS_ENDPOINT_URL:-} unset
    assert aws.requires_object_lock("acme-audit-archive")
    assert aws.requires_object_lock("acme-evidence")
    assert not aws.requires_object_lock("acme-logs")
    assert aws.password_policy.minimum_length == 14


def test_endpoint_interpolated_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTESTLY_AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    policy = load_policy(SHIPPED)
    assert {a.endpoint for a in policy.aws.accounts} == {"http://127.0.0.1:5000"}
    explicit = load_policy(SHIPPED, environ={"ATTESTLY_AWS_ENDPOINT_URL": "https://s3.internal:9000"})
    assert explicit.aws.accounts[0].endpoint == "https://s3.internal:9000"


def test_policy_dir_default_and_env(monkeypatch: pytest.MonkeyPatch, pdir: Path) -> None:
    assert policy_dir() == SHIPPED
    monkeypatch.setenv("ATTESTLY_POLICY_DIR", str(pdir))
    assert policy_dir() == pdir
    assert load_policy().directory == pdir


def test_policy_is_frozen() -> None:
    policy = load_policy(SHIPPED)
    with pytest.raises(ValueError):
        policy.retention.classes[0].online_months = 1  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------
# one error of each kind: file, line, key path, value


def test_bad_type(pdir: Path) -> None:
    edit(pdir, "retention.yaml", "online_months: 12", "online_months: twelve")
    err = only_error(pdir)
    assert (err.file, err.line) == (
        "retention.yaml",
        line_of(pdir, "retention.yaml", "online_months: twelve"),
    )
    assert err.key_path == "classes[0].online_months"
    assert err.value == "twelve"
    assert "valid integer" in err.message and "'twelve'" in err.message
    assert str(err).startswith(f"retention.yaml:{err.line}: classes[0].online_months: ")


def test_quoted_number_is_a_type_error(pdir: Path) -> None:
    edit(pdir, "aws.yaml", "rds_min_backup_retention_days: 7", 'rds_min_backup_retention_days: "7"')
    err = only_error(pdir)
    assert (err.file, err.key_path, err.value) == ("aws.yaml", "rds_min_backup_retention_days", "7")


def test_unquoted_account_id_is_a_type_error(pdir: Path) -> None:
    edit(pdir, "aws.yaml", '- id: "222222222222"', "- id: 222222222222")
    err = only_error(pdir)
    assert err.key_path == "accounts[1].id"
    assert err.line == line_of(pdir, "aws.yaml", "- id: 222222222222")
    assert err.value == 222222222222


def test_unknown_key_typo(pdir: Path) -> None:
    edit_control(pdir, "soc2:CC6.2", "    owner: it-ops@example.com\n", "    ownr: it-ops@example.com\n")
    i = control_index(pdir, "soc2:CC6.2")
    errors = errors_of(pdir)
    typos = [e for e in errors if e.key_path.endswith(".ownr")]
    assert len(typos) == 1
    first = typos[0]
    assert first.file == "controls.yaml"
    assert first.key_path == f"controls[{i}].ownr"
    assert first.line == line_of(pdir, "controls.yaml", "ownr:")
    assert first.value == "it-ops@example.com"
    assert "unknown key 'ownr'" in first.message and "did you mean 'owner'" in first.message
    missing = [e for e in errors if e.key_path == f"controls[{i}].owner"]
    assert missing and "missing required key 'owner'" in missing[0].message
    assert missing[0].line == line_of(pdir, "controls.yaml", "- id: soc2:CC6.2")


def test_unknown_top_level_key(pdir: Path) -> None:
    edit(pdir, "aws.yaml", "inactive_user_days: 90", "inactive_user_days: 90\ninactive_users_days: 30")
    err = only_error(pdir)
    assert (err.key_path, err.value) == ("inactive_users_days", 30)
    assert err.line == line_of(pdir, "aws.yaml", "inactive_users_days")
    assert "did you mean 'inactive_user_days'" in err.message


def test_unknown_control_in_maps_to(pdir: Path) -> None:
    edit_control(pdir, "soc2:CC6.7", "    maps_to: [", "    maps_to: [pci:3.5.9, ")
    err = only_error(pdir)
    assert err.file == "controls.yaml"
    assert err.line == line_of(pdir, "controls.yaml", "pci:3.5.9")
    assert err.key_path == f"controls[{control_index(pdir, 'soc2:CC6.7')}].maps_to[0]"
    assert err.value == "pci:3.5.9"
    assert "unknown control 'pci:3.5.9'" in err.message


def test_maps_to_same_framework_and_malformed_id(pdir: Path) -> None:
    for cid in ("soc2:CC6.2", "soc2:CC6.3"):
        edit_control(pdir, cid, "    maps_to: [", "    maps_to: [soc2:CC6.1, iso:A.5, ")
    errors = errors_of(pdir)
    a, b = control_index(pdir, "soc2:CC6.2"), control_index(pdir, "soc2:CC6.3")
    assert {(e.key_path, e.value) for e in errors} == {
        (f"controls[{a}].maps_to[0]", "soc2:CC6.1"),
        (f"controls[{a}].maps_to[1]", "iso:A.5"),
        (f"controls[{b}].maps_to[0]", "soc2:CC6.1"),
        (f"controls[{b}].maps_to[1]", "iso:A.5"),
    }
    assert any("same framework" in e.message for e in errors)
    assert any("not a control id" in e.message for e in errors)


def test_unknown_collector(pdir: Path) -> None:
    edit_control(pdir, "soc2:CC6.2", "      - iam.access_key_age\n", "      - iam.foo\n")
    i = control_index(pdir, "soc2:CC6.2")
    err = only_error(pdir)
    assert err.file == "controls.yaml"
    assert err.line == line_of(pdir, "controls.yaml", "iam.foo")
    assert err.key_path == f"controls[{i}].collectors[1]"
    assert err.value == "iam.foo"
    assert err.message.startswith("unknown collector 'iam.foo'")
    assert "(known: archive.manifest," in err.message
    assert str(err) == f"controls.yaml:{err.line}: controls[{i}].collectors[1]: {err.message}"


def test_collector_typo_gets_a_suggestion(pdir: Path) -> None:
    edit_control(pdir, "soc2:CC6.2", "      - iam.access_key_age\n", "      - iam.access_key_ages\n")
    err = only_error(pdir)
    assert "did you mean 'iam.access_key_age'" in err.message


def test_control_without_collectors_needs_manual(pdir: Path) -> None:
    edit_control(
        pdir,
        "hipaa:164.310(d)(2)(i)",
        "    collectors:\n      - disposal.certificate\n",
        "    collectors: []  # emptied\n",
    )
    err = only_error(pdir)
    assert err.key_path == f"controls[{control_index(pdir, 'hipaa:164.310(d)(2)(i)')}].collectors"
    assert err.line == line_of(pdir, "controls.yaml", "# emptied")
    edit_control(
        pdir,
        "hipaa:164.310(d)(2)(i)",
        "    collectors: []  # emptied\n",
        "    collectors: []\n    manual: true\n    cadence: annual\n    requested: Media disposal records\n",
    )
    assert load_policy(pdir).controls["hipaa:164.310(d)(2)(i)"].manual is True


def test_manual_controls_need_a_cadence_and_what_is_requested(pdir: Path) -> None:
    edit_control(pdir, "soc2:CC1.1", "    cadence: annual\n", "")
    err = only_error(pdir)
    assert err.key_path == f"controls[{control_index(pdir, 'soc2:CC1.1')}].cadence"
    assert "how often evidence is due" in err.message


def test_hipaa_entries_say_required_or_addressable(pdir: Path) -> None:
    edit_control(pdir, "hipaa:164.312(b)", "    specification: standard\n", "")
    err = only_error(pdir)
    assert "standard, required or addressable" in err.message
    policy = load_policy(SHIPPED)
    specs = {c.specification for c in policy.controls_for_framework("hipaa")}
    assert specs == {"standard", "required", "addressable"}
    assert policy.controls["hipaa:164.308(a)(1)(ii)(A)"].specification == "required"
    assert policy.controls["hipaa:164.312(a)(2)(iv)"].specification == "addressable"


def test_duplicate_control_id(pdir: Path) -> None:
    i = control_index(pdir, "pci:10.5.1")
    edit(pdir, "controls.yaml", "- id: pci:10.5.1\n", "- id: pci:10.3.3\n")
    errors = errors_of(pdir)
    dup = [e for e in errors if "duplicate id" in e.message]
    assert len(dup) == 1
    assert dup[0].key_path == f"controls[{i}].id"
    assert dup[0].line == line_of(pdir, "controls.yaml", "- id: pci:10.3.3", nth=2)


def test_retention_below_hipaa_minimum(pdir: Path) -> None:
    edit(pdir, "retention.yaml", "retention_months: 72", "retention_months: 60")
    err = only_error(pdir)
    assert err.file == "retention.yaml"
    assert err.line == line_of(pdir, "retention.yaml", "retention_months: 60")
    assert err.key_path == "classes[0].retention_months"
    assert err.value == 60
    assert "HIPAA minimum of 72 months" in err.message


def test_pci_online_below_three_months(pdir: Path) -> None:
    edit(pdir, "retention.yaml", "online_months: 3\n    retention_months: 12\n",
         "online_months: 2\n    retention_months: 12\n")  # fmt: skip
    err = only_error(pdir)
    assert err.line == line_of(pdir, "retention.yaml", "online_months: 2")
    assert err.key_path == "classes[1].online_months"
    assert err.value == 2
    assert "PCI minimum of 3 months" in err.message


def test_pci_retention_below_twelve_and_retention_shorter_than_online(pdir: Path) -> None:
    edit(pdir, "retention.yaml", "retention_months: 12\n", "retention_months: 2\n")
    errors = errors_of(pdir)
    assert {e.key_path for e in errors} == {"classes[1].retention_months"}
    messages = " | ".join(e.message for e in errors)
    assert "shorter than online_months 3" in messages and "PCI minimum of 12 months" in messages


def test_selector_on_unknown_column(pdir: Path) -> None:
    edit(pdir, "retention.yaml", "select: {column: standard, values: [pci]}",
         "select: {column: colour, values: [pci]}")  # fmt: skip
    err = only_error(pdir)
    assert err.line == line_of(pdir, "retention.yaml", "column: colour")
    assert err.key_path == "classes[1].select.column"
    assert err.value == "colour"
    assert "unknown logical column 'colour'" in err.message


def test_selector_on_unmapped_column(pdir: Path) -> None:
    edit(pdir, "sources.yaml", "    standard: standard              #", "    #")
    edit(pdir, "sources.yaml", "    standard: [hipaa, pci, soc2, general]\n", "")
    errors = errors_of(pdir)
    assert [(e.file, e.key_path) for e in errors] == [
        ("retention.yaml", f"classes[{i}].select.column") for i in range(3)
    ]
    assert "not mapped in sources.yaml" in errors[0].message


def test_selector_value_not_in_enum(pdir: Path) -> None:
    edit(pdir, "retention.yaml", "values: [soc2, general]", "values: [soc2, generl]")
    err = only_error(pdir)
    assert (err.file, err.key_path, err.value) == ("retention.yaml", "classes[2].select.values[1]", "generl")
    assert err.line == line_of(pdir, "retention.yaml", "generl")
    assert "not a value of 'standard'" in err.message


def test_enum_value_in_no_class(pdir: Path) -> None:
    edit(pdir, "retention.yaml", "values: [soc2, general]", "values: [soc2]")
    err = only_error(pdir)
    assert (err.key_path, err.value) == ("classes", ["general"])
    assert err.line == line_of(pdir, "retention.yaml", "classes:")
    assert "would never be archived" in err.message


def test_sources_reference_unmapped_columns(pdir: Path) -> None:
    edit(pdir, "sources.yaml", "actor, action, result, severity]", "actor, action, result, severity, colour]")
    edit(pdir, "sources.yaml", "    ip: ip\n", "")
    edit(pdir, "sources.yaml", "free_text: [metadata,", "free_text: [ip, metadata,")
    errors = errors_of(pdir)
    assert [(e.key_path, e.value) for e in errors] == [
        ("audit_table.required[10]", "colour"),
        ("audit_table.free_text[0]", "ip"),
    ]
    assert errors[0].line == line_of(pdir, "sources.yaml", "colour")
    assert "unknown logical column" in errors[0].message
    assert "'ip' is not mapped under columns" in errors[1].message


def test_unknown_logical_column_key(pdir: Path) -> None:
    edit(pdir, "sources.yaml", "    ip: ip\n", "    ip_address: ip\n")
    err = only_error(pdir)
    assert err.key_path == "audit_table.columns.ip_address"
    assert err.line == line_of(pdir, "sources.yaml", "ip_address")
    assert "unknown logical column 'ip_address'" in err.message


def test_duplicate_key(pdir: Path) -> None:
    edit(
        pdir, "sources.yaml", "  heartbeat_action: heartbeat", "  heartbeat_action: heartbeat\n  table: logs"
    )
    err = only_error(pdir)
    assert err.file == "sources.yaml"
    assert err.line == line_of(pdir, "sources.yaml", "table: logs")
    assert err.key_path == "audit_table.table"
    assert err.value == "table"
    assert f"first defined on line {line_of(pdir, 'sources.yaml', 'table: events')}" in err.message


def test_unset_variable_without_default(pdir: Path) -> None:
    edit(pdir, "aws.yaml", 'endpoint_url: "${ATTESTLY_AWS_ENDPOINT_URL:-}"\n  - id',
         'endpoint_url: "${ATTESTLY_TEST_UNSET_VAR}"\n  - id')  # fmt: skip
    err = only_error(pdir)
    assert err.file == "aws.yaml"
    assert err.line == line_of(pdir, "aws.yaml", "ATTESTLY_TEST_UNSET_VAR")
    assert err.key_path == "accounts[0].endpoint_url"
    assert err.value == "${ATTESTLY_TEST_UNSET_VAR}"
    assert "'ATTESTLY_TEST_UNSET_VAR' is not set" in err.message
    policy = load_policy(pdir, environ={"ATTESTLY_TEST_UNSET_VAR": "http://localhost:5000"})
    assert policy.aws.accounts[0].endpoint == "http://localhost:5000"


def test_interpolation_defaults_and_escapes(pdir: Path) -> None:
    edit(pdir, "aws.yaml", "role/AttestlyAudit\"\n    regions: [us-east-1]",
         "role/${ROLE:-Attestly}Audit\"\n    regions: [us-east-1]")  # fmt: skip
    edit(
        pdir, "aws.yaml", "regions: [us-east-1, eu-west-1]", 'regions: ["${REGION_A:-us-east-2}", eu-west-1]'
    )
    edit(pdir, "aws.yaml", '"*-evidence"]', '"*-evidence", "cost$$center-${SUFFIX:-x}"]')
    policy = load_policy(pdir, environ={})
    assert policy.aws.accounts[1].role_arn == "arn:aws:iam::222222222222:role/AttestlyAudit"
    assert policy.aws.accounts[0].regions == ("us-east-2", "eu-west-1")
    assert policy.aws.object_lock_required_buckets[-1] == "cost$center-x"
    set_env = load_policy(pdir, environ={"ROLE": "X", "REGION_A": "ap-south-1", "SUFFIX": ""})
    assert set_env.aws.accounts[1].role_arn.endswith(":role/XAudit")
    assert set_env.aws.accounts[0].regions[0] == "ap-south-1"
    assert set_env.aws.object_lock_required_buckets[-1] == "cost$center-x"  # empty counts as unset


def test_malformed_reference(pdir: Path) -> None:
    edit(pdir, "aws.yaml", "role/AttestlyAudit\"\n    regions: [us-east-1]",
         "role/${1BAD}\"\n    regions: [us-east-1]")  # fmt: skip
    errors = errors_of(pdir)
    assert errors[0].key_path == "accounts[1].role_arn" and "malformed reference" in errors[0].message


def test_yaml_syntax_error(pdir: Path) -> None:
    edit(
        pdir,
        "retention.yaml",
        "select: {column: standard, values: [pci]}",
        "select: {column: standard, values: [pci}",
    )
    err = only_error(pdir)
    assert err.file == "retention.yaml"
    assert err.line == line_of(pdir, "retention.yaml", "values: [pci}")
    assert err.message.startswith("YAML syntax error")


def test_yaml_bad_indentation_reports_line(pdir: Path) -> None:
    edit(pdir, "aws.yaml", "  require_numbers: true", "   require_numbers: true")
    err = only_error(pdir)
    assert err.file == "aws.yaml"
    assert err.line == line_of(pdir, "aws.yaml", "   require_numbers: true")
    assert "YAML syntax error" in err.message


def test_empty_and_missing_files(pdir: Path) -> None:
    (pdir / "sources.yaml").write_text("# nothing here\n")
    (pdir / "aws.yaml").unlink()
    errors = errors_of(pdir)
    assert [(e.file, e.line, e.message.split(" ")[0]) for e in errors if e.file != "retention.yaml"] == [
        ("sources.yaml", None, "file"),
        ("aws.yaml", None, "file"),
    ]
    assert "file not found" in errors[-1].message


def test_account_checks(pdir: Path) -> None:
    edit(pdir, "aws.yaml", "arn:aws:iam::222222222222:role/AttestlyAudit", "arn:aws:iam::333333333333:role/X")
    edit(pdir, "aws.yaml", "regions: [us-east-1]\n", "regions: [us-east-1, useast2]\n")
    edit(pdir, "aws.yaml", "admin_ports: [22, 3389]", "admin_ports: [22, 70000]")
    errors = errors_of(pdir)
    assert [(e.key_path, e.value) for e in errors] == [
        ("accounts[1].role_arn", "arn:aws:iam::333333333333:role/X"),
        ("accounts[1].regions[1]", "useast2"),
        ("admin_ports[1]", 70000),
    ]
    assert "not in 222222222222" in errors[0].message


def test_retention_class_name_duplicate_and_window_range(pdir: Path) -> None:
    edit(pdir, "retention.yaml", "- name: security-audit", "- name: pci-audit")
    edit(pdir, "retention.yaml", "kms_key_deletion_window_days: 7 ", "kms_key_deletion_window_days: 3 ")
    errors = errors_of(pdir)
    assert [(e.key_path, e.value) for e in errors] == [
        ("classes[1].kms_key_deletion_window_days", 3),
        ("classes[2].name", "pci-audit"),
    ]


def test_evidence_retention_below_hipaa_documentation_minimum(pdir: Path) -> None:
    edit(pdir, "retention.yaml", "retention_days: 2557", "retention_days: 365")
    err = only_error(pdir)
    assert (err.key_path, err.value) == ("evidence.retention_days", 365)


def test_multiple_errors_across_files_reported_at_once(pdir: Path) -> None:
    edit_control(pdir, "soc2:CC6.2", "      - iam.access_key_age\n", "      - iam.foo\n")
    edit(pdir, "retention.yaml", "retention_months: 72", "retention_months: 60")
    edit(pdir, "sources.yaml", "clock_skew_seconds: 300", "clock_skew_seconds: -1")
    edit(pdir, "aws.yaml", "inactive_user_days: 90", "inactive_user_days: 90\ninactive_user_days: 30")
    errors = errors_of(pdir)
    assert [(e.file, e.key_path) for e in errors] == [
        ("controls.yaml", f"controls[{control_index(pdir, 'soc2:CC6.2')}].collectors[1]"),
        ("retention.yaml", "classes[0].retention_months"),
        ("sources.yaml", "audit_table.clock_skew_seconds"),
        ("aws.yaml", "inactive_user_days"),
    ]
    assert all(e.line is not None for e in errors)
    with pytest.raises(PolicyErrors) as info:
        load_policy(pdir)
    text = str(info.value)
    assert text.startswith("invalid policy: 4 errors")
    assert all(str(e) in text for e in errors)


# --------------------------------------------------------------------------------------------------
# the CLI entry point


def test_check_policy_cli_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_policy_cli(SHIPPED, as_json=False) == 0
    out = capsys.readouterr().out
    assert "policy OK" in out and "SOC 2: 61" in out and "HIPAA: 69" in out and "PCI DSS: 250" in out
    assert "retention classes: 3" in out and "sources: 4" in out and "aws accounts: 2" in out
    assert check_policy_cli(SHIPPED, as_json=True) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] is True
    assert summary["controls"]["by_framework"] == CATALOG_SIZES
    assert summary["retention_classes"] == ["hipaa-audit", "pci-audit", "security-audit"]
    assert len(summary["accounts"]) == 2


def test_check_policy_cli_errors(pdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit_control(pdir, "soc2:CC6.2", "      - iam.access_key_age\n", "      - iam.foo\n")
    edit(pdir, "aws.yaml", "inactive_user_days: 90", "inactive_user_days: ninety")
    assert check_policy_cli(pdir, as_json=False) == 2
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"controls.yaml:{line_of(pdir, 'controls.yaml', 'iam.foo')}: ")
    assert lines[1].startswith(f"aws.yaml:{line_of(pdir, 'aws.yaml', 'ninety')}: inactive_user_days: ")
    assert "2 errors" in captured.err

    assert check_policy_cli(pdir, as_json=True) == 2
    payload = json.loads(capsys.readouterr().out)
    assert isinstance(payload, list) and len(payload) == 2
    assert set(payload[0]) == {"file", "line", "key_path", "value", "message"}
    assert payload[1]["value"] == "ninety"
    assert payload[0]["key_path"] == f"controls[{control_index(pdir, 'soc2:CC6.2')}].collectors[1]"


def test_check_policy_cli_uses_env_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATTESTLY_POLICY_DIR", str(tmp_path / "nowhere"))
    assert check_policy_cli(None, as_json=True) == 2


# --------------------------------------------------------------------------------------------------
# AWS Organizations


ORG = """organization:
  management_role_arn: "arn:aws:iam::999999999999:role/AttestlyOrgReader"
  member_role_name: AttestlyAudit
  regions: all_enabled
  include_ous: [ou-ab12-cdefgh12, r-ab12]
  exclude_accounts: ["333333333333"]
exclude_regions: [ap-south-1]
collection:
  max_tasks: 64
  max_parallel: 12
"""


def test_an_organization_and_all_enabled_regions_load(pdir: Path) -> None:
    edit(pdir, "aws.yaml", "    regions: [us-east-1]\n", "    regions: all_enabled\n")
    with (pdir / "aws.yaml").open("a") as f:
        f.write(ORG)
    aws = load_policy(pdir).aws
    assert aws.accounts[1].regions == ("all_enabled",)
    assert aws.organization is not None and aws.organization.member_role_name == "AttestlyAudit"
    assert aws.organization.include_ous == ("ou-ab12-cdefgh12", "r-ab12")
    assert aws.exclude_regions == ("ap-south-1",) and aws.collection.max_tasks == 64


def test_an_organization_alone_is_enough_but_nothing_at_all_is_not(pdir: Path) -> None:
    text = (pdir / "aws.yaml").read_text()
    head, _, rest = text.partition("accounts:\n")
    rest = rest[rest.index("\n# Buckets") :]
    (pdir / "aws.yaml").write_text(head + "accounts: []\n" + ORG + rest)
    assert load_policy(pdir).aws.accounts == ()
    (pdir / "aws.yaml").write_text(head + "accounts: []\n" + rest)
    err = only_error(pdir)
    assert err.file == "aws.yaml" and "assesses nothing" in err.message


def test_organization_values_are_checked_with_their_line(pdir: Path) -> None:
    with (pdir / "aws.yaml").open("a") as f:
        f.write(ORG.replace("ou-ab12-cdefgh12", "engineering").replace("max_tasks: 64", "max_tasks: 5000"))
    edit(pdir, "aws.yaml", "    regions: [us-east-1]\n", "    regions: [all_enabled, us-east-1]\n")
    errors = errors_of(pdir)
    got = {(e.key_path, e.line) for e in errors}
    assert ("organization.include_ous[0]", line_of(pdir, "aws.yaml", "include_ous:")) in got
    assert ("collection.max_tasks", line_of(pdir, "aws.yaml", "max_tasks:")) in got
    assert any(e.key_path == "accounts[1].regions" and "not both" in e.message for e in errors)
    assert any("not an organization root or OU id" in e.message for e in errors)


# --------------------------------------------------------------------------------------------------
# bounded loading (the policy is read at DAG-parse time)

BILLION_LAUGHS = """
lol1: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
lol2: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
lol3: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
lol4: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
lol5: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
lol6: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
lol7: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
lol8: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
lol9: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_a_billion_laughs_is_refused_in_under_a_second(
    pdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    with (pdir / "sources.yaml").open("a", encoding="utf-8") as f:
        f.write(BILLION_LAUGHS)
    started = time.perf_counter()
    code = check_policy_cli(pdir, as_json=False)
    elapsed = time.perf_counter() - started
    assert code == 2 and elapsed < 1.0, elapsed
    err = capsys.readouterr()
    assert "aliases expand to more than 10,000 values" in err.out + err.err
    assert "sources.yaml:" in err.out + err.err


def test_a_few_aliases_are_still_fine(pdir: Path) -> None:
    edit(pdir, "aws.yaml", "regions: [us-east-1, eu-west-1]", "regions: &r [us-east-1, eu-west-1]")
    edit(pdir, "aws.yaml", "regions: [us-east-1]", "regions: *r")
    policy = load_policy(pdir)
    assert [list(a.regions) for a in policy.aws.accounts] == [["us-east-1", "eu-west-1"]] * 2


def test_deep_nesting_and_oversized_files_are_refused(pdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from attestly.policy import loader

    with (pdir / "sources.yaml").open("a", encoding="utf-8") as f:
        f.write("deep: " + "[" * 5_000 + "]" * 5_000 + "\n")
    (err,) = errors_of(pdir)
    assert "nested" in err.message and err.file == "sources.yaml"
    shutil.copy(SHIPPED / "sources.yaml", pdir / "sources.yaml")
    monkeypatch.setattr(loader, "MAX_POLICY_FILE_BYTES", 100)
    errs = errors_of(pdir)
    assert {e.file for e in errs} == {"controls.yaml", "retention.yaml", "sources.yaml", "aws.yaml"}
    assert all("a policy file may hold at most 100" in e.message for e in errs)


def test_bytes_that_are_not_utf8_are_reported_with_their_line(pdir: Path) -> None:
    path = pdir / "retention.yaml"
    lines = path.read_bytes().split(b"\n")
    lines[4] = lines[4] + b" caf\xe9"
    path.write_bytes(b"\n".join(lines))
    err = only_error(pdir)
    assert (err.file, err.line) == ("retention.yaml", 5)
    assert "not UTF-8: byte 0xe9 at line 5" in err.message


def test_a_bad_subject_id_pattern_is_named(pdir: Path) -> None:
    edit(pdir, "sources.yaml", "  schema: audit\n", "  schema: audit\n  subject_id_pattern: '[unclosed'\n")
    err = only_error(pdir)
    assert err.file == "sources.yaml" and "subject_id_pattern" in err.key_path
    assert "not a valid regular expression" in err.message


# --------------------------------------------------------------------------------------------------
# month arithmetic


def _all_days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


DAYS = _all_days(date(1999, 11, 1), date(2005, 3, 31))  # covers 2000 (leap, /400) and 2004 (leap)
OFFSETS = [-25, -13, -12, -1, 0, 1, 2, 3, 11, 12, 13, 24, 48, 72, 100]


def test_add_months_examples() -> None:
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2023, 1, 31), 1) == date(2023, 2, 28)
    assert add_months(date(2100, 1, 31), 1) == date(2100, 2, 28)  # not a leap year
    assert add_months(date(2000, 1, 31), 1) == date(2000, 2, 29)  # leap year
    assert add_months(date(2024, 3, 31), -1) == date(2024, 2, 29)
    assert add_months(date(2024, 2, 29), 12) == date(2025, 2, 28)
    assert add_months(date(2024, 2, 29), 48) == date(2028, 2, 29)
    assert add_months(date(2024, 12, 15), 1) == date(2025, 1, 15)
    assert add_months(date(2024, 1, 15), -1) == date(2023, 12, 15)
    assert add_months(date(2024, 5, 31), 0) == date(2024, 5, 31)
    with pytest.raises(OverflowError):
        add_months(date(9999, 12, 1), 1)
    with pytest.raises(TypeError):
        from datetime import datetime

        add_months(datetime(2024, 1, 1), 1)


def test_add_months_properties() -> None:
    for d in DAYS:
        for n in OFFSETS:
            r = add_months(d, n)
            # lands in the right month
            assert (r.year * 12 + r.month) - (d.year * 12 + d.month) == n
            # keeps the day, or clamps to the last day of a shorter month
            if r.day != d.day:
                assert r.day < d.day
                assert (r + timedelta(days=1)).day == 1
            # exact inverse for days every month has
            if d.day <= 28:
                assert add_months(r, -n) == d
            # additive for month starts
            if d.day == 1:
                assert add_months(r, 5) == add_months(d, n + 5)
        assert add_months(d, 0) == d


def test_add_months_monotonic() -> None:
    for n in OFFSETS:
        previous = add_months(DAYS[0], n)
        for d in DAYS[1:]:
            current = add_months(d, n)
            assert current >= previous, (d, n)
            previous = current
        for d in DAYS[::37]:
            assert add_months(d, n) <= add_months(d, n + 1)


def test_online_until_and_dispose_after_examples() -> None:
    policy = load_policy(SHIPPED)
    hipaa = policy.retention.class_named("hipaa-audit")
    pci = policy.retention.class_named("pci-audit")
    security = policy.retention.class_named("security-audit")
    assert hipaa.online_until(date(2024, 1, 1)) == date(2025, 2, 1)
    assert hipaa.dispose_after(date(2024, 1, 1)) == date(2030, 2, 1)
    assert pci.online_until(date(2024, 11, 1)) == date(2025, 3, 1)
    assert pci.dispose_after(date(2024, 11, 1)) == date(2025, 12, 1)
    assert security.online_until(date(2023, 12, 1)) == date(2024, 4, 1)
    assert security.dispose_after(date(2023, 12, 1)) == date(2025, 2, 1)
    assert online_until(date(2024, 2, 1), 0) == date(2024, 3, 1)
    assert dispose_after(date(2024, 2, 1), 1) == date(2024, 4, 1)
    with pytest.raises(ValueError):
        hipaa.online_until(date(2024, 1, 15))


def test_windows_hold_for_every_record_of_the_month() -> None:
    """The last day of a month's records is still at least the full period old when its window ends."""
    for month in [add_months(date(2020, 1, 1), i) for i in range(60)]:
        last_day = add_months(month, 1) - timedelta(days=1)
        for months in (3, 12, 13, 72):
            until = online_until(month, months)
            assert until.day == 1
            assert until > add_months(last_day, months) >= add_months(month, months)
            assert dispose_after(month, months) == until


def test_effective_retention_for_rows_in_several_classes() -> None:
    retention = load_policy(SHIPPED).retention
    both = retention.effective_for(["pci", "hipaa"])
    assert both is not None
    assert both.classes == ("pci-audit", "hipaa-audit")
    assert (both.online_months, both.retention_months) == (12, 72)
    assert both.online_until(date(2024, 1, 1)) == date(2025, 2, 1)
    assert both.dispose_after(date(2024, 1, 1)) == date(2030, 2, 1)
    mixed = retention.effective_for(["pci", "soc2"])
    assert mixed is not None and (mixed.online_months, mixed.retention_months) == (3, 13)
    assert retention.effective_for(["nope", None]) is None
    assert retention.effective_for_classes(["security-audit"]) is not None
    with pytest.raises(KeyError):
        retention.effective_for_classes(["nope"])


def test_the_catalogs_have_their_real_shape() -> None:
    """Every criterion, specification and requirement in scope of the three frameworks; maps_to resolves
    and is symmetric; summaries are short paraphrases of our own (unique, never the title repeated)."""
    policy = load_policy(SHIPPED)
    soc2 = {c.id.removeprefix("soc2:") for c in policy.controls_for_framework("soc2")}
    expected_soc2 = {
        *(f"CC{a}.{b}" for a, n in {1: 5, 2: 3, 3: 4, 4: 2, 5: 3, 6: 8, 7: 5, 8: 1, 9: 2}.items() for b in range(1, n + 1)),
        "A1.1", "A1.2", "A1.3", "C1.1", "C1.2", *(f"PI1.{i}" for i in range(1, 6)),
        "P1.1", "P2.1", "P3.1", "P3.2", "P4.1", "P4.2", "P4.3", "P5.1", "P5.2",
        *(f"P6.{i}" for i in range(1, 8)), "P7.1", "P8.1",
    }  # fmt: skip
    assert soc2 == expected_soc2
    hipaa = policy.controls_for_framework("hipaa")
    assert all(
        c.id.startswith(("hipaa:164.308", "hipaa:164.310", "hipaa:164.312", "hipaa:164.314", "hipaa:164.316"))
        for c in hipaa
    )
    standards = [c.id for c in hipaa if c.specification == "standard"]
    assert (
        "hipaa:164.308(a)(1)(i)" in standards and "hipaa:164.312(a)(1)" in standards and len(standards) >= 18
    )
    pci = {c.id.removeprefix("pci:") for c in policy.controls_for_framework("pci")}
    assert {f"{n}.1.1" for n in range(1, 13)} <= pci
    assert {"10.2.1.1", "10.2.1.7", "8.3.10.1", "9.5.1.2.1", "12.10.7", "11.3.2"} <= pci
    summaries = [c.summary for c in policy.controls.values()]
    assert len(set(summaries)) == len(summaries)
    for c in policy.controls.values():
        assert 20 <= len(c.summary) <= 320, c.id
        assert c.summary.strip().lower() != c.title.strip().lower(), c.id
        for m in c.maps_to:
            assert c.id in policy.controls[m].maps_to, f"{c.id} maps to {m} but not back"
        if c.manual:
            assert c.cadence and c.requested and len(c.requested) <= 200, c.id
    # Manual evidence and collectors between them evidence every control.
    assert all(c.collectors or c.manual for c in policy.controls.values())
