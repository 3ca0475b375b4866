"""The Evidence view's upload form, without services: the size gate runs before anything is read, the
form lists exactly the manual controls in scope, and nothing in it can inject markup."""

from __future__ import annotations

import pytest

from attestly.policy import load_policy
from attestly.ui.upload import UploadRefused, check_length, max_request_bytes, render_form, ui_message

pytestmark = pytest.mark.unit


def test_the_size_gate_comes_first() -> None:
    policy = load_policy()
    limit = max_request_bytes(policy)
    s = policy.manual_evidence
    assert limit == s.max_files * s.max_file_mib * 1024 * 1024 + 1024 * 1024
    check_length(str(limit), policy)
    with pytest.raises(UploadRefused) as missing:
        check_length(None, policy)
    assert missing.value.status == 411
    with pytest.raises(UploadRefused) as big:
        check_length(str(limit + 1), policy)
    assert big.value.status == 413 and "controls.yaml manual_evidence" in str(big.value)
    with pytest.raises(UploadRefused) as nan:
        check_length("12x", policy)
    assert nan.value.status == 400 and "'12x'" in str(nan.value)


def test_messages_use_the_form_labels() -> None:
    msg = "--period-to 2026-01-01 is before --period-from 2026-06-30"
    assert ui_message(msg) == "period to 2026-01-01 is before period from 2026-06-30"


def test_the_form_lists_manual_controls_in_scope_escaped() -> None:
    policy = load_policy()
    html = render_form(policy, user='<img src=x onerror="x">', app_root="/attestly", selected=["soc2:CC1.4"])
    options = html.count("<option value=")
    assert options == len(policy.manual_controls()) > 300
    assert '<option value="soc2:CC1.4" selected>' in html
    not_in_scope = [c.id for c in policy.controls.values() if not policy.in_scope(c)]
    assert not_in_scope and all(f'value="{cid}"' not in html for cid in not_in_scope)
    automated = [c.id for c in policy.controls.values() if not c.manual]
    assert all(f'value="{cid}"' not in html for cid in automated)
    assert "<img src=x" not in html and "&lt;img src=x" in html
    assert '"/attestly/api/evidence"' in html
