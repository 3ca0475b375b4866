"""The population under assessment: which AWS accounts and regions, found how, and what was left out.

Auditors test completeness of the population before they test anything in it, so the population is
itself evidence every run (collector ``aws.population``). It is built from ``aws.yaml``:

* ``accounts:`` — listed explicitly, each with its audit role and its regions (a list, or
  ``all_enabled``);
* ``organization:`` — every ACTIVE account of an AWS Organization, read with
  ``organizations:ListAccounts`` / ``ListRoots`` / ``ListOrganizationalUnitsForParent`` /
  ``ListAccountsForParent`` through ``management_role_arn`` (the management or a delegated-administrator
  account), optionally only under ``include_ous`` and never ``exclude_accounts``; the audit role in each
  is ``arn:aws:iam::<account>:role/<member_role_name>``.

Regions ``all_enabled`` are each account's enabled regions (``ec2:DescribeRegions``, in the account,
through its audit role), minus ``exclude_regions``. An account whose role cannot be assumed stays in the
population with its error (never a silent gap): the collection then records ``error`` items for it.

Nothing here imports boto3 at module level; :func:`discover` does, when called.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from attestly.collectors.aws._common import AccountTarget, error_code, error_message

if TYPE_CHECKING:
    from attestly.policy.models import AwsPolicy

log = logging.getLogger(__name__)

COLLECTOR = "aws.population"
POPULATION_SCHEMA = "attestly.aws-population/v1"
ALL_ENABLED = "all_enabled"
ALL_ENABLED_REGIONS = (ALL_ENABLED,)  # how the policy holds "regions: all_enabled"
#: Where region discovery is called when an account lists no region of its own.
DISCOVERY_REGION = "us-east-1"


@dataclass(frozen=True)
class PopulationAccount:
    """One account in the population: how to reach it, its regions, and where it came from."""

    id: str
    name: str
    role_arn: str
    regions: tuple[str, ...]
    source: str  # "policy" | "organization"
    regions_from: str  # "policy" | "ec2:DescribeRegions"
    endpoint_url: str | None = None
    ou_path: str | None = None
    access_error: str | None = None

    def target(self) -> AccountTarget:
        return AccountTarget(
            id=self.id,
            name=self.name,
            role_arn=self.role_arn,
            regions=self.regions or (DISCOVERY_REGION,),
            endpoint_url=self.endpoint_url,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role_arn": self.role_arn,
            "regions": list(self.regions),
            "source": self.source,
            "regions_from": self.regions_from,
            "endpoint_url": self.endpoint_url,
            "ou_path": self.ou_path,
            "access_error": self.access_error,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PopulationAccount:
        return cls(
            id=str(d["id"]),
            name=str(d["name"]),
            role_arn=str(d["role_arn"]),
            regions=tuple(d.get("regions") or ()),
            source=str(d["source"]),
            regions_from=str(d["regions_from"]),
            endpoint_url=d.get("endpoint_url") or None,
            ou_path=d.get("ou_path"),
            access_error=d.get("access_error"),
        )


@dataclass
class Population:
    """The accounts to assess (sorted by id), what was excluded and why, and discovery errors."""

    accounts: list[PopulationAccount] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)
    excluded_regions: list[str] = field(default_factory=list)
    organization: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": POPULATION_SCHEMA,
            "accounts": [a.to_dict() for a in self.accounts],
            "excluded": self.excluded,
            "excluded_regions": self.excluded_regions,
            "organization": self.organization,
            "errors": self.errors,
            "counts": {
                "accounts": len(self.accounts),
                "account_regions": sum(len(a.regions) for a in self.accounts),
                "excluded": len(self.excluded),
                "unreachable": sum(1 for a in self.accounts if a.access_error),
            },
        }

    def how(self) -> str:
        """How this population was actually enumerated: where its accounts came from (the accounts
        ``aws.yaml`` lists, and/or AWS Organizations with the calls made), what was left out, and where
        each account's regions came from."""
        listed = sum(1 for a in self.accounts if a.source == "policy")
        from_org = sum(1 for a in self.accounts if a.source == "organization")
        parts = []
        if listed or self.organization is None:
            parts.append(f"{listed} account(s) from the target list in aws.yaml (accounts:)")
        org = self.organization
        if org is not None:
            if org.get("error"):
                parts.append(
                    f"AWS Organizations not read (via {org.get('management_role_arn')}: {org['error']}), so "
                    "its accounts are missing"
                )
            else:
                ous = org.get("include_ous") or []
                parts.append(
                    f"{from_org} account(s) from AWS Organizations {org.get('id')} (DescribeOrganization, "
                    f"ListAccounts: {org.get('accounts_listed')} listed; ListRoots / "
                    "ListOrganizationalUnitsForParent / ListAccountsForParent for OU paths; ACTIVE only"
                    + (f", under include_ous {', '.join(ous)}" if ous else "")
                    + f"; {len(self.excluded)} excluded with the reason recorded)"
                )
        by_source: dict[str, int] = {}
        for a in self.accounts:
            by_source[a.regions_from] = by_source.get(a.regions_from, 0) + 1
        regions = []
        if by_source.get("policy"):
            regions.append(f"{by_source['policy']} account(s) with the regions aws.yaml lists")
        if by_source.get("ec2:DescribeRegions"):
            regions.append(
                f"{by_source['ec2:DescribeRegions']} account(s) with their enabled regions "
                "(regions: all_enabled) from ec2:DescribeRegions through the account's audit role"
            )
        text = "; ".join(parts)
        if regions:
            text += "; regions: " + ", ".join(regions)
        if self.excluded_regions:
            text += f", minus exclude_regions ({', '.join(self.excluded_regions)})"
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Population:
        if d.get("schema") != POPULATION_SCHEMA:
            raise ValueError(f"not an AWS population document (schema {d.get('schema')!r})")
        return cls(
            accounts=[PopulationAccount.from_dict(a) for a in d["accounts"]],
            excluded=list(d.get("excluded", [])),
            excluded_regions=list(d.get("excluded_regions", [])),
            organization=d.get("organization"),
            errors=list(d.get("errors", [])),
        )

    def batches(self, *, max_tasks: int, accounts_per_task: int | None = None) -> list[list[str]]:
        """Account ids in contiguous groups: ``accounts_per_task`` each, or as few per task as keep the
        number of groups at most ``max_tasks`` (Airflow maps one task per group)."""
        ids = [a.id for a in self.accounts]
        if not ids:
            return []
        per = accounts_per_task or -(-len(ids) // max_tasks)
        per = max(per, -(-len(ids) // max_tasks))
        return [ids[i : i + per] for i in range(0, len(ids), per)]


def _org_client(aws: AwsPolicy, *, aws_conn_id: str) -> Any:
    from attestly.collectors.aws._session import assume_role_session

    org = aws.organization
    assert org is not None
    session = assume_role_session(
        aws_conn_id=aws_conn_id,
        role_arn=org.management_role_arn,
        session_name="attestly-population",
        region_name=DISCOVERY_REGION,
        endpoint_url=org.endpoint or None,
    )
    return session.client("organizations")


def _walk(client: Any) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Account id -> OU path (``r-x/ou-a/ou-b``), and OU/root id -> every OU id under it (itself too)."""
    from attestly.collectors.aws._common import paginate

    path_of: dict[str, str] = {}
    under: dict[str, list[str]] = {}
    roots = [r["Id"] for r in paginate(client, "list_roots", "Roots")]
    stack = [(r, r) for r in roots]
    chains: dict[str, list[str]] = {r: [r] for r in roots}
    while stack:
        parent, path = stack.pop()
        for account in paginate(client, "list_accounts_for_parent", "Accounts", ParentId=parent):
            path_of[account["Id"]] = path
        for ou in paginate(
            client, "list_organizational_units_for_parent", "OrganizationalUnits", ParentId=parent
        ):
            chains[ou["Id"]] = [*chains[parent], ou["Id"]]
            stack.append((ou["Id"], f"{path}/{ou['Id']}"))
    for node, chain in chains.items():
        for ancestor in chain:
            under.setdefault(ancestor, []).append(node)
    return path_of, under


def _organization_accounts(aws: AwsPolicy, population: Population, *, aws_conn_id: str) -> None:
    from attestly.collectors.aws._common import paginate

    org = aws.organization
    assert org is not None
    try:
        client = _org_client(aws, aws_conn_id=aws_conn_id)
        info = client.describe_organization()["Organization"]
        accounts = list(paginate(client, "list_accounts", "Accounts"))
        path_of, under = _walk(client)
    except Exception as exc:  # recorded: the population is incomplete and says so
        population.errors.append(
            f"organization via {org.management_role_arn}: {error_code(exc)}: {error_message(exc)}"
        )
        population.organization = {"management_role_arn": org.management_role_arn, "error": error_code(exc)}
        return
    population.organization = {
        "id": info.get("Id"),
        "management_account": info.get("MasterAccountId"),
        "management_role_arn": org.management_role_arn,
        "accounts_listed": len(accounts),
        "include_ous": list(org.include_ous),
    }
    wanted_ous: set[str] | None = None
    if org.include_ous:
        wanted_ous = set()
        for ou in org.include_ous:
            if ou not in under:
                population.errors.append(
                    f"include_ous: {ou} is not an OU or root of organization {info.get('Id')}"
                )
            wanted_ous.update(under.get(ou, []))
    explicit = {a.id for a in population.accounts}
    excluded_ids = set(org.exclude_accounts)
    for acct in sorted(accounts, key=lambda a: a["Id"]):
        acct_id, name = acct["Id"], acct.get("Name") or acct["Id"]
        status = acct.get("State") or acct.get("Status") or "ACTIVE"
        path = path_of.get(acct_id)
        why = None
        if acct_id in explicit:
            why = "listed under accounts: (the explicit entry is used)"
        elif acct_id in excluded_ids:
            why = "exclude_accounts"
        elif str(status).upper() != "ACTIVE":
            why = f"account status {status}"
        elif wanted_ous is not None and (path is None or not set(path.split("/")) & wanted_ous):
            why = f"not under include_ous ({path or 'no OU'})"
        if why:
            population.excluded.append({"id": acct_id, "name": name, "why": why})
            continue
        population.accounts.append(
            PopulationAccount(
                id=acct_id,
                name=name,
                role_arn=f"arn:aws:iam::{acct_id}:role/{org.member_role_name}",
                regions=tuple(org.regions) if org.regions != ALL_ENABLED_REGIONS else (),
                source="organization",
                regions_from="policy" if org.regions != ALL_ENABLED_REGIONS else "ec2:DescribeRegions",
                endpoint_url=org.endpoint or None,
                ou_path=path,
            )
        )


def _enabled_regions(
    account: PopulationAccount, exclude: Sequence[str], *, aws_conn_id: str
) -> PopulationAccount:
    """``account`` with its enabled regions (``ec2:DescribeRegions`` through its audit role), minus
    ``exclude``; or with ``access_error`` set when the role cannot be assumed or the call fails."""
    from dataclasses import replace

    from attestly.collectors.aws._session import assume_role_session

    try:
        session = assume_role_session(
            aws_conn_id=aws_conn_id,
            role_arn=account.role_arn,
            session_name="attestly-population",
            region_name=DISCOVERY_REGION,
            endpoint_url=account.endpoint_url,
        )
        regions = session.client("ec2", region_name=DISCOVERY_REGION).describe_regions(AllRegions=False)[
            "Regions"
        ]
    except Exception as exc:
        return replace(account, access_error=f"{error_code(exc)}: {error_message(exc)}")
    names = sorted(
        r["RegionName"]
        for r in regions
        if r.get("OptInStatus", "opt-in-not-required") in ("opt-in-not-required", "opted-in")
        and r["RegionName"] not in exclude
    )
    return replace(account, regions=tuple(names))


def discover(aws: AwsPolicy, *, aws_conn_id: str = "aws_default", concurrency: int = 16) -> Population:
    """The population ``aws.yaml`` describes, as found now. Never raises for AWS errors: they are in
    ``errors`` (organization) or on the account (``access_error``)."""
    population = Population()
    for a in aws.accounts:
        all_enabled = a.regions == ALL_ENABLED_REGIONS
        population.accounts.append(
            PopulationAccount(
                id=a.id,
                name=a.name,
                role_arn=a.role_arn,
                regions=() if all_enabled else tuple(a.regions),
                source="policy",
                regions_from="ec2:DescribeRegions" if all_enabled else "policy",
                endpoint_url=a.endpoint,
            )
        )
    if aws.organization is not None:
        _organization_accounts(aws, population, aws_conn_id=aws_conn_id)
    exclude = tuple(aws.exclude_regions)
    population.excluded_regions = sorted(exclude)
    pending = [a for a in population.accounts if a.regions_from != "policy"]
    if pending:
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(pending)))) as pool:
            found = dict(
                zip(
                    [a.id for a in pending],
                    pool.map(lambda a: _enabled_regions(a, exclude, aws_conn_id=aws_conn_id), pending),
                    strict=True,
                )
            )
        population.accounts = [found.get(a.id, a) for a in population.accounts]
    population.accounts = [
        a if a.regions_from != "policy" else _without(a, exclude) for a in population.accounts
    ]
    population.accounts.sort(key=lambda a: a.id)
    return population


def _without(account: PopulationAccount, exclude: Sequence[str]) -> PopulationAccount:
    from dataclasses import replace

    return replace(account, regions=tuple(r for r in account.regions if r not in exclude))
