"""Task bodies of ``audit_log_quality``: validate the interval with the GX suite, store the result as
evidence first, then alert the control owners and fail when a check failed."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

from attestly.workflows.common import airflow_context, interval, task_summary

COLLECTOR = "quality.audit_log"


def validate(context: Any) -> dict[str, Any]:
    """Run the suite and record the result as evidence; succeed either way (the verdict is the next task's)."""
    from attestly.ledger import Ledger
    from attestly.policy import load_policy
    from attestly.quality import run_quality
    from attestly.recording import record_evidence
    from attestly.store import EvidenceStore

    start, end = interval(context)
    policy = load_policy()
    observed_at = datetime.now(UTC)  # provenance only: the observation hash leaves it out
    result = run_quality(start=start, end=end, policy=policy)
    item = result.to_evidence(
        controls=policy.controls_for_collector(COLLECTOR),
        airflow=airflow_context(context),
        observed_at=observed_at,
    )
    with Ledger.connect() as ledger:
        recorded = record_evidence(item, store=EvidenceStore.from_connection(), ledger=ledger)
    summary = task_summary(context, [recorded])
    summary["quality"] = {
        "success": result.success,
        "failed": [
            {
                "check": c.name,
                "unexpected": c.unexpected_count,
                "sample_ids": list(c.sample_ids)[:5],
                "detail": c.detail,
            }
            for c in result.checks
            if not c.success
        ],
        "checks": len(result.checks),
        "evidence": recorded["sha256"],
    }
    return summary


def alert(summary: dict[str, Any], context: Any) -> str | None:
    """E-mail the owners of the controls the suite serves when a check failed; returns the Message-ID."""
    from attestly.notify import send_email
    from attestly.workflows.common import owners_of

    q = summary["quality"]
    if q["success"]:
        return None
    start, end = interval(context)
    rows = "".join(
        f"<tr><td>{html.escape(f['check'])}</td><td>{f['unexpected']}</td>"
        f"<td>{html.escape(', '.join(map(str, f['sample_ids'])))}</td><td>{html.escape(str(f['detail']))}</td></tr>"
        for f in q["failed"]
    )
    body = (
        f"<p>The audit log for <b>{start.isoformat()}</b> – <b>{end.isoformat()}</b> failed "
        f"{len(q['failed'])} of {q['checks']} completeness and integrity checks.</p>"
        "<table border='1' cellpadding='4'><tr><th>check</th><th>unexpected</th><th>sample row ids</th>"
        f"<th>where</th></tr>{rows}</table>"
        f"<p>The full result is evidence <code>{q['evidence']}</code> "
        f"(<code>attestly evidence show {q['evidence']}</code>). Row ids only: no values are shown.</p>"
    )
    return send_email(
        to=owners_of([COLLECTOR]),
        subject=f"[Attestly] audit log quality FAILED for {start.date().isoformat()}: "
        + ", ".join(f["check"] for f in q["failed"])[:150],
        html=body,
    )


def enforce(summary: dict[str, Any]) -> None:
    """Fail (without retrying: the data will not change) when a check failed."""
    from airflow.sdk.exceptions import AirflowFailException

    q = summary["quality"]
    if not q["success"]:
        failed = ", ".join(f"{f['check']} ({f['unexpected']})" for f in q["failed"])
        raise AirflowFailException(f"audit log quality failed: {failed}; evidence {q['evidence']}")
