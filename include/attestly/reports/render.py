"""Render report documents: Jinja2 (autoescaped) HTML, PDF through WeasyPrint, canonical JSON.

PDFs are rendered from the same HTML with no external resources (a URL fetcher that only allows
``data:`` URIs and fails on anything else) and no dates in the metadata (WeasyPrint only writes creation/modification dates that
the HTML declares, and ours declare none), so the same HTML gives the same PDF bytes with the same
WeasyPrint, pydyf and font versions.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attestly.reports.build import STATUS_LABELS

if TYPE_CHECKING:
    from jinja2 import Environment


class RenderError(RuntimeError):
    """A template or the PDF engine failed; the message names the template or document."""


def templates_dir() -> Path:
    from attestly import config

    return config.templates_dir()


@lru_cache(maxsize=4)
def _environment(directory: str) -> Environment:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=FileSystemLoader(directory),
        # HTML is always escaped; only the Markdown VERIFY page (bucket name and dates, validated) is not.
        autoescape=select_autoescape(
            enabled_extensions=("html.j2", "html", "css"),
            disabled_extensions=("md.j2",),
            default_for_string=True,
            default=True,
        ),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
        lstrip_blocks=False,
    )


def environment() -> Environment:
    return _environment(str(templates_dir()))


def render_template(name: str, **values: Any) -> str:
    """Render ``include/templates/<name>`` with ``labels`` available; errors name the template."""
    from jinja2 import TemplateError

    try:
        return environment().get_template(name).render(labels=STATUS_LABELS, **values)
    except TemplateError as exc:
        raise RenderError(f"template {name!r} failed: {exc}") from exc


def html_to_pdf(html: str, *, name: str) -> bytes:
    """The PDF of ``html`` (``name`` is for error messages). Deterministic for the same input."""
    import logging

    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    for logger in ("weasyprint", "weasyprint.progress"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    # data: URIs only (the embedded chart): a report never reaches out to the network or the disk.
    fetcher = URLFetcher(allowed_protocols={"data"}, fail_on_errors=True)
    try:
        pdf = HTML(string=html, base_url=None, url_fetcher=fetcher).write_pdf()
    except BaseException as exc:  # FatalURLFetchingError is a BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise RenderError(f"PDF rendering of {name} failed: {exc}") from exc
    if not pdf:
        raise RenderError(f"PDF rendering of {name} produced nothing")
    return bytes(pdf)


def json_bytes(value: Any) -> bytes:
    """Stable, readable JSON: sorted keys, two-space indent, UTF-8, trailing newline."""
    return (json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()
