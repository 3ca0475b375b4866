"""Prowler's ``json-ocsf`` output (OCSF 1.x Detection Findings) as :class:`SourceFinding`.

Where Prowler 5 puts things: the check id in ``metadata.event_code``; ``status_code`` PASS / FAIL /
MANUAL; ``status`` "Suppressed" when Prowler's own mutelist muted it; ``status_detail`` the sentence;
``cloud.account.uid`` and ``cloud.region``; ``resources[0].uid`` (the ARN, else the name); the framework
mappings in ``unmapped.compliance`` (Attestly maps checks through Prowler's compliance files instead:
see :mod:`attestly.scanners.mapping`).
"""

from __future__ import annotations

import json
from typing import Any

from attestly.scanners.model import SourceFinding, SourceFormatError

STATUSES = ("PASS", "FAIL", "MANUAL")


def _get(obj: Any, path: str, where: str, *, required: bool = True) -> Any:
    cur = obj
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            if required:
                raise SourceFormatError(f"{where}: no {path}")
            return None
    return cur


def _text(obj: Any, path: str, where: str, *, required: bool = True) -> str:
    value = _get(obj, path, where, required=required)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SourceFormatError(f"{where}: {path} is {type(value).__name__}, not a string")
    return value


def parse_ocsf(raw: bytes, *, name: str = "prowler output") -> list[SourceFinding]:
    """Every finding of a Prowler ``json-ocsf`` file; :class:`SourceFormatError` names the first bad one."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceFormatError(f"{name}: not JSON ({exc})") from None
    if not isinstance(doc, list):
        raise SourceFormatError(f"{name}: expected a JSON array of OCSF findings, got {type(doc).__name__}")
    out = []
    for i, f in enumerate(doc):
        where = f"{name}: finding {i}"
        if not isinstance(f, dict):
            raise SourceFormatError(f"{where}: not an object")
        check = _text(f, "metadata.event_code", where)
        where = f"{where} ({check})"
        status = _text(f, "status_code", where).upper()
        if status not in STATUSES:
            raise SourceFormatError(f"{where}: status_code {status!r} is not one of {', '.join(STATUSES)}")
        resource = _text(f, "resources.0.uid", where, required=False) or _text(f, "resources.0.name", where)
        compliance = _get(f, "unmapped.compliance", where, required=False) or {}
        muted = _text(f, "status", where, required=False).lower() == "suppressed"
        out.append(
            SourceFinding(
                source="prowler",
                check=check,
                title=_text(f, "finding_info.title", where, required=False),
                account=_text(f, "cloud.account.uid", where),
                region=_text(f, "cloud.region", where, required=False) or "global",
                resource=resource,
                status=status,  # type: ignore[arg-type]
                detail=_text(f, "status_detail", where, required=False)
                or _text(f, "message", where, required=False),
                muted=muted,
                muted_reason="muted by Prowler's mutelist" if muted else "",
                severity=_text(f, "severity", where, required=False),
                requirements={
                    str(k): tuple(str(x) for x in v) for k, v in compliance.items() if isinstance(v, list)
                },
            )
        )
    return out
