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


def test_the_cli_refuses_identity_flags_and_records_the_os_user(capsys: pytest.CaptureFixture[str]) -> None:
    """`--requested-by`/`--approved-by` are retired: refused (exit 2, before anything is opened) with a
    pointer to the Evidence view; everything the CLI records names the OS account."""
    import argparse

    from attestly.cliutil import who
    from attestly.disposal.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="cmd"))
    for argv, flag in (
        (
            ["erase", "request", "--subject", "p-1", "--reason", "r", "--requested-by", "alice"],
            "--requested-by",
        ),
        (["erase", "approve", "erase-0123456789ab", "--approved-by", "bob"], "--approved-by"),
    ):
        args = parser.parse_args(argv)
        assert args.func(args) == 2
        err = capsys.readouterr().err
        assert f"{flag} is no longer accepted" in err and "Airflow UI" in err and cli_identity() in err
    assert who() == cli_identity()


def test_four_eyes_compare_persons_across_paths() -> None:
    from attestly.identity import person, same_person

    assert same_person("cli:alice@laptop", "ui:Alice")
    assert same_person("attestly-cli:carol", "cli:carol@build-host")
    assert same_person(" airflow:BOB@corp ", "bob")
    assert not same_person("cli:alice@laptop", "ui:bob")
    assert not same_person("", "ui:")
    assert person("mallory@corp") == "mallory" and person("other:x") == "other:x"


def test_the_aws_population_says_how_it_was_enumerated() -> None:
    from attestly.collectors.aws.population import Population, PopulationAccount

    def acct(i: str, source: str, regions_from: str) -> PopulationAccount:
        return PopulationAccount(i, i, f"arn:aws:iam::{i}:role/a", ("eu-west-1",), source, regions_from)

    listed = Population(accounts=[acct("111111111111", "policy", "policy")])
    assert listed.how() == (
        "1 account(s) from the target list in aws.yaml (accounts:); regions: 1 account(s) with the regions "
        "aws.yaml lists"
    )
    org = Population(
        accounts=[
            acct("222222222222", "organization", "ec2:DescribeRegions"),
            acct("333333333333", "organization", "ec2:DescribeRegions"),
        ],
        excluded=[{"id": "444444444444", "name": "x", "why": "exclude_accounts"}],
        excluded_regions=["ap-east-1"],
        organization={
            "id": "o-abc",
            "accounts_listed": 3,
            "include_ous": ["ou-1"],
            "management_role_arn": "arn:r",
        },
    )
    how = org.how()
    assert how.startswith(
        "2 account(s) from AWS Organizations o-abc (DescribeOrganization, ListAccounts: 3 listed"
    )
    assert "under include_ous ou-1" in how and "1 excluded" in how and "aws.yaml (accounts:)" not in how
    assert "2 account(s) with their enabled regions" in how and "ec2:DescribeRegions" in how
    assert how.endswith("minus exclude_regions (ap-east-1)")
    broken = Population(organization={"management_role_arn": "arn:r", "error": "AccessDenied"})
    assert "AWS Organizations not read (via arn:r: AccessDenied)" in broken.how()
