"""Per-control reports, the framework index, the auditor packet, OSCAL results and the report e-mail.

Everything comes from the ledger and the objects it points to, so any past period can be re-rendered,
and re-rendering gives byte-identical files (see :mod:`attestly.reports.bundle`).

Public API::

    Period(start, end) / Period.parse("2026-01-01", "2026-03-31") / Period.from_interval(s, e)
    ReportRequest(framework, period, controls=(), formats=("html", "pdf", "json"))
    render_reports(requests=, ledger=, store=, public_key_pem=, airflow_base_url=) -> list[Bundle]
    Bundle.files / .index / .rendition / .prefix / .packet_zip() / .summary() / .write(dir)
    publish(bundle, store=, ledger=) -> dict          # store create-only + ledger entry kind "report"
    ReportSettings.from_mapping({"attach_limit_mb": 10, "recipients": [...]})
    deliver(stored=, store=, recipients=, settings=, run_url=, sent_at=) -> dict   # the e-mail
    ReportInputError                                   # bad input; the message names the value
    cli.register(subparsers)                           # `attestly report render`

Status rules: :mod:`attestly.reports.model`. No PHI or secrets: :mod:`attestly.reports.sanitize`.
Imports nothing from Airflow (the base URL for run links is read from the environment first).
"""

from __future__ import annotations

from attestly.reports.bundle import FORMATS, Bundle, ReportRequest, render_reports
from attestly.reports.mail import ReportSettings, deliver
from attestly.reports.model import STATUS_RULE, Period, ReportInputError
from attestly.reports.publish import REPORT_KIND, publish

__all__ = [
    "FORMATS",
    "REPORT_KIND",
    "STATUS_RULE",
    "Bundle",
    "Period",
    "ReportInputError",
    "ReportRequest",
    "ReportSettings",
    "deliver",
    "publish",
    "render_reports",
]
