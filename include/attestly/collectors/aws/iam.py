"""IAM collectors (account-scoped: IAM is global, each runs once per account).

Resources: ``iam:<account>:user/<name>``, ``iam:<account>:group/<name>``,
``iam:<account>:user/<name>/access-key/<AKID>``, ``iam:<account>:root``,
``iam:<account>:password-policy``. A *console user* is a user with a login profile.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from attestly.collectors.aws._common import (
    CollectorResult,
    CollectorSpec,
    bad,
    is_error,
    observed_at,
    ok,
    older_than,
    paginate,
    param,
    skip,
    summary,
)
from attestly.evidence import Finding

if TYPE_CHECKING:
    from boto3 import Session

ADMIN_POLICY_ARN_SUFFIX = ":policy/AdministratorAccess"


def _users(iam: Any) -> Iterator[dict[str, Any]]:
    yield from paginate(iam, "list_users", "Users")


def _has_console(iam: Any, user_name: str) -> bool:
    try:
        iam.get_login_profile(UserName=user_name)
    except Exception as exc:
        if is_error(exc, "NoSuchEntity"):
            return False
        raise
    return True


def _user_res(account_id: str, name: str) -> str:
    return f"iam:{account_id}:user/{name}"


def mfa_console_users(
    session: Session, *, region: str, account_id: str, params: Mapping[str, Any]
) -> CollectorResult:
    """Every console user must have at least one MFA device; non-console users are not examined."""
    iam = session.client("iam", region_name=region)
    findings: list[Finding] = []
    users = 0
    for user in _users(iam):
        users += 1
        name = user["UserName"]
        if not _has_console(iam, name):
            continue
        devices = list(paginate(iam, "list_mfa_devices", "MFADevices", UserName=name))
        res = _user_res(account_id, name)
        if devices:
            findings.append(ok(res, f"console access with {len(devices)} MFA device(s)"))
        else:
            findings.append(bad(res, "console access without MFA"))
    return findings, summary(findings, users=users)


def root_account(
    session: Session, *, region: str, account_id: str, params: Mapping[str, Any]
) -> CollectorResult:
    """The root user has MFA enabled and no access keys (``get_account_summary``)."""
    iam = session.client("iam", region_name=region)
    summary_map = iam.get_account_summary()["SummaryMap"]
    mfa = int(summary_map.get("AccountMFAEnabled", 0)) == 1
    keys = int(summary_map.get("AccountAccessKeysPresent", 0)) != 0
    problems = []
    if not mfa:
        problems.append("root MFA not enabled")
    if keys:
        problems.append("root access keys present")
    res = f"iam:{account_id}:root"
    finding = bad(res, "; ".join(problems)) if problems else ok(res, "root MFA enabled; no root access keys")
    return [finding], {"root_mfa_enabled": mfa, "root_access_keys_present": keys}


def access_key_age(
    session: Session, *, region: str, account_id: str, params: Mapping[str, Any]
) -> CollectorResult:
    """Active access keys must be younger than N days and used within N days (N =
    ``access_key_max_age_days``, default 90), measured at ``observed_at``. A key never used passes while
    it is younger than N days. Inactive keys are reported ``not_applicable``."""
    days = int(param(params, "access_key_max_age_days"))
    now = observed_at(params)
    iam = session.client("iam", region_name=region)
    findings: list[Finding] = []
    for user in _users(iam):
        name = user["UserName"]
        for key in paginate(iam, "list_access_keys", "AccessKeyMetadata", UserName=name):
            key_id = key["AccessKeyId"]
            res = f"{_user_res(account_id, name)}/access-key/{key_id}"
            if key.get("Status") != "Active":
                findings.append(skip(res, "inactive key"))
                continue
            last = iam.get_access_key_last_used(AccessKeyId=key_id).get("AccessKeyLastUsed") or {}
            last_used: datetime | None = last.get("LastUsedDate")
            problems = []
            if older_than(key["CreateDate"], now=now, days=days):
                problems.append(f"created more than {days} days ago")
            if last_used is not None and older_than(last_used, now=now, days=days):
                problems.append(f"last used more than {days} days ago")
            usage = "never used" if last_used is None else f"used within {days} days"
            if problems:
                findings.append(bad(res, "active key " + "; ".join(problems)))
            else:
                findings.append(ok(res, f"active key created within {days} days; {usage}"))
    return findings, summary(findings, max_age_days=days)


def inactive_users(
    session: Session, *, region: str, account_id: str, params: Mapping[str, Any]
) -> CollectorResult:
    """Console users must have signed in within N days (``inactive_user_days``, default 90); a user
    who never signed in fails once created more than N days ago. Measured at ``observed_at``."""
    days = int(param(params, "inactive_user_days"))
    now = observed_at(params)
    iam = session.client("iam", region_name=region)
    findings: list[Finding] = []
    for user in _users(iam):
        name = user["UserName"]
        if not _has_console(iam, name):
            continue
        res = _user_res(account_id, name)
        last: datetime | None = user.get("PasswordLastUsed")
        if last is not None:
            if older_than(last, now=now, days=days):
                findings.append(bad(res, f"password last used more than {days} days ago"))
            else:
                findings.append(ok(res, f"password used within {days} days"))
        elif older_than(user["CreateDate"], now=now, days=days):
            findings.append(bad(res, f"password never used; created more than {days} days ago"))
        else:
            findings.append(ok(res, f"password never used; created within {days} days"))
    return findings, summary(findings, inactive_days=days)


def _policy_requirements(params: Mapping[str, Any]) -> dict[str, Any]:
    """Requirements from ``params['password_policy']`` (preferred) or top-level keys, over defaults."""
    defaults: dict[str, Any] = dict(param({}, "password_policy"))
    nested = params.get("password_policy") or {}
    out: dict[str, Any] = {}
    for key, default in defaults.items():
        if key in nested:
            out[key] = nested[key]
        elif key in params:
            out[key] = params[key]
        else:
            out[key] = default
    return out


def password_policy(
    session: Session, *, region: str, account_id: str, params: Mapping[str, Any]
) -> CollectorResult:
    """The account password policy meets ``minimum_length``, ``require_symbols/numbers/uppercase/
    lowercase``, ``max_age_days`` (passwords must expire within it) and ``reuse_prevention``; a
    requirement set to null/false/0 is not checked. No policy at all fails."""
    req = _policy_requirements(params)
    iam = session.client("iam", region_name=region)
    res = f"iam:{account_id}:password-policy"
    try:
        policy = iam.get_account_password_policy()["PasswordPolicy"]
    except Exception as exc:
        if is_error(exc, "NoSuchEntity"):
            return [bad(res, "no account password policy")], {"policy": None, "requirements": req}
        raise
    problems: list[str] = []
    length = int(policy.get("MinimumPasswordLength", 0))
    if req["minimum_length"] and length < int(req["minimum_length"]):
        problems.append(f"minimum length {length} < {req['minimum_length']}")
    for key, field in (
        ("require_symbols", "RequireSymbols"),
        ("require_numbers", "RequireNumbers"),
        ("require_uppercase", "RequireUppercaseCharacters"),
        ("require_lowercase", "RequireLowercaseCharacters"),
    ):
        if req[key] and not policy.get(field, False):
            problems.append(f"{field} is off")
    max_age = policy.get("MaxPasswordAge")
    if req["max_age_days"]:
        if not policy.get("ExpirePasswords", bool(max_age)) or not max_age:
            problems.append("passwords never expire")
        elif int(max_age) > int(req["max_age_days"]):
            problems.append(f"max password age {max_age} > {req['max_age_days']}")
    reuse = int(policy.get("PasswordReusePrevention", 0) or 0)
    if req["reuse_prevention"] and reuse < int(req["reuse_prevention"]):
        problems.append(f"reuse prevention {reuse} < {req['reuse_prevention']}")
    observed = {
        "minimum_length": length,
        "require_symbols": bool(policy.get("RequireSymbols", False)),
        "require_numbers": bool(policy.get("RequireNumbers", False)),
        "require_uppercase": bool(policy.get("RequireUppercaseCharacters", False)),
        "require_lowercase": bool(policy.get("RequireLowercaseCharacters", False)),
        "max_age_days": int(max_age) if max_age else None,
        "reuse_prevention": reuse,
    }
    finding = bad(res, "; ".join(problems)) if problems else ok(res, "meets every requirement")
    return [finding], {"policy": observed, "requirements": req}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def grants_everything(document: Any) -> bool:
    """True when a policy document has an ``Allow`` statement with Action ``*`` on Resource ``*``."""
    if isinstance(document, str):
        document = json.loads(unquote(document))
    if not isinstance(document, Mapping):
        return False
    for statement in _as_list(document.get("Statement")):
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
            continue
        if "*" in _as_list(statement.get("Action")) and "*" in _as_list(statement.get("Resource")):
            return True
    return False


class _ManagedPolicies:
    """Caches whether a managed policy (by ARN) grants administrator access."""

    def __init__(self, iam: Any) -> None:
        self._iam = iam
        self._cache: dict[str, bool] = {}

    def is_admin(self, arn: str) -> bool:
        if arn not in self._cache:
            if arn.endswith(ADMIN_POLICY_ARN_SUFFIX) and ":aws:policy/" in arn:
                self._cache[arn] = True
            else:
                version = self._iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
                doc = self._iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]
                self._cache[arn] = grants_everything(doc.get("Document"))
        return self._cache[arn]


def admin_policies(
    session: Session, *, region: str, account_id: str, params: Mapping[str, Any]
) -> CollectorResult:
    """Users and groups must not hold administrator policies: the managed ``AdministratorAccess``, or
    any managed or inline policy with ``Allow`` Action ``*`` Resource ``*``."""
    iam = session.client("iam", region_name=region)
    managed = _ManagedPolicies(iam)
    findings: list[Finding] = []

    def check(kind: str, name: str) -> None:
        cap = kind.capitalize()
        name_key = f"{cap}Name"
        hits: list[str] = []
        attached = paginate(iam, f"list_attached_{kind}_policies", "AttachedPolicies", **{name_key: name})
        for pol in attached:
            if managed.is_admin(pol["PolicyArn"]):
                hits.append(f"managed {pol['PolicyName']}")
        for pol_name in paginate(iam, f"list_{kind}_policies", "PolicyNames", **{name_key: name}):
            doc = getattr(iam, f"get_{kind}_policy")(**{name_key: name, "PolicyName": pol_name})
            if grants_everything(doc.get("PolicyDocument")):
                hits.append(f"inline {pol_name}")
        res = f"iam:{account_id}:{kind}/{name}"
        if hits:
            findings.append(bad(res, "administrator access via " + ", ".join(sorted(hits))))
        else:
            findings.append(ok(res, "no administrator policy"))

    for user in _users(iam):
        check("user", user["UserName"])
    for group in paginate(iam, "list_groups", "Groups"):
        check("group", group["GroupName"])
    return findings, summary(findings)


COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec(
        "iam.mfa_console_users",
        "iam",
        "account",
        mfa_console_users,
        population="IAM users with console access (a login profile)",
        enumerated_by="iam:ListUsers (every page), iam:GetLoginProfile per user",
    ),
    CollectorSpec(
        "iam.root_account",
        "iam",
        "account",
        root_account,
        population="the account's root user",
        enumerated_by="iam:GetAccountSummary",
    ),
    CollectorSpec(
        "iam.access_key_age",
        "iam",
        "account",
        access_key_age,
        population="access keys of every IAM user",
        enumerated_by="iam:ListUsers (every page), iam:ListAccessKeys per user",
    ),
    CollectorSpec(
        "iam.inactive_users",
        "iam",
        "account",
        inactive_users,
        population="IAM users with a console password",
        enumerated_by="iam:ListUsers (every page), iam:GetLoginProfile per user",
    ),
    CollectorSpec(
        "iam.password_policy",
        "iam",
        "account",
        password_policy,
        population="the account password policy",
        enumerated_by="iam:GetAccountPasswordPolicy",
    ),
    CollectorSpec(
        "iam.admin_policies",
        "iam",
        "account",
        admin_policies,
        population="IAM users and groups",
        enumerated_by="iam:ListUsers and iam:ListGroups (every page)",
    ),
)
