"""``attestly seed aws``: plant a known estate of compliant and non-compliant AWS resources.

For the local stack and tests only: :func:`seed_aws_estate` refuses to run without an endpoint URL
(target or connection), so it can never modify a real AWS account.

The estate spans two accounts (:data:`SEED_ACCOUNTS`): ``111111111111`` "prod" (us-east-1, eu-west-1)
and ``222222222222`` "shared-services" (us-east-1). In each, the seeder first assumes
``OrganizationAccountAccessRole`` with the base credentials (moto accepts any role in any account and
switches to that account; in an AWS Organization that role exists in member accounts), creates the
read-only audit role ``AttestlyAudit`` trusting the base account, then creates the resources. Every step
is get-or-create or an idempotent put, so seeding twice gives the same estate and no errors.

:data:`EXPECTED_FINDINGS` says, per collector, which resources must be reported with which status when
the collectors run with :data:`SEED_PARAMS` over every target of ``plan_collections(SEED_ACCOUNTS)``.
Resources whose ids AWS generates (security groups, KMS keys, access keys) appear as placeholders
``<sg:NAME>``, ``<kms:ALIAS>``, ``<key:USER>``; :func:`seed_aws_estate` returns the same mapping with
them resolved to the real ids.

What moto 5.2.5 cannot plant (so the estate cannot show it):
* root MFA / root access keys: ``get_account_summary`` always reports ``AccountMFAEnabled: 0`` and
  ``AccountAccessKeysPresent: 0``, so ``iam.root_account`` fails in every account;
* access key or user ages and last use: creation dates are "now" and ``PasswordLastUsed`` is never set,
  so ``iam.access_key_age`` and ``iam.inactive_users`` pass here; observed more than 90 days later
  (``observed_at``), every ``pass`` of those two collectors becomes a ``fail``, which is how their
  failing branches are exercised;
* AWS-managed KMS keys: moto creates ``alias/aws/*`` keys lazily as *customer* keys, so the estate
  avoids anything that would create them.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from attestly.collectors.aws import AccountTarget
from attestly.collectors.aws._common import is_error

PROD = "111111111111"
SHARED = "222222222222"
AUDIT_ROLE = "AttestlyAudit"
ADMIN_ROLE = "OrganizationAccountAccessRole"

SEED_ACCOUNTS: tuple[AccountTarget, ...] = (
    AccountTarget(
        id=PROD,
        name="prod",
        role_arn=f"arn:aws:iam::{PROD}:role/{AUDIT_ROLE}",
        regions=("us-east-1", "eu-west-1"),
    ),
    AccountTarget(
        id=SHARED,
        name="shared-services",
        role_arn=f"arn:aws:iam::{SHARED}:role/{AUDIT_ROLE}",
        regions=("us-east-1",),
    ),
)
"""The accounts of the seeded estate (endpoint from the ``aws_default`` connection)."""

SEED_PARAMS: dict[str, Any] = {
    "object_lock_required_buckets": ["*-archive-*", "*-audit-*"],
    "access_key_max_age_days": 90,
    "inactive_user_days": 90,
    "rds_min_backup_retention_days": 7,
}
"""Collector parameters :data:`EXPECTED_FINDINGS` assumes (everything else at its default)."""

_P, _S = PROD, SHARED
_PE, _PW, _SE = f"{PROD}:us-east-1", f"{PROD}:eu-west-1", f"{SHARED}:us-east-1"

EXPECTED_FINDINGS: dict[str, dict[str, list[str]]] = {
    "iam.mfa_console_users": {
        "fail": [f"iam:{_P}:user/alice-nomfa", f"iam:{_S}:user/frank-nomfa"],
        "pass": [f"iam:{_P}:user/bob-mfa", f"iam:{_P}:user/carol-admin", f"iam:{_S}:user/grace-mfa"],
    },
    "iam.root_account": {"fail": [f"iam:{_P}:root", f"iam:{_S}:root"]},
    "iam.access_key_age": {
        "pass": [
            f"iam:{_P}:user/svc-deploy/access-key/<key:svc-deploy>",
            f"iam:{_S}:user/svc-backup/access-key/<key:svc-backup>",
        ],
        "not_applicable": [f"iam:{_P}:user/svc-rotated/access-key/<key:svc-rotated>"],
    },
    "iam.inactive_users": {
        "pass": [
            f"iam:{_P}:user/alice-nomfa",
            f"iam:{_P}:user/bob-mfa",
            f"iam:{_P}:user/carol-admin",
            f"iam:{_S}:user/frank-nomfa",
            f"iam:{_S}:user/grace-mfa",
        ],
    },
    "iam.password_policy": {
        "pass": [f"iam:{_P}:password-policy"],
        "fail": [f"iam:{_S}:password-policy"],
    },
    "iam.admin_policies": {
        "fail": [f"iam:{_P}:user/carol-admin", f"iam:{_P}:group/ops-admins"],
        "pass": [
            f"iam:{_P}:user/alice-nomfa",
            f"iam:{_P}:user/bob-mfa",
            f"iam:{_P}:user/svc-deploy",
            f"iam:{_P}:user/svc-rotated",
            f"iam:{_P}:group/auditors",
            f"iam:{_S}:user/frank-nomfa",
            f"iam:{_S}:user/grace-mfa",
            f"iam:{_S}:user/svc-backup",
            f"iam:{_S}:group/developers",
        ],
    },
    "s3.default_encryption": {
        "pass": [
            f"s3:{_P}:bucket/attestly-prod-secure-{_P}",
            f"s3:{_P}:bucket/attestly-prod-archive-{_P}",
            f"s3:{_P}:bucket/attestly-prod-audit-{_P}",
            f"s3:{_P}:bucket/attestly-prod-trail-{_P}",
            f"s3:{_S}:bucket/attestly-shared-tools-{_S}",
        ],
        "fail": [f"s3:{_P}:bucket/attestly-prod-open-{_P}", f"s3:{_S}:bucket/attestly-shared-audit-{_S}"],
    },
    "s3.public_access_block": {
        "pass": [
            f"s3:{_P}:account-public-access-block",
            f"s3:{_P}:bucket/attestly-prod-secure-{_P}",
            f"s3:{_P}:bucket/attestly-prod-open-{_P}",
            f"s3:{_P}:bucket/attestly-prod-archive-{_P}",
            f"s3:{_P}:bucket/attestly-prod-audit-{_P}",
            f"s3:{_P}:bucket/attestly-prod-trail-{_P}",
        ],
        "fail": [
            f"s3:{_S}:account-public-access-block",
            f"s3:{_S}:bucket/attestly-shared-tools-{_S}",
            f"s3:{_S}:bucket/attestly-shared-audit-{_S}",
        ],
    },
    "s3.versioning": {
        "pass": [
            f"s3:{_P}:bucket/attestly-prod-secure-{_P}",
            f"s3:{_P}:bucket/attestly-prod-archive-{_P}",
            f"s3:{_P}:bucket/attestly-prod-audit-{_P}",
            f"s3:{_P}:bucket/attestly-prod-trail-{_P}",
            f"s3:{_S}:bucket/attestly-shared-audit-{_S}",
        ],
        "fail": [f"s3:{_P}:bucket/attestly-prod-open-{_P}", f"s3:{_S}:bucket/attestly-shared-tools-{_S}"],
    },
    "s3.object_lock": {
        "pass": [f"s3:{_P}:bucket/attestly-prod-archive-{_P}", f"s3:{_S}:bucket/attestly-shared-audit-{_S}"],
        "fail": [f"s3:{_P}:bucket/attestly-prod-audit-{_P}"],
        "not_applicable": [
            f"s3:{_P}:bucket/attestly-prod-secure-{_P}",
            f"s3:{_P}:bucket/attestly-prod-open-{_P}",
            f"s3:{_P}:bucket/attestly-prod-trail-{_P}",
            f"s3:{_S}:bucket/attestly-shared-tools-{_S}",
        ],
    },
    "s3.tls_only": {
        "pass": [
            f"s3:{_P}:bucket/attestly-prod-secure-{_P}",
            f"s3:{_P}:bucket/attestly-prod-archive-{_P}",
            f"s3:{_P}:bucket/attestly-prod-trail-{_P}",
            f"s3:{_S}:bucket/attestly-shared-tools-{_S}",
        ],
        "fail": [
            f"s3:{_P}:bucket/attestly-prod-open-{_P}",
            f"s3:{_P}:bucket/attestly-prod-audit-{_P}",
            f"s3:{_S}:bucket/attestly-shared-audit-{_S}",
        ],
    },
    "kms.key_rotation": {
        "pass": [
            f"kms:{_PE}:key/<kms:alias/attestly-rotating>",
            f"kms:{_PW}:key/<kms:alias/attestly-archive>",
        ],
        "fail": [f"kms:{_PE}:key/<kms:alias/attestly-norotation>"],
        "not_applicable": [
            f"kms:{_PE}:key/<kms:alias/attestly-disabled>",
            f"kms:{_PE}:key/<kms:alias/attestly-signing>",
        ],
    },
    "cloudtrail.multi_region_trail": {
        "pass": [
            f"cloudtrail:{_PE}:trail/attestly-org-trail",
            f"cloudtrail:{_PW}:trail/attestly-org-trail",
            f"cloudtrail:{_PE}",
            f"cloudtrail:{_PW}",
        ],
        # Its log file validation is off: it fails on its own, although the org trail covers the region.
        "fail": [f"cloudtrail:{_PW}:trail/attestly-eu-local", f"cloudtrail:{_SE}"],
    },
    "ec2.open_security_groups": {
        "fail": [
            f"ec2:{_PE}:security-group/<sg:attestly-open-ssh>",
            f"ec2:{_PE}:security-group/<sg:attestly-open-postgres>",
            f"ec2:{_PW}:security-group/<sg:attestly-all-traffic>",
            f"ec2:{_PW}:security-group/<sg:attestly-port-range>",
        ],
        "pass": [
            f"ec2:{_PE}:security-group/<sg:default>",
            f"ec2:{_PE}:security-group/<sg:attestly-web>",
            f"ec2:{_PW}:security-group/<sg:default>",
            f"ec2:{_PW}:security-group/<sg:attestly-icmp>",
            f"ec2:{_SE}:security-group/<sg:default>",
            f"ec2:{_SE}:security-group/<sg:attestly-internal-db>",
        ],
    },
    "rds.storage_encryption": {
        "pass": [f"rds:{_PE}:db/attestly-prod-db", f"rds:{_PW}:db/attestly-eu-db"],
        "fail": [f"rds:{_PE}:db/attestly-legacy-db", f"rds:{_SE}:db/attestly-tools-db"],
    },
    "rds.backup_retention": {
        "pass": [f"rds:{_PE}:db/attestly-prod-db", f"rds:{_SE}:db/attestly-tools-db"],
        "fail": [f"rds:{_PE}:db/attestly-legacy-db", f"rds:{_PW}:db/attestly-eu-db"],
    },
    "config.recorder": {
        "pass": [f"config:{_PE}:recorder/default"],
        "fail": [f"config:{_PW}:recorder/default", f"config:{_SE}"],
    },
}
"""collector id -> status -> resources (with ``<kind:name>`` placeholders for generated ids)."""


class SeedError(RuntimeError):
    """The estate cannot be seeded (no local endpoint, unknown accounts)."""


_PLACEHOLDER = re.compile(r"<(sg|kms|key):([^>]+)>")


def id_key(account: str, region: str, kind: str, name: str) -> str:
    """The key of a generated id in the id map (``region`` is ``global`` for IAM access keys)."""
    return f"{account}:{region}:{kind}:{name}"


def resolve_expected(
    template: Mapping[str, Mapping[str, Sequence[str]]], ids: Mapping[str, str]
) -> dict[str, dict[str, list[str]]]:
    """Replace the ``<kind:name>`` placeholders of ``template`` with the ids in ``ids``."""

    def resolve(resource: str) -> str:
        parts = resource.split(":")
        account = parts[1]
        region = parts[2] if parts[0] in ("ec2", "kms") else "global"

        def sub(m: re.Match[str]) -> str:
            key = id_key(account, region, m.group(1), m.group(2))
            if key not in ids:
                raise SeedError(f"no id recorded for {m.group(0)} in {account}/{region}")
            return ids[key]

        return _PLACEHOLDER.sub(sub, resource)

    return {
        collector: {status: sorted(resolve(r) for r in resources) for status, resources in by_status.items()}
        for collector, by_status in template.items()
    }


# --- seeding --------------------------------------------------------------------------------------------


def _tolerate(call: Callable[[], Any], *codes: str) -> Any:
    """Run ``call``; an AWS error with one of ``codes`` (already exists / duplicate) returns None."""
    try:
        return call()
    except Exception as exc:
        if is_error(exc, *codes):
            return None
        raise


def _tls_statement(bucket: str) -> dict[str, Any]:
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


class _Account:
    """Seeding helpers for one account, acting through the admin role."""

    def __init__(self, session: Any, account_id: str, ids: dict[str, str]) -> None:
        self.session = session
        self.id = account_id
        self.ids = ids
        self.iam = session.client("iam")

    # IAM ---------------------------------------------------------------------------------------------
    def audit_role(self, trusted_account: str) -> None:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{trusted_account}:root"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        _tolerate(
            lambda: self.iam.create_role(RoleName=AUDIT_ROLE, AssumeRolePolicyDocument=json.dumps(trust)),
            "EntityAlreadyExists",
        )
        self.iam.update_assume_role_policy(RoleName=AUDIT_ROLE, PolicyDocument=json.dumps(trust))
        read_only = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": [
                        "iam:Get*",
                        "iam:List*",
                        "s3:GetAccountPublicAccessBlock",
                        "s3:GetBucket*",
                        "s3:GetEncryptionConfiguration",
                        "s3:GetObjectLockConfiguration",
                        "s3:ListAllMyBuckets",
                        "kms:Describe*",
                        "kms:Get*",
                        "kms:List*",
                        "cloudtrail:Describe*",
                        "cloudtrail:GetTrailStatus",
                        "ec2:DescribeSecurityGroups",
                        "rds:DescribeDBInstances",
                        "config:Describe*",
                    ],
                    "Resource": "*",
                }
            ],
        }
        self.iam.put_role_policy(
            RoleName=AUDIT_ROLE, PolicyName="attestly-read-only", PolicyDocument=json.dumps(read_only)
        )

    def user(
        self,
        name: str,
        *,
        console: bool = False,
        mfa: bool = False,
        key: str | None = None,
        policies: Sequence[str] = (),
        groups: Sequence[str] = (),
    ) -> None:
        """A user; ``key`` is ``"active"`` or ``"inactive"`` for one access key (never printed)."""
        _tolerate(lambda: self.iam.create_user(UserName=name), "EntityAlreadyExists")
        if console:
            _tolerate(
                lambda: self.iam.create_login_profile(
                    UserName=name, Password=secrets.token_urlsafe(18) + "aA1!"
                ),
                "EntityAlreadyExists",
            )
        if mfa and not self.iam.list_mfa_devices(UserName=name)["MFADevices"]:
            serial = f"arn:aws:iam::{self.id}:mfa/{name}"
            existing = [
                d["SerialNumber"]
                for d in self.iam.list_virtual_mfa_devices(AssignmentStatus="Unassigned")["VirtualMFADevices"]
            ]
            if serial not in existing:
                serial = self.iam.create_virtual_mfa_device(VirtualMFADeviceName=name)["VirtualMFADevice"][
                    "SerialNumber"
                ]
            self.iam.enable_mfa_device(
                UserName=name, SerialNumber=serial, AuthenticationCode1="123456", AuthenticationCode2="654321"
            )
        if key:
            keys = self.iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
            if keys:
                key_id = keys[0]["AccessKeyId"]
            else:
                key_id = self.iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
            self.iam.update_access_key(
                UserName=name, AccessKeyId=key_id, Status="Active" if key == "active" else "Inactive"
            )
            self.ids[id_key(self.id, "global", "key", name)] = key_id
        for arn in policies:
            self.iam.attach_user_policy(UserName=name, PolicyArn=arn)
        for group in groups:
            self.iam.add_user_to_group(GroupName=group, UserName=name)

    def group(
        self, name: str, *, inline: Mapping[str, Any] | None = None, policies: Sequence[str] = ()
    ) -> None:
        _tolerate(lambda: self.iam.create_group(GroupName=name), "EntityAlreadyExists")
        if inline:
            self.iam.put_group_policy(
                GroupName=name, PolicyName=f"{name}-inline", PolicyDocument=json.dumps(inline)
            )
        for arn in policies:
            self.iam.attach_group_policy(GroupName=name, PolicyArn=arn)

    def managed_policy(self, name: str, document: Mapping[str, Any]) -> str:
        arn = f"arn:aws:iam::{self.id}:policy/{name}"
        _tolerate(
            lambda: self.iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document)),
            "EntityAlreadyExists",
        )
        return arn

    def password_policy(self, **policy: Any) -> None:
        self.iam.update_account_password_policy(**policy)

    # S3 ----------------------------------------------------------------------------------------------
    def account_pab(self, **flags: bool) -> None:
        control = self.session.client("s3control")
        control.put_public_access_block(AccountId=self.id, PublicAccessBlockConfiguration=flags)

    def bucket(
        self,
        name: str,
        *,
        region: str,
        encryption: Mapping[str, Any] | None = None,
        versioning: str | None = None,
        pab: Mapping[str, bool] | None = None,
        policy: Sequence[Mapping[str, Any]] = (),
        object_lock: bool = False,
    ) -> None:
        s3 = self.session.client("s3", region_name=region)
        kwargs: dict[str, Any] = {"Bucket": name}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        if object_lock:
            kwargs["ObjectLockEnabledForBucket"] = True
        _tolerate(lambda: s3.create_bucket(**kwargs), "BucketAlreadyOwnedByYou")
        if encryption:
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": encryption}]
                },
            )
        if versioning:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning})
        if pab:
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=dict(pab))
        if policy:
            s3.put_bucket_policy(
                Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": list(policy)})
            )

    # KMS ---------------------------------------------------------------------------------------------
    def kms_key(
        self,
        alias: str,
        *,
        region: str,
        rotation: bool = False,
        enabled: bool = True,
        spec: str = "SYMMETRIC_DEFAULT",
        usage: str = "ENCRYPT_DECRYPT",
    ) -> str:
        kms = self.session.client("kms", region_name=region)
        aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
        key_id = aliases.get(alias)
        if not key_id:
            key_id = kms.create_key(KeySpec=spec, KeyUsage=usage, Description=alias)["KeyMetadata"]["KeyId"]
            kms.create_alias(AliasName=alias, TargetKeyId=key_id)
        if enabled:
            kms.enable_key(KeyId=key_id)
        if spec == "SYMMETRIC_DEFAULT":
            if rotation:
                kms.enable_key_rotation(KeyId=key_id)
            else:
                kms.disable_key_rotation(KeyId=key_id)
        if not enabled:
            kms.disable_key(KeyId=key_id)
        self.ids[id_key(self.id, region, "kms", alias)] = key_id
        return str(key_id)

    # CloudTrail --------------------------------------------------------------------------------------
    def trail(
        self, name: str, *, region: str, bucket: str, multi_region: bool, validation: bool, logging: bool
    ) -> None:
        ct = self.session.client("cloudtrail", region_name=region)
        settings = {
            "Name": name,
            "S3BucketName": bucket,
            "IsMultiRegionTrail": multi_region,
            "EnableLogFileValidation": validation,
        }
        if _tolerate(lambda: ct.create_trail(**settings), "TrailAlreadyExistsException") is None:
            ct.update_trail(**settings)
        if logging:
            ct.start_logging(Name=name)
        else:
            ct.stop_logging(Name=name)

    # EC2 ---------------------------------------------------------------------------------------------
    def security_groups(self, region: str, groups: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Create each named group in the default VPC with exactly ``rules`` (IpPermissions) added."""
        ec2 = self.session.client("ec2", region_name=region)
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise SeedError(f"account {self.id} region {region} has no default VPC")
        vpc_id = vpcs[0]["VpcId"]
        existing = {
            g["GroupName"]: g
            for g in ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])[
                "SecurityGroups"
            ]
        }
        self.ids[id_key(self.id, region, "sg", "default")] = existing["default"]["GroupId"]
        for name, rules in groups.items():
            if name in existing:
                group_id = existing[name]["GroupId"]
            else:
                group_id = ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc_id)[
                    "GroupId"
                ]
            for rule in rules:
                _tolerate(
                    functools.partial(
                        ec2.authorize_security_group_ingress, GroupId=group_id, IpPermissions=[dict(rule)]
                    ),
                    "InvalidPermission.Duplicate",
                )
            self.ids[id_key(self.id, region, "sg", name)] = group_id

    # RDS ---------------------------------------------------------------------------------------------
    def db(self, name: str, *, region: str, encrypted: bool, retention: int) -> None:
        rds = self.session.client("rds", region_name=region)
        created = _tolerate(
            lambda: rds.create_db_instance(
                DBInstanceIdentifier=name,
                DBInstanceClass="db.t3.micro",
                Engine="postgres",
                AllocatedStorage=20,
                MasterUsername="attestly",
                MasterUserPassword=secrets.token_urlsafe(18),
                StorageEncrypted=encrypted,
                BackupRetentionPeriod=retention,
            ),
            "DBInstanceAlreadyExists",
        )
        if created is None:
            rds.modify_db_instance(
                DBInstanceIdentifier=name, BackupRetentionPeriod=retention, ApplyImmediately=True
            )

    # Config ------------------------------------------------------------------------------------------
    def recorder(self, *, region: str, bucket: str, recording: bool) -> None:
        cfg = self.session.client("config", region_name=region)
        cfg.put_configuration_recorder(
            ConfigurationRecorder={
                "name": "default",
                "roleARN": f"arn:aws:iam::{self.id}:role/aws-service-role/config.amazonaws.com/"
                "AWSServiceRoleForConfig",
                "recordingGroup": {"allSupported": True, "includeGlobalResourceTypes": region == "us-east-1"},
            }
        )
        if recording:
            cfg.put_delivery_channel(DeliveryChannel={"name": "default", "s3BucketName": bucket})
            cfg.start_configuration_recorder(ConfigurationRecorderName="default")
        else:
            cfg.stop_configuration_recorder(ConfigurationRecorderName="default")


_ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
_READ_S3 = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": "*"}],
}
_PAB_ALL = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
_AES = {"SSEAlgorithm": "AES256"}


def _tcp(port_from: int, port_to: int, *cidrs: str, v6: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "IpProtocol": "tcp",
        "FromPort": port_from,
        "ToPort": port_to,
        "IpRanges": [{"CidrIp": c} for c in cidrs],
        "Ipv6Ranges": [{"CidrIpv6": c} for c in v6],
    }


def _seed_prod(acct: _Account) -> None:
    a = acct.id
    east, west = "us-east-1", "eu-west-1"
    # IAM
    admin_arn = acct.managed_policy("attestly-demo-admin", _ALLOW_ALL)
    read_arn = acct.managed_policy("attestly-demo-readonly", _READ_S3)
    acct.group("ops-admins", inline=_ALLOW_ALL)
    acct.group("auditors", policies=[read_arn])
    acct.user("alice-nomfa", console=True, groups=["auditors"])
    acct.user("bob-mfa", console=True, mfa=True, groups=["ops-admins"])
    acct.user("carol-admin", console=True, mfa=True, policies=[admin_arn])
    acct.user("svc-deploy", key="active")
    acct.user("svc-rotated", key="inactive")
    acct.password_policy(
        MinimumPasswordLength=14,
        RequireSymbols=True,
        RequireNumbers=True,
        RequireUppercaseCharacters=True,
        RequireLowercaseCharacters=True,
        AllowUsersToChangePassword=True,
        MaxPasswordAge=90,
        PasswordReusePrevention=24,
    )
    # KMS
    acct.kms_key("alias/attestly-rotating", region=east, rotation=True)
    acct.kms_key("alias/attestly-norotation", region=east, rotation=False)
    acct.kms_key("alias/attestly-disabled", region=east, rotation=False, enabled=False)
    acct.kms_key("alias/attestly-signing", region=east, spec="ECC_NIST_P256", usage="SIGN_VERIFY")
    archive_key = acct.kms_key("alias/attestly-archive", region=west, rotation=True)
    # S3
    acct.account_pab(**_PAB_ALL)
    secure, open_, archive = (
        f"attestly-prod-secure-{a}",
        f"attestly-prod-open-{a}",
        f"attestly-prod-archive-{a}",
    )
    audit, trail_bucket = f"attestly-prod-audit-{a}", f"attestly-prod-trail-{a}"
    acct.bucket(
        secure,
        region=east,
        encryption=_AES,
        versioning="Enabled",
        pab=_PAB_ALL,
        policy=[_tls_statement(secure)],
    )
    acct.bucket(open_, region=east)
    acct.bucket(
        archive,
        region=west,
        object_lock=True,
        encryption={"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": archive_key},
        pab=_PAB_ALL,
        policy=[_tls_statement(archive)],
    )
    acct.bucket(
        audit,
        region=east,
        encryption=_AES,
        versioning="Enabled",
        policy=[
            {
                "Sid": "ReadForAuditors",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{a}:root"},
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{audit}/*",
            }
        ],
    )
    acct.bucket(
        trail_bucket,
        region=east,
        encryption=_AES,
        versioning="Enabled",
        pab=_PAB_ALL,
        policy=[
            _tls_statement(trail_bucket),
            {
                "Sid": "CloudTrailWrite",
                "Effect": "Allow",
                "Principal": {"Service": "cloudtrail.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{trail_bucket}/AWSLogs/{a}/*",
            },
        ],
    )
    # CloudTrail
    acct.trail(
        "attestly-org-trail",
        region=east,
        bucket=trail_bucket,
        multi_region=True,
        validation=True,
        logging=True,
    )
    acct.trail(
        "attestly-eu-local",
        region=west,
        bucket=trail_bucket,
        multi_region=False,
        validation=False,
        logging=False,
    )
    # EC2
    acct.security_groups(
        east,
        {
            "attestly-open-ssh": [_tcp(22, 22, "0.0.0.0/0")],
            "attestly-open-postgres": [_tcp(5432, 5432, v6=["::/0"])],
            "attestly-web": [_tcp(443, 443, "0.0.0.0/0", v6=["::/0"]), _tcp(22, 22, "10.0.0.0/8")],
        },
    )
    acct.security_groups(
        west,
        {
            "attestly-all-traffic": [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
            "attestly-port-range": [_tcp(3000, 3400, "0.0.0.0/0")],
            "attestly-icmp": [
                {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
            ],
        },
    )
    # RDS
    acct.db("attestly-prod-db", region=east, encrypted=True, retention=14)
    acct.db("attestly-legacy-db", region=east, encrypted=False, retention=1)
    acct.db("attestly-eu-db", region=west, encrypted=True, retention=0)
    # Config
    acct.recorder(region=east, bucket=trail_bucket, recording=True)
    acct.recorder(region=west, bucket=trail_bucket, recording=False)


def _seed_shared(acct: _Account) -> None:
    a = acct.id
    east = "us-east-1"
    acct.group("developers", policies=[acct.managed_policy("attestly-demo-readonly", _READ_S3)])
    acct.user("frank-nomfa", console=True, groups=["developers"])
    acct.user("grace-mfa", console=True, mfa=True)
    acct.user("svc-backup", key="active")
    acct.password_policy(MinimumPasswordLength=8, RequireNumbers=True, AllowUsersToChangePassword=True)
    tools, audit = f"attestly-shared-tools-{a}", f"attestly-shared-audit-{a}"
    acct.bucket(
        tools,
        region=east,
        encryption=_AES,
        versioning="Suspended",
        pab={**_PAB_ALL, "RestrictPublicBuckets": False},
        policy=[_tls_statement(tools)],
    )
    acct.bucket(audit, region=east, object_lock=True)
    acct.security_groups(east, {"attestly-internal-db": [_tcp(5432, 5432, "10.0.0.0/16")]})
    acct.db("attestly-tools-db", region=east, encrypted=False, retention=7)


_SEEDERS: dict[str, Callable[[_Account], None]] = {PROD: _seed_prod, SHARED: _seed_shared}


def seed_aws_estate(
    *, accounts: Sequence[AccountTarget] = SEED_ACCOUNTS, aws_conn_id: str = "aws_default"
) -> dict[str, dict[str, list[str]]]:
    """Create (or bring back to) the known estate; return :data:`EXPECTED_FINDINGS` with real ids.

    ``accounts`` must contain the accounts of :data:`SEED_ACCOUNTS` (same ids and regions; role and
    endpoint may differ). Base credentials come from ``aws_conn_id``; each account's endpoint is its
    ``endpoint_url`` or the connection's. Raises :class:`SeedError` if an endpoint is missing (this
    never seeds real AWS) or the accounts do not match; AWS errors propagate.
    """
    from attestly.collectors.aws._session import assume_role_session, base_session, connection_endpoint

    by_id = {a.id: a for a in accounts}
    for known in SEED_ACCOUNTS:
        given = by_id.get(known.id)
        if given is None:
            raise SeedError(f"the seeded estate needs account {known.id} ({known.name})")
        if tuple(given.regions) != known.regions:
            raise SeedError(
                f"account {known.id}: regions must be {list(known.regions)}, got {list(given.regions)}"
            )
    conn_endpoint = connection_endpoint(aws_conn_id)
    ids: dict[str, str] = {}
    for known in SEED_ACCOUNTS:
        target = by_id[known.id]
        endpoint = target.endpoint_url or conn_endpoint
        if not endpoint:
            raise SeedError(
                f"refusing to seed account {known.id}: no endpoint_url on the account or on connection "
                f"{aws_conn_id!r} (the seeder only runs against a local endpoint such as moto)"
            )
        home = known.regions[0]
        base = base_session(aws_conn_id=aws_conn_id, region_name=home, endpoint_url=endpoint)
        trusted = base.client("sts").get_caller_identity()["Account"]
        admin = assume_role_session(
            aws_conn_id=aws_conn_id,
            role_arn=f"arn:aws:iam::{known.id}:role/{ADMIN_ROLE}",
            session_name="attestly-seed",
            region_name=home,
            endpoint_url=endpoint,
        )
        acting = admin.client("sts").get_caller_identity()["Account"]
        if acting != known.id:
            raise SeedError(f"assuming {ADMIN_ROLE} in {known.id} acts in account {acting}")
        acct = _Account(admin, known.id, ids)
        acct.audit_role(trusted)
        _SEEDERS[known.id](acct)
    return resolve_expected(EXPECTED_FINDINGS, ids)


__all__ = [
    "EXPECTED_FINDINGS",
    "SEED_ACCOUNTS",
    "SEED_PARAMS",
    "SeedError",
    "resolve_expected",
    "seed_aws_estate",
]
