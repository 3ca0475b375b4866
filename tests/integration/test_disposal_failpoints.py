"""Kill key disposal at every step boundary (``os._exit(137)``, like ``kill -9``), run it again, and check
that each key ends destroyed once, verified once and covered by exactly one certificate, ledgered once."""

from __future__ import annotations

import pytest

from attestly.failpoints import DISPOSAL_FAILPOINTS, EXIT_CODE
from tests.integration import test_archive_support as support
from tests.integration.test_disposal_support import (
    PCI_DUE,
    PCI_KEY,
    archived_backlog,
    disposal_rows,
    ledger_bodies,
    live_subjects,
    phi_of,
    request_and_approve,
    run_disposal,
    status_counts,
    subject_key,
)

pytestmark = pytest.mark.integration

archive_env = support.archive_env  # the fixture


@pytest.mark.parametrize("failpoint", DISPOSAL_FAILPOINTS)
def test_killed_at_failpoint_then_rerun_destroys_once_and_certifies_once(
    archive_env: str, failpoint: str
) -> None:
    archived_backlog(hipaa=False, per_day=200)
    (x,) = live_subjects(1)
    key_x = subject_key(x)
    rid = request_and_approve(x)
    expected = {PCI_KEY, key_x}

    killed = run_disposal(PCI_DUE, run_id="killed-run", env={"ATTESTLY_FAILPOINTS": failpoint})
    assert killed.returncode == EXIT_CODE, killed.stdout[-2000:] + killed.stderr[-3000:]
    assert f"failpoint {failpoint}" in killed.stderr
    _state_after_kill(failpoint)

    again = run_disposal(PCI_DUE, run_id="rerun")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    state = disposal_rows()
    # Destroyed once: the registry names the run that did it; the material is gone.
    assert set(state["destroyed"]) == expected
    assert all(has is False for _at, _run, has in state["destroyed"].values())
    first = state["destroyed"][sorted(expected)[0]][1]
    assert first == "killed-run"  # the key destroyed before the kill keeps its original run
    # One 'destroyed' and one 'verified' step per key; one certificate over both; the request completed.
    assert sorted((k, s) for k, s, _ in state["steps"]) == sorted(
        (k, s) for k in expected for s in ("destroyed", "verified")
    )
    assert len(state["certificates"]) == 1
    (cert_id,) = [c[0] for c in state["certificates"]]
    assert state["certified"] == dict.fromkeys(expected, cert_id)
    assert state["completions"] == {rid: cert_id}
    certs = [b for b in ledger_bodies("disposal") if b.get("event") == "certificate"]
    assert [c["certificate_id"] for c in certs] == [cert_id]
    assert [b["request_id"] for b in ledger_bodies("erasure") if b["event"] == "completed"] == [rid]
    assert set(status_counts(phi_of(x))["live"]) == {"erased"}

    # A third run changes nothing.
    assert run_disposal(PCI_DUE, run_id="third").returncode == 0
    assert disposal_rows() == state


def _state_after_kill(failpoint: str) -> None:
    """The kill really happened where it says."""
    state = disposal_rows()
    steps = {(k, s) for k, s, _ in state["steps"]}
    if failpoint == "disposal.after_registry_destroy":
        assert len(state["destroyed"]) == 1 and not steps and _pci_kms_state() == "Enabled"
    elif failpoint == "disposal.after_kms_schedule":
        assert len(state["destroyed"]) == 1 and not steps and _pci_kms_state() == "PendingDeletion"
    elif failpoint == "disposal.after_destroy":
        assert len(state["destroyed"]) == 1 and len(steps) == 1
    elif failpoint == "disposal.after_verify":
        assert len(state["destroyed"]) == 2 and {s for _, s in steps} == {"destroyed", "verified"}
        assert not state["certificates"]
    elif failpoint == "disposal.after_certificate_issued":
        assert len(state["certificates"]) == 1
        assert not [b for b in ledger_bodies("disposal") if b.get("event") == "certificate"]
    elif failpoint == "disposal.after_certificate_stored":
        assert len(state["certificates"]) == 1
        assert not [b for b in ledger_bodies("disposal") if b.get("event") == "certificate"]
        assert [b for b in ledger_bodies("evidence") if b["collector"] == "disposal.certificate"]
    elif failpoint == "disposal.after_certificate":
        assert len([b for b in ledger_bodies("disposal") if b.get("event") == "certificate"]) == 1


def _pci_kms_state() -> str:
    from attestly.connections import aws_client
    from attestly.keys import KeyRegistry

    with KeyRegistry.connect() as registry:
        arn = registry.record(PCI_KEY).kms_key_id
    return str(aws_client("kms").describe_key(KeyId=arn)["KeyMetadata"]["KeyState"])
