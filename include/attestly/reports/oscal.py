"""The period's results as an OSCAL assessment-results document (OSCAL 1.1.3 JSON).

One ``result`` for the framework and period; per control one ``observation`` (the daily evidence, its
counts, links to the control report and to the failing evidence objects) and one ``finding`` whose
target is the control's objective with state ``satisfied`` (effective) or ``not-satisfied``
(exceptions: reason ``fail``; no evidence: reason ``other``). OSCAL ids must be tokens, so control ids
are mapped (``hipaa:164.312(a)(1)`` -> ``hipaa-164.312.a.1``) and the original id is kept in a prop.

Deterministic: UUIDs are version-5 UUIDs of the content's names, and ``last-modified`` is the end of
the assessed period (the rendering time is in the ledger, not here). Built from plain dicts; nothing
here imports compliance-trestle (which the tests use to validate the output).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from typing import Any

from attestly.evidence import canonical_json_v1, object_key

OSCAL_VERSION = "1.1.3"
NS = "urn:attestly:oscal"
_NAMESPACE = uuid.UUID("9b7f3c1e-5d2a-4f6b-8c3e-2a1d0e9f7b64")
_TOKEN_BAD = re.compile(r"[^A-Za-z0-9_.\-]+")


def oscal_control_id(control_id: str) -> str:
    """An OSCAL token for a control id: ``soc2:CC6.1`` -> ``soc2-cc6.1``."""
    framework, _, ref = control_id.partition(":")
    ref = ref.replace(")(", ".").replace("(", ".").replace(")", "")
    token = f"{framework}-{_TOKEN_BAD.sub('-', ref)}".lower().strip("-.")
    return token if token[:1].isalpha() else f"c-{token}"


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


def _prop(name: str, value: object) -> dict[str, str]:
    return {"name": name, "ns": NS, "value": str(value)}


def _collected(report: dict[str, Any], fallback: str) -> str:
    """When the observation's evidence was really collected: the latest ``observed_at`` of its items
    (the end of the period only for items recorded before observation times existed)."""
    times = [str(e["observed_at"]) for e in report["evidence"] if e.get("observed_at")]
    return max(times).replace("Z", "+00:00") if times else fallback


def _provenance_props(report: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    times = sorted(str(e["observed_at"]) for e in report["evidence"] if e.get("observed_at"))
    if times:
        out.append(_prop("observed-first", times[0]))
        out.append(_prop("observed-last", times[-1]))
    sizes = [
        e["population"]["size"]
        for e in report["evidence"]
        if (e.get("population") or {}).get("size") is not None
    ]
    if sizes:
        out.append(_prop("population-examined", sum(sizes)))
    for sha in report.get("policies") or []:
        out.append(_prop("policy-sha256", sha))
    for who in sorted({str(r["triggered_by"]) for r in report.get("runs") or [] if r.get("triggered_by")}):
        out.append(_prop("run-triggered-by", who))
    return out


#: An Attestly exception state as an OSCAL risk status.
RISK_STATUS = {"open": "open", "overdue": "open", "closed": "closed"}


def _risk(seed: str, risk_uuid: str, x: dict[str, Any], observations: list[dict[str, str]]) -> dict[str, Any]:
    """An exception response (``control_report.exception_responses[]``) as an OSCAL ``risk`` with
    management's response as its ``remediations`` entry and the lifecycle in its ``risk-log``."""
    t = x["target"]
    what = (
        f"evidence item {t['item']} from {t['collector']} ({t['result']})"
        if t["type"] == "item"
        else f"finding for resource {t['resource']} from {t['collector']} ({t['failing_items']} failing items)"
    )
    eid = x["exception_id"]
    response_uuid = _uuid(seed, "response", eid)
    entries: list[dict[str, Any]] = [
        {
            "uuid": _uuid(seed, "risk-log", eid, "response"),
            "title": "Response recorded",
            "description": f"Owner {x['owner']}, ticket {x['ticket']}, due {x['due']}; by {x['responded_by']}.",
            "start": x["responded_at"],
            "props": [_prop("ledger-seq", x["response_seq"])],
            "related-responses": [{"response-uuid": response_uuid}],
        }
    ]
    if x.get("accepted_by"):
        entries.append(
            {
                "uuid": _uuid(seed, "risk-log", eid, "accept"),
                "title": "Response accepted",
                "description": f"Accepted by {x['accepted_by']}.",
                "start": x["accepted_at"],
                "props": [_prop("ledger-seq", x["accept_seq"])],
                "related-responses": [{"response-uuid": response_uuid}],
            }
        )
    if x.get("retest"):
        rt = x["retest"]
        entries.append(
            {
                "uuid": _uuid(seed, "risk-log", eid, "close"),
                "title": "Closed with a passing re-test",
                "description": (
                    f"Re-tested by evidence item {rt['item']} ({rt['collector']}, {rt['result']}, observed "
                    f"{rt['period_start']} to {rt['period_end']}); closed by {x['closed_by']}"
                    f"{' after the due date' if x.get('closed_late') else ''}."
                ),
                "start": x["closed_at"],
                "props": [_prop("ledger-seq", x["close_seq"]), _prop("retest-item", rt["item"])],
                "status-change": "closed",
                "related-responses": [{"response-uuid": response_uuid}],
            }
        )
    return {
        "uuid": risk_uuid,
        "title": f"{eid}: {what}",
        "description": f"Exception for {', '.join(x['controls'])}: {what}, first failed {t['first_failed']}.",
        "statement": f"Root cause: {x['root_cause']}",
        "props": [
            _prop("attestly-exception-id", eid),
            _prop("attestly-exception-state", x["state"]),
            _prop("owner", x["owner"]),
            _prop("ticket", x["ticket"]),
        ],
        "status": RISK_STATUS[x["state"]],
        "deadline": f"{x['due']}T23:59:59+00:00",
        "remediations": [
            {
                "uuid": response_uuid,
                "lifecycle": "completed" if x.get("retest") else "planned",
                "title": f"Remediation {x['ticket']}",
                "description": f"Owner {x['owner']}; due {x['due']}. Root cause: {x['root_cause']}",
                "props": [_prop("ticket", x["ticket"]), _prop("owner", x["owner"])],
            }
        ],
        "risk-log": {"entries": entries},
        "related-observations": observations,
    }


def assessment_results(
    *, index: dict[str, Any], reports: Sequence[dict[str, Any]], bucket: str
) -> dict[str, Any]:
    """The OSCAL document for one framework index and its control reports."""
    fw = index["framework"]
    period = index["period"]
    label = period["label"]
    seed = hashlib.sha256(canonical_json_v1([index, [r["control"]["id"] for r in reports]])).hexdigest()
    start = f"{period['start']}T00:00:00+00:00"
    # The exclusive end of the last day, written as a timestamp OSCAL accepts.
    end_day = reports[0]["days"][-1]["date"] if reports and reports[0]["days"] else period["end"]
    end = f"{end_day}T23:59:59+00:00"
    observations: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    risks: dict[str, dict[str, Any]] = {}
    for r in reports:
        if r["status"] == "not_in_scope":
            continue  # not assessed: no observation or finding (the index lists it as not in scope)
        c = r["control"]
        token = oscal_control_id(c["id"])
        obs_uuid = _uuid(seed, "observation", c["id"])
        counts = r["day_counts"]
        evidence_links = [
            {"href": f"controls/{c['slug']}.json", "description": f"Attestly control report for {c['id']}"}
        ]
        for sha in sorted({s for e in r["exceptions"] for s in e["evidence"]}):
            evidence_links.append(
                {
                    "href": f"s3://{bucket}/{object_key(sha)}",
                    "description": f"failing evidence item {sha}",
                }
            )
        observations.append(
            {
                "uuid": obs_uuid,
                "title": f"{c['id']} daily evidence {label}",
                "description": (
                    f"Daily evidence for {c['id']} ({c['title']}) from the collectors "
                    f"{', '.join(c['collectors']) or 'none'}{' and manual evidence' if c.get('manual') else ''}: "
                    f"{counts.get('effective', 0)} effective, {counts.get('exception', 0)} exception, "
                    f"{counts.get('no_evidence', 0)} no-evidence and {counts.get('not_assessed', 0)} "
                    f"not-assessed days; {len(r['evidence'])} evidence items."
                ),
                "props": [
                    _prop("attestly-control-id", c["id"]),
                    _prop("attestly-status", r["status"]),
                    *(_prop(f"{k.replace('_', '-')}-days", v) for k, v in sorted(counts.items())),
                    *_provenance_props(r),
                ],
                "methods": ["TEST"],
                "types": ["control-objective"],
                "relevant-evidence": evidence_links,
                "collected": _collected(r, end),
            }
        )
        status = r["status"]
        state = {"state": "satisfied", "reason": "pass"}
        if status == "exceptions":
            state = {"state": "not-satisfied", "reason": "fail"}
        elif status == "no_evidence":
            state = {"state": "not-satisfied", "reason": "other"}
        findings.append(
            {
                "uuid": _uuid(seed, "finding", c["id"]),
                "title": f"{c['id']}: {c['title']}",
                "description": f"Status over {label}: {status.replace('_', ' ')}. {r['status_rule']}",
                "props": [_prop("attestly-control-id", c["id"]), _prop("attestly-status", status)],
                "target": {
                    "type": "objective-id",
                    "target-id": token,
                    "title": f"{c['id']} {c['title']}",
                    "status": state,
                },
                "related-observations": [{"observation-uuid": obs_uuid}],
            }
        )
        related = []
        for x in r.get("exception_responses", []):
            risk_uuid = _uuid(seed, "risk", x["exception_id"])
            related.append({"risk-uuid": risk_uuid})
            if risk_uuid not in risks:
                risks[risk_uuid] = _risk(seed, risk_uuid, x, [])
            risks[risk_uuid]["related-observations"].append({"observation-uuid": obs_uuid})
        if related:
            findings[-1]["related-risks"] = related
    result: dict[str, Any] = {
        "uuid": _uuid(seed, "result"),
        "title": f"{fw['name']} controls, {label}",
        "description": (
            f"Automated assessment of {len(reports)} {fw['name']} ({fw['version']}) controls from the "
            f"Attestly evidence ledger for {period['start']} to {period['end']}. {index['status_rule']}"
        ),
        "start": start,
        "end": end,
        "props": [
            _prop("policy-fingerprint", index["policy_fingerprint"]),
            _prop("evidence-items", index["evidence_count"]),
            *(_prop(f"controls-{k.replace('_', '-')}", v) for k, v in sorted(index["status_counts"].items())),
        ],
        "reviewed-controls": {
            "control-selections": [
                {"include-controls": [{"control-id": oscal_control_id(r["control"]["id"])} for r in reports]}
            ]
        },
    }
    if observations:
        result["observations"] = observations
        if risks:
            result["risks"] = [risks[k] for k in sorted(risks, key=lambda u: risks[u]["title"])]
        result["findings"] = findings
    return {
        "assessment-results": {
            "uuid": _uuid(seed, "assessment-results"),
            "metadata": {
                "title": f"Attestly assessment results: {fw['name']} {label}",
                "last-modified": f"{period['end']}T23:59:59+00:00",
                "version": f"{label}+{index['policy_fingerprint'][:12]}",
                "oscal-version": OSCAL_VERSION,
                "remarks": (
                    "Generated by Attestly from its hash-chained evidence ledger. last-modified is the end of "
                    "the assessed period so that re-rendering gives identical bytes; the rendering time is "
                    "recorded in the ledger."
                ),
            },
            "import-ap": {
                "href": "#attestly-policy",
                "remarks": (
                    "No separate assessment plan: the plan is the Attestly policy (controls.yaml) with "
                    f"fingerprint {index['policy_fingerprint']}."
                ),
            },
            "results": [result],
        }
    }
