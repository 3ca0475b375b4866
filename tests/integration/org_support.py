"""An AWS Organization in the stack's moto server, for the org-scale tests and benchmarks (no tests here).

The management account is moto's base account (the ``aws_default`` credentials). Member accounts are
created with ``organizations:CreateAccount`` (moto keeps accounts apart by the assumed role's account id)
and placed in fresh OUs, so tests sharing one moto server do not see each other's OUs. Each member gets a
small known estate: one IAM user with a console password and no MFA (``iam.mfa_console_users`` fails
naming that user), created through ``OrganizationAccountAccessRole`` as in a real organisation.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attestly.connections import aws_client

MANAGEMENT_ROLE = "arn:aws:iam::123456789012:role/AttestlyOrgReader"
MEMBER_ROLE = "AttestlyAudit"


@dataclass
class Org:
    root: str
    ous: dict[str, str]  # name -> OU id
    accounts: dict[str, list[str]] = field(default_factory=dict)  # OU name (or "root") -> account ids
    names: dict[str, str] = field(default_factory=dict)  # account id -> name

    def ids(self, *ous: str) -> list[str]:
        return sorted(a for ou in ous for a in self.accounts.get(ou, []))


def _organizations() -> Any:
    client = aws_client("organizations")
    try:
        client.describe_organization()
    except client.exceptions.AWSOrganizationsNotInUseException:
        client.create_organization(FeatureSet="ALL")
    return client


def seed_member(account_id: str, *, users: int = 1) -> None:
    """The member's known estate, created through OrganizationAccountAccessRole."""
    from attestly.collectors.aws._session import assume_role_session

    session = assume_role_session(
        aws_conn_id="aws_default",
        role_arn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
        session_name="attestly-test-seed",
        region_name="us-east-1",
    )
    iam = session.client("iam")
    for n in range(users):
        name = f"dev-{account_id}-{n}"
        try:
            iam.create_user(UserName=name)
            iam.create_login_profile(UserName=name, Password="Not-a-real-password-1!")
        except iam.exceptions.EntityAlreadyExistsException:
            pass


def build_org(layout: dict[str, int], *, root_accounts: int = 0, seed: bool = True, workers: int = 8) -> Org:
    """OUs named after ``layout``'s keys (made unique) with that many new accounts each, plus
    ``root_accounts`` accounts left in the root; every member seeded unless ``seed`` is false."""
    client = _organizations()
    root = client.list_roots()["Roots"][0]["Id"]
    tag = uuid.uuid4().hex[:6]
    org = Org(root=root, ous={})
    plan: list[tuple[str, str | None]] = [("root", None)] * root_accounts
    for name, count in layout.items():
        ou = client.create_organizational_unit(ParentId=root, Name=f"{name}-{tag}")["OrganizationalUnit"][
            "Id"
        ]
        org.ous[name] = ou
        plan += [(name, ou)] * count

    def make(i_item: tuple[int, tuple[str, str | None]]) -> tuple[str, str, str]:
        i, (name, ou) = i_item
        acct_name = f"{name}-{tag}-{i:04d}"
        status = client.create_account(Email=f"{acct_name}@example.com", AccountName=acct_name)
        account_id = status["CreateAccountStatus"]["AccountId"]
        if ou is not None:
            client.move_account(AccountId=account_id, SourceParentId=root, DestinationParentId=ou)
        return name, account_id, acct_name

    with ThreadPoolExecutor(max_workers=workers) as pool:
        made = list(pool.map(make, enumerate(plan)))
        for name, account_id, acct_name in made:
            org.accounts.setdefault(name, []).append(account_id)
            org.names[account_id] = acct_name
        if seed:
            list(pool.map(seed_member, [a for _, a, _ in made]))
    return org


def org_policy(
    directory: Path,
    *,
    include_ous: list[str],
    exclude_accounts: list[str] = (),  # type: ignore[assignment]
    regions: list[str] | str = ("us-east-1", "eu-west-1"),  # type: ignore[assignment]
    exclude_regions: list[str] = (),  # type: ignore[assignment]
    accounts_yaml: str = "",
    collection: str = "",
    endpoint_url: str = "${ATTESTLY_AWS_ENDPOINT_URL:-}",
) -> Path:
    """A copy of the shipped policy whose aws.yaml assesses the organisation (and ``accounts_yaml``)."""
    import shutil

    src = Path(__file__).resolve().parents[2] / "include" / "policy"
    shutil.copytree(src, directory, dirs_exist_ok=True)
    aws = (directory / "aws.yaml").read_text()
    thresholds = aws[aws.index("# Buckets matching") :]
    regions_yaml = regions if isinstance(regions, str) else "[" + ", ".join(regions) + "]"
    text = (
        f"accounts: {accounts_yaml or '[]'}\n"
        "organization:\n"
        f'  management_role_arn: "{MANAGEMENT_ROLE}"\n'
        f"  member_role_name: {MEMBER_ROLE}\n"
        f"  regions: {regions_yaml}\n"
        f"  include_ous: [{', '.join(include_ous)}]\n"
        f"  exclude_accounts: [{', '.join(repr(a) for a in exclude_accounts)}]\n"
        f'  endpoint_url: "{endpoint_url}"\n'
        f"exclude_regions: [{', '.join(exclude_regions)}]\n"
        f"{collection}\n"
        f"{thresholds}"
    )
    (directory / "aws.yaml").write_text(text)
    return directory
