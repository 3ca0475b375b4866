"""Task bodies of ``control_reports``: wait for the period's last evidence, plan, render, store, e-mail.

- ``await_evidence`` (scheduled runs only): done once the ``evidence_collection`` run for the period's
  last day is in the ledger, or ``wait_for_evidence_hours`` after the period ended (then the report
  shows what is there: a missing day is *no evidence*, never effective).
- ``plan``: the params (or the data interval) -> one job per framework; bad params fail here, naming
  the value.
- ``render``: renders the bundle from the ledger and writes its files to a local work directory;
  returns the rendition id and file hashes (XCom holds no report content).
- ``store``: stores the files (create-only) and the ``report`` ledger entry. Reads the work directory
  when it runs on the same worker, else re-renders and insists on the same rendition.
- ``email``: reads the stored index PDF and packet back from the bucket (checking their SHA-256),
  sends the summary, ledgers a ``report`` entry with ``event: "emailed"`` (once per run and rendition:
  a retry after a successful send does not send again). A failed send fails and retries this task only.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from attestly.reports.bundle import FORMATS
from attestly.reports.model import Period, ReportInputError
from attestly.workflows.common import airflow_context, interval

log = logging.getLogger(__name__)

#: The daily workflow whose run for the last day of the period the scheduled report waits for.
EVIDENCE_DAG = "evidence_collection"
DEFAULT_WAIT_HOURS = 6.0
#: E-mails are ledgered as kind ``report`` with ``event: "emailed"`` (stored reports: ``event: "stored"``).
EMAIL_EVENT = "emailed"


class RenditionChanged(RuntimeError):
    """The ledger changed between ``render`` and ``store``: the stored report would not be the rendered one."""


def default_params() -> dict[str, Any]:
    """Param defaults (the DAG file turns them into ``Param`` objects with JSON schemas)."""
    from attestly.policy import FRAMEWORKS

    return {
        "frameworks": list(FRAMEWORKS),
        "controls": [],
        "period_start": None,
        "period_end": None,
        "recipients": [],
        "include_owners": True,
        "formats": list(FORMATS),
        "send_email": True,
        "attach_limit_mb": 10,
        "wait_for_evidence_hours": DEFAULT_WAIT_HOURS,
    }


def _params(context: Any) -> dict[str, Any]:
    params = dict(default_params())
    given = context.get("params") or {}
    params.update({k: given[k] for k in given if k in params})
    return params


def _period(context: Any, params: Mapping[str, Any]) -> tuple[Period, bool]:
    """The requested period and whether it came from the params (an on-demand period)."""
    start, end = params.get("period_start"), params.get("period_end")
    if start or end:
        if not (start and end):
            raise ReportInputError(
                f"give both period_start and period_end (got period_start={start!r}, period_end={end!r})"
            )
        return Period.parse(start, end), True
    s, e = interval(context)
    return Period.from_interval(s, e), False


def _str_list(value: object, *, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    raise ReportInputError(f"param {name} {value!r} must be a list of strings")


def plan(context: Any) -> list[dict[str, Any]]:
    """One JSON-able job per requested framework; every param checked (errors name the value)."""
    from attestly.policy import load_policy
    from attestly.reports.bundle import ReportRequest
    from attestly.reports.mail import ReportSettings

    params = _params(context)
    period, on_demand = _period(context, params)
    policy = load_policy()
    frameworks = _str_list(params["frameworks"], name="frameworks") or list(policy.frameworks)
    controls = _str_list(params["controls"], name="controls")
    formats = tuple(_str_list(params["formats"], name="formats")) or FORMATS
    settings = ReportSettings.from_mapping(
        {
            "attach_limit_mb": params["attach_limit_mb"],
            "recipients": _str_list(params["recipients"], name="recipients"),
            "include_owners": params["include_owners"],
        }
    )
    for cid in controls:
        if cid not in policy.controls:
            raise ReportInputError(f"unknown control {cid!r} in param controls")
    jobs = []
    for fw in frameworks:
        if fw not in policy.frameworks:
            raise ReportInputError(
                f"unknown framework {fw!r} in param frameworks (known: {', '.join(policy.frameworks)})"
            )
        mine = [c for c in controls if policy.controls[c].framework == fw]
        if controls and not mine:
            continue  # controls were chosen, none in this framework
        request = ReportRequest(framework=fw, period=period, controls=tuple(mine), formats=formats)
        request.control_ids(policy)
        jobs.append(
            {
                "framework": fw,
                "period_start": period.start.isoformat(),
                "period_end": period.end.isoformat(),
                "controls": mine,
                "formats": list(formats),
                "recipients": list(settings.recipients),
                "include_owners": settings.include_owners,
                "attach_limit_mb": settings.attach_limit_mb,
                "send_email": bool(params["send_email"]),
                "on_demand": on_demand,
            }
        )
    if not jobs:
        raise ReportInputError(f"nothing to report: controls {controls} are not in frameworks {frameworks}")
    return jobs


def _request(job: Mapping[str, Any]) -> Any:
    from attestly.reports.bundle import ReportRequest

    return ReportRequest(
        framework=str(job["framework"]),
        period=Period.parse(job["period_start"], job["period_end"]),
        controls=tuple(job.get("controls") or ()),
        formats=tuple(job.get("formats") or FORMATS),
    )


def _render(job: Mapping[str, Any]) -> Any:
    from attestly.ledger import Ledger
    from attestly.reports.bundle import airflow_base_url, render_reports
    from attestly.signing import signer_from_connection
    from attestly.store import EvidenceStore

    store = EvidenceStore.from_connection()
    signer = signer_from_connection()
    with Ledger.connect() as ledger:
        (bundle,) = render_reports(
            requests=[_request(job)],
            ledger=ledger,
            store=store,
            public_key_pem=signer.public_key_pem(),
            airflow_base_url=airflow_base_url(),
            signer=signer,  # SHA256SUMS.sig in the packet
        )
    return bundle


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", text)[:120]


def workdir(context: Any, job: Mapping[str, Any], rendition_id: str) -> Path:
    """Where ``render`` leaves the files for ``store`` on the same worker (under the system temp dir,
    or ``$ATTESTLY_REPORTS_WORKDIR``)."""
    import os

    base = Path(
        os.environ.get("ATTESTLY_REPORTS_WORKDIR") or Path(tempfile.gettempdir()) / "attestly-reports"
    )
    ti = context["ti"]
    return base / _safe(ti.dag_id) / _safe(ti.run_id) / _safe(str(job["framework"])) / rendition_id


def render(job: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Render one framework's bundle; returns ``{job, rendition, files{path: {sha256, size}}, ...}``."""
    bundle = _render(job)
    target = workdir(context, job, bundle.rendition_id)
    for path, body in {**bundle.objects, **bundle.files}.items():
        dest = target / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(body)
    summary = bundle.summary()
    log.info(
        "rendered %s %s: rendition %s, %d files, statuses %s",
        job["framework"],
        bundle.period.label,
        bundle.rendition_id,
        len(bundle.files),
        summary["status_counts"],
    )
    return {"job": dict(job), **summary}


def store(rendered: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Store the rendered bundle and ledger it (idempotent); returns what ``publish`` returns + the job."""
    from attestly.ledger import Ledger
    from attestly.reports.bundle import Bundle
    from attestly.reports.publish import publish
    from attestly.store import EvidenceStore

    job = rendered["job"]
    request = _request(job)
    rendition = str(rendered["rendition"])
    target = workdir(context, job, rendition[:16])
    files: dict[str, bytes] = {}
    for path, meta in rendered["files"].items():
        f = target / path
        if not f.is_file():
            files = {}
            break
        body = f.read_bytes()
        if hashlib.sha256(body).hexdigest() != meta["sha256"]:
            files = {}
            break
        files[path] = body
    st = EvidenceStore.from_connection()
    bundle = None
    if files and set(files) == set(rendered["files"]):
        bundle = Bundle.from_files(
            framework=request.framework, period=request.period, bucket=st.bucket, files=files
        )
        # The packet-only objects (evidence objects, policy bundles) SHA256SUMS lists, from the work copy.
        for path, digest in bundle.packet_only_paths().items():
            f = target / path
            body = f.read_bytes() if f.is_file() else b""
            if hashlib.sha256(body).hexdigest() != digest:
                bundle = None
                break
            bundle.objects[path] = body
    if bundle is None:
        log.info("work directory %s not available here: rendering again", target)
        bundle = _render(job)
    if bundle.rendition != rendition:
        raise RenditionChanged(
            f"{job['framework']} {request.period.label}: rendition {bundle.rendition[:16]} differs from the "
            f"rendered {rendition[:16]} (the ledger changed since render); clear the render task to redo both"
        )
    with Ledger.connect() as ledger:
        stored = publish(bundle, store=st, ledger=ledger, airflow=airflow_context(context).to_dict())
        # The packet cannot hold the digest that seals its own ledger entry (that entry records the
        # packet's hash): seal now, so the e-mail — the follow-up — names the digest.
        stored["report_digest"] = _seal_report(ledger, st, int(stored["ledger_seq"]))
    shutil.rmtree(target, ignore_errors=True)  # stored and ledgered: the work copy is no longer needed
    log.info(
        "stored %s under s3://%s/%s (%d new objects, ledger entry %d%s)",
        bundle.packet_name,
        st.bucket,
        stored["prefix"],
        stored["objects_created"],
        stored["ledger_seq"],
        "" if stored["created"] else ", already there",
    )
    return {"job": dict(job), "bucket": st.bucket, **stored}


def _seal_report(ledger: Any, st: Any, seq: int) -> str | None:
    """The key of the digest sealing ledger entry ``seq`` (sealing the ledger now if it is not yet)."""
    from attestly.signing import signer_from_connection

    def covering() -> str | None:
        return next(
            (str(d["key"]) for d in ledger.digests() if int(d["first_seq"]) <= seq <= int(d["last_seq"])),
            None,
        )

    found = covering()
    if found is None:
        ledger.seal(store=st, signer=signer_from_connection())
        found = covering()
    return found


def email(stored: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """E-mail the stored reports (once per run and rendition). Returns the Message-ID and attachments."""
    from attestly.ledger import Ledger
    from attestly.policy import load_policy
    from attestly.reports.build import run_url
    from attestly.reports.bundle import airflow_base_url
    from attestly.reports.mail import ReportSettings, deliver, recipients_for
    from attestly.reports.publish import REPORT_KIND
    from attestly.store import EvidenceStore

    job = stored["job"]
    if not job.get("send_email", True):
        return {"framework": job["framework"], "sent": False, "reason": "send_email is false"}
    ti = context["ti"]
    settings = ReportSettings.from_mapping(
        {
            "attach_limit_mb": job["attach_limit_mb"],
            "recipients": job["recipients"],
            "include_owners": job["include_owners"],
        }
    )
    policy = load_policy()
    controls = list(stored["statuses"])
    recipients = recipients_for(policy=policy, control_ids=controls, settings=settings)
    dedupe = f"email:{ti.dag_id}:{ti.run_id}:{job['framework']}:{stored['rendition']}"
    st = EvidenceStore.from_connection()
    with Ledger.connect() as ledger:
        done = ledger.find(dedupe)
        if done is not None:
            log.info("already sent as %s; not sending again", done.body["message_id"])
            return {"framework": job["framework"], "sent": False, "message_id": done.body["message_id"]}
        result = deliver(
            stored=stored,
            store=st,
            recipients=recipients,
            settings=settings,
            run_url=run_url(airflow_base_url(), ti.dag_id, ti.run_id),
            message_id=f"<report.{hashlib.sha256(dedupe.encode()).hexdigest()[:32]}@attestly>",
            sent_at=datetime.now(UTC),
        )
        ledger.append(
            REPORT_KIND,
            {
                "event": EMAIL_EVENT,
                "framework": job["framework"],
                "period": stored["period"],
                "rendition": stored["rendition"],
                "message_id": result["message_id"],
                "recipients": result["recipients"],
                "attachments": result["attachments"],
                "linked": result["linked"],
                "airflow": airflow_context(context).to_dict(),
            },
            dedupe_key=dedupe,
        )
    return {"framework": job["framework"], "sent": True, **result}


def await_evidence(context: Any) -> bool:
    """Sensor body: is the period's evidence complete enough to report on? (see module docstring)."""
    from attestly.ledger import Ledger

    params = _params(context)
    period, on_demand = _period(context, params)
    run_type = str(getattr(context.get("dag_run"), "run_type", "") or "").lower()
    wait = params.get("wait_for_evidence_hours")
    wait_hours = DEFAULT_WAIT_HOURS if wait is None else float(wait)
    if on_demand or "scheduled" not in run_type or wait_hours <= 0:
        return True
    end = period.end_dt
    with Ledger.connect() as ledger:
        for e in ledger.entries(kind="run"):
            interval_ = e.body.get("data_interval") or {}
            if e.body.get("dag_id") == EVIDENCE_DAG and str(interval_.get("end", "")).startswith(
                end.strftime("%Y-%m-%dT%H:%M:%S")
            ):
                return True
    # Control flow only (never data): after the grace period, report on what is there.
    if datetime.now(UTC) >= end + timedelta(hours=wait_hours):
        log.warning(
            "no %s run for %s after %.1f h: rendering with what the ledger holds (missing days are shown "
            "as no evidence)",
            EVIDENCE_DAG,
            period.end.isoformat(),
            wait_hours,
        )
        return True
    return False
