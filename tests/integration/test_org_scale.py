"""Evidence at organisation scale on the real stack (moto over HTTP): the population found from AWS
Organizations (OUs, exclusions, suspended accounts, enabled regions) recorded as evidence; a member whose
role cannot be assumed, or a region that refuses, is an ``error`` for exactly that scope; throttling and
dropped connections change nothing; and `airflow dags test` collects every account in a bounded number of
mapped tasks."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from attestly.collectors.aws.batch import collect_accounts
from attestly.collectors.aws.population import PopulationAccount, discover
from attestly.connections import aws_client
from attestly.ledger import Ledger
from attestly.policy import AWS_COLLECTORS, load_policy
from tests.conftest import recreate_database
from tests.integration.fault_proxy import fault_proxy
from tests.integration.org_support import MEMBER_ROLE, Org, build_org, org_policy

pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).date()
START = datetime.combine(TODAY - timedelta(days=1), datetime.min.time(), UTC)
END = START + timedelta(days=1)


@pytest.fixture(scope="module")
def org(stack: dict[str, str]) -> Org:
    built = build_org({"eng": 5, "sandbox": 3}, root_accounts=1)
    client = aws_client("organizations")
    client.close_account(AccountId=built.accounts["sandbox"][0])  # SUSPENDED
    return built


def _policy(tmp_path: Path, org: Org, **kw: Any) -> Any:
    return load_policy(org_policy(tmp_path / f"policy-{uuid.uuid4().hex[:6]}", **kw))


def test_the_population_is_the_organisation_as_found(org: Org, tmp_path: Path) -> None:
    excluded_by_policy = org.accounts["eng"][0]
    closed = org.accounts["sandbox"][0]
    policy = _policy(
        tmp_path, org, include_ous=[org.ous["eng"], org.ous["sandbox"]], exclude_accounts=[excluded_by_policy]
    )
    population = discover(policy.aws)
    assert population.errors == []
    ids = [a.id for a in population.accounts]
    assert ids == sorted(set(org.ids("eng", "sandbox")) - {excluded_by_policy, closed})
    first = population.accounts[0]
    assert first.role_arn == f"arn:aws:iam::{first.id}:role/{MEMBER_ROLE}" and first.source == "organization"
    assert first.regions == ("us-east-1", "eu-west-1") and first.regions_from == "policy"
    ou_of = {a.id: a.ou_path for a in population.accounts}
    assert all(ou_of[a].endswith(org.ous["eng"]) for a in org.accounts["eng"][1:])
    why = {x["id"]: x["why"] for x in population.excluded}
    assert why[excluded_by_policy] == "exclude_accounts"
    assert why[closed] == "account status SUSPENDED"
    assert why[org.accounts["root"][0]].startswith("not under include_ous")
    assert population.organization and population.organization["accounts_listed"] >= 9


def test_all_enabled_regions_are_each_accounts_own_minus_the_excluded(org: Org, tmp_path: Path) -> None:
    # Enabled: opted in, or needing no opt-in (moto, like AWS, marks some regions not-opted-in).
    enabled = sorted(
        r["RegionName"]
        for r in aws_client("ec2").describe_regions(AllRegions=True)["Regions"]
        if r.get("OptInStatus") in ("opt-in-not-required", "opted-in")
    )
    assert 10 < len(enabled) < len(aws_client("ec2").describe_regions(AllRegions=True)["Regions"])
    dropped = ["ap-south-1", "sa-east-1"]
    policy = _policy(
        tmp_path, org, include_ous=[org.ous["sandbox"]], regions="all_enabled", exclude_regions=dropped
    )
    population = discover(policy.aws)
    assert population.accounts and population.excluded_regions == dropped
    for a in population.accounts:
        assert a.regions_from == "ec2:DescribeRegions"
        assert list(a.regions) == [r for r in enabled if r not in dropped]


def _items(accounts: list[PopulationAccount], *, max_parallel: int = 8) -> dict[tuple[str, str, str], Any]:
    """Collect ``accounts`` (every AWS collector), keeping the items instead of recording them."""
    policy = load_policy()
    items: dict[tuple[str, str, str], Any] = {}

    def keep(item: Any) -> dict[str, Any]:
        items[(item.scope["account"], item.collector, item.scope["region"])] = item
        return {"result": item.result}

    collect_accounts(
        accounts,
        collectors=AWS_COLLECTORS,
        controls_for=policy.controls_for_collector,
        period_start=START,
        period_end=END,
        observed_at=datetime.now(UTC),
        params={},
        record=keep,
        max_parallel=max_parallel,
    )
    return items


def _member(
    org: Org, account_id: str, endpoint: str | None, regions: tuple[str, ...] = ("us-east-1", "eu-west-1")
) -> PopulationAccount:
    return PopulationAccount(
        id=account_id,
        name=org.names[account_id],
        role_arn=f"arn:aws:iam::{account_id}:role/{MEMBER_ROLE}",
        regions=regions,
        source="organization",
        regions_from="policy",
        endpoint_url=endpoint,
    )


def test_throttling_and_dropped_connections_change_no_evidence(org: Org, stack: dict[str, str]) -> None:
    """20% of AWS calls answered with throttling, SlowDown or a dropped connection: the same observations."""
    moto = stack["ATTESTLY_AWS_ENDPOINT_URL"]
    members = org.ids("eng")[:2]
    clean = _items([_member(org, a, moto) for a in members])
    with fault_proxy(moto, rate=0.2, seed=7) as proxy:
        faulted = _items([_member(org, a, proxy.url) for a in members])
    faults = proxy.counts["throttled"] + proxy.counts["slowdown"] + proxy.counts["dropped"]
    assert faults >= 10 and proxy.counts["throttled"] and proxy.counts["dropped"], proxy.counts
    assert {k: v.result for k, v in faulted.items()} == {k: v.result for k, v in clean.items()}
    assert {k: v.observation_sha256 for k, v in faulted.items()} == {
        k: v.observation_sha256 for k, v in clean.items()
    }
    assert not [k for k, v in clean.items() if v.result == "error"]
    mfa = clean[(members[0], "iam.mfa_console_users", "global")]
    assert mfa.result == "fail" and f"user/dev-{members[0]}-0" in mfa.findings[0].resource


def test_a_refusing_region_or_an_unassumable_role_errs_for_exactly_its_scope(
    org: Org, stack: dict[str, str], tmp_path: Path
) -> None:
    moto = stack["ATTESTLY_AWS_ENDPOINT_URL"]
    a, b = org.ids("eng")[1:3]
    with fault_proxy(moto, deny=[("eu-west-1", None)]) as refusing:
        items = _items([_member(org, a, refusing.url), _member(org, b, moto)])
    errors = {k for k, v in items.items() if v.result == "error"}
    regional = {c for c in AWS_COLLECTORS if c.split(".")[0] in ("kms", "cloudtrail", "ec2", "rds", "config")}
    assert errors == {(a, c, "eu-west-1") for c in regional}
    detail = items[(a, "ec2.open_security_groups", "eu-west-1")].findings[0].detail
    assert detail.startswith("AccessDenied")

    # A member whose audit role cannot be assumed: it stays in the population (an error finding), and
    # the collection records an error item per collector for it — never a silent gap.
    with fault_proxy(moto, deny=[("us-east-1", "sts")]) as no_sts:
        policy = _policy(
            tmp_path,
            org,
            include_ous=[org.ous["eng"]],
            accounts_yaml=(
                f'\n  - id: "{a}"\n    name: locked-out\n    role_arn: "arn:aws:iam::{a}:role/{MEMBER_ROLE}"\n'
                f'    regions: all_enabled\n    endpoint_url: "{no_sts.url}"'
            ),
        )
        population = discover(policy.aws)
    (locked,) = [x for x in population.accounts if x.id == a]
    assert (
        locked.source == "policy" and locked.access_error and locked.access_error.startswith("AccessDenied")
    )
    assert {x["id"]: x["why"] for x in population.excluded}[a].startswith("listed under accounts:")
    items = _items([locked])
    assert {v.result for v in items.values()} == {"error"} and len(items) == len(AWS_COLLECTORS)
    assert {k[2] for k in items} == {"global", "all_enabled"}


def test_dags_test_collects_every_account_in_bounded_mapped_tasks(
    org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.test_evidence_dag import dags_test

    recreate_database("attestly")
    bucket = f"org-{uuid.uuid4().hex[:10]}"
    aws_client("s3").create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    monkeypatch.setenv("ATTESTLY_EVIDENCE_BUCKET", bucket)
    policy_dir = org_policy(
        tmp_path / "policy",
        include_ous=[org.ous["eng"], org.ous["sandbox"]],
        regions=["us-east-1"],
        collection="collection:\n  accounts_per_task: 3\n  max_parallel: 6",
    )
    members = sorted(set(org.ids("eng", "sandbox")) - {org.accounts["sandbox"][0]})
    run = dags_test("evidence_collection", TODAY, env={"ATTESTLY_POLICY_DIR": str(policy_dir)})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with Ledger.connect() as ledger:
        items = [e.body for e in ledger.entries(kind="evidence")]
        (record,) = [e.body for e in ledger.entries(kind="run")]
    aws = Counter(
        (i["scope"]["account"], i["collector"], i["scope"]["region"])
        for i in items
        if "account" in i["scope"]
    )
    per_account = {a: sum(1 for k in aws if k[0] == a) for a in members}
    assert per_account == {a: len(AWS_COLLECTORS) for a in members}  # one region: each collector once
    assert set(aws.values()) == {1}
    (population,) = [i for i in items if i["collector"] == "aws.population"]
    assert population["findings"]["pass"] == len(members) and population["result"] == "pass"
    mapped = sorted(t["map_index"] for t in record["tasks"] if t["task_id"] == "collect_aws")
    assert mapped == [0, 1, 2]
