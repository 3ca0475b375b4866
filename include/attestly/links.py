"""The public base URL of the Airflow UI, for run links in reports, e-mails and the Evidence view.

``ATTESTLY_PUBLIC_BASE_URL`` when set (the address people reach the UI at, e.g. behind a load balancer),
else Airflow's ``[api] base_url`` (``AIRFLOW__API__BASE_URL``, or ``airflow.cfg`` when Airflow is
importable), else none: links are then left out rather than pointed at a guessed host. Only ``http`` and
``https`` URLs with a host are used; anything else is refused by name.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit


class BaseUrlError(ValueError):
    """A configured base URL is not an absolute http(s) URL."""


def _checked(value: str, source: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BaseUrlError(f"{source}={value[:200]!r} is not an absolute http(s) URL of the Airflow UI")
    return value.rstrip("/")


def public_base_url() -> str | None:
    """See the module doc; :class:`BaseUrlError` names a malformed setting."""
    for var in ("ATTESTLY_PUBLIC_BASE_URL", "AIRFLOW__API__BASE_URL"):
        value = os.environ.get(var, "").strip()
        if value:
            return _checked(value, var)
    try:
        from airflow.configuration import conf
    except ImportError:
        return None
    configured = str(conf.get("api", "base_url", fallback="") or "").strip()
    return _checked(configured, "[api] base_url") if configured else None
