"""The "Evidence" view in the Airflow UI: what the plugin in ``plugins/attestly_plugin.py`` serves.

Public API::

    create_app(auth=, base_url=) -> FastAPI       # the app mounted at /attestly in Airflow's api-server
    require_airflow_user                          # the auth dependency: Airflow's own login, DAG-run read
    require_evidence_writer                       # uploads: may create evidence_collection runs
    build_overview(ledger=, policy=, s3=, bucket=, today=, base_url=) -> Overview   # the page's data
    quarter_to_date(today) -> Period              # the period the control statuses cover
    run_verify(...) / last_verify(...)            # `verify_bucket` on demand; last result cached on disk
    render_page(overview) -> str                  # the HTML

Control statuses come from :mod:`attestly.reports` (the same rules as the quarterly reports), so the
page and the report for a period never disagree. The last ``verify`` result is cached in
``$ATTESTLY_HOME/ui/last-verify.json`` (one file per api-server host; a new check overwrites it).
Nothing here imports Airflow at module level: :mod:`attestly.ui.auth` imports it when a request comes.
"""

from __future__ import annotations

import importlib
from typing import Any

from attestly.ui.app import APP_PREFIX, create_app
from attestly.ui.auth import require_airflow_user, require_evidence_writer

# Loaded on first use: the plugin file imports this package in every Airflow process (scheduler,
# dag-processor, tasks), which need only the two names above, and never the ledger or report code.
_LAZY = {
    "Overview": "attestly.ui.overview",
    "build_overview": "attestly.ui.overview",
    "quarter_to_date": "attestly.ui.overview",
    "run_url": "attestly.ui.overview",
    "render_page": "attestly.ui.page",
    "VerifyBusy": "attestly.ui.verify_cache",
    "last_verify": "attestly.ui.verify_cache",
    "run_verify": "attestly.ui.verify_cache",
    "verify_cache_path": "attestly.ui.verify_cache",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'attestly.ui' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "APP_PREFIX",
    "Overview",
    "VerifyBusy",
    "build_overview",
    "create_app",
    "last_verify",
    "quarter_to_date",
    "render_page",
    "require_airflow_user",
    "require_evidence_writer",
    "run_url",
    "run_verify",
    "verify_cache_path",
]
