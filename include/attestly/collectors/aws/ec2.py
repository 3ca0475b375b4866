"""EC2 security group collector (per account x region).

Resource: ``ec2:<account>:<region>:security-group/<group-id>``; the detail starts with the group name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from attestly.collectors.aws._common import (
    CollectorResult,
    CollectorSpec,
    bad,
    ok,
    paginate,
    param,
    summary,
)
from attestly.evidence import Finding

if TYPE_CHECKING:
    from boto3 import Session

OPEN_CIDRS = ("0.0.0.0/0", "::/0")
_PROTOCOLS = {"tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp", "-1": "all"}


def exposed_ports(permission: Mapping[str, Any], ports: set[int]) -> list[str]:
    """Descriptions (``"tcp 22 from 0.0.0.0/0"``) of the watched ``ports`` an ingress rule opens to
    the internet; all-traffic rules (protocol -1) and port ranges count, ICMP and others do not."""
    protocol = _PROTOCOLS.get(str(permission.get("IpProtocol", "")).lower())
    if protocol is None:
        return []
    sources = [r.get("CidrIp") for r in permission.get("IpRanges") or []]
    sources += [r.get("CidrIpv6") for r in permission.get("Ipv6Ranges") or []]
    open_from = sorted({s for s in sources if s in OPEN_CIDRS})
    if not open_from:
        return []
    if protocol == "all":
        hit = sorted(ports)
        label = "all traffic"
    else:
        low, high = permission.get("FromPort"), permission.get("ToPort")
        if low is None or high is None or low == -1:
            low, high = 0, 65535
        hit = sorted(p for p in ports if int(low) <= p <= int(high))
        label = protocol
    if not hit:
        return []
    port_list = ",".join(str(p) for p in hit)
    return [f"{label} {port_list} from {cidr}" for cidr in open_from]


def open_security_groups(
    session: Session, *, region: str, account_id: str, params: Mapping[str, Any]
) -> CollectorResult:
    """No security group may allow ingress from ``0.0.0.0/0`` or ``::/0`` to any of ``admin_ports`` or
    ``database_ports`` (all-traffic rules and port ranges that cover them included)."""
    ports = {int(p) for p in param(params, "admin_ports")} | {int(p) for p in param(params, "database_ports")}
    ec2 = session.client("ec2", region_name=region)
    findings: list[Finding] = []
    for group in paginate(ec2, "describe_security_groups", "SecurityGroups"):
        res = f"ec2:{account_id}:{region}:security-group/{group['GroupId']}"
        exposures: list[str] = []
        for permission in group.get("IpPermissions") or []:
            exposures.extend(exposed_ports(permission, ports))
        name = group.get("GroupName", "")
        if exposures:
            findings.append(bad(res, f"{name}: open to the internet: " + "; ".join(sorted(exposures))))
        else:
            findings.append(ok(res, f"{name}: no watched port open to the internet"))
    return findings, summary(findings, watched_ports=sorted(ports))


COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec(
        "ec2.open_security_groups",
        "ec2",
        "region",
        open_security_groups,
        population="EC2 security groups in the region",
        enumerated_by="ec2:DescribeSecurityGroups (every page)",
    ),
)
