"""Who started a run, who the CLI user is, and the public base URL of run links — without services."""

from __future__ import annotations

import os
import pwd
from types import SimpleNamespace

import pytest

from attestly.identity import cli_identity, os_user
from attestly.links import BaseUrlError, public_base_url
from attestly.workflows.common import triggered_by

pytestmark = pytest.mark.unit


def test_runs_name_the_triggering_user_or_the_scheduler() -> None:
    assert triggered_by(SimpleNamespace(triggering_user_name="dana", run_type="manual")) == "dana"
    assert triggered_by(SimpleNamespace(triggering_user_name=None, run_type="scheduled")) == "scheduler"
    assert triggered_by(SimpleNamespace(triggering_user_name="", run_type="manual")) == "unknown (manual)"
    assert triggered_by(SimpleNamespace(run_type=SimpleNamespace(value="asset_triggered"))) == "scheduler"


def test_the_cli_identity_is_the_os_account() -> None:
    # From the password database (the effective uid), not a flag or an environment variable.
    assert os_user() == pwd.getpwuid(os.geteuid()).pw_name
    assert cli_identity().startswith(f"cli:{os_user()}@")


def test_run_links_use_the_configured_public_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://127.0.0.1:8080/")
    monkeypatch.setenv("ATTESTLY_PUBLIC_BASE_URL", "https://airflow.example.com/")
    assert public_base_url() == "https://airflow.example.com"
    monkeypatch.delenv("ATTESTLY_PUBLIC_BASE_URL")
    assert public_base_url() == "http://127.0.0.1:8080"  # configured so: used as given
    monkeypatch.setenv("ATTESTLY_PUBLIC_BASE_URL", "airflow.example.com")
    with pytest.raises(BaseUrlError, match=r"ATTESTLY_PUBLIC_BASE_URL='airflow\.example\.com'"):
        public_base_url()
