"""Render report documents: Jinja2 (autoescaped) HTML, PDF through WeasyPrint, canonical JSON.

PDFs are rendered from the same HTML with no external resources (a URL fetcher that only allows
``data:`` URIs and fails on anything else) and no dates in the metadata (WeasyPrint only writes creation/modification dates that
the HTML declares, and ours declare none), so the same HTML gives the same PDF bytes with the same
WeasyPrint, pydyf, HarfBuzz, Pango and font versions. Fonts are subset by HarfBuzz, never by fontTools
(which stamps the current time into each subset): rendering refuses to run without it.
"""

from __future__ import annotations

import json
import logging
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


HARFBUZZ_SUBSET_HINT = (
    "install HarfBuzz's subset library (Debian/Ubuntu: `apt-get install libharfbuzz-subset0`; "
    "`make system-deps` does it)"
)
_FALLBACK_MARKER = "instead of HarfBuzz-Subset"


class _FallbackDetector(logging.Handler):
    """Collects WeasyPrint's warning that it subset a font with fontTools instead of HarfBuzz."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if _FALLBACK_MARKER in message:
            self.messages.append(message)


def require_reproducible_pdf_engine() -> None:
    """Check that WeasyPrint will subset fonts with HarfBuzz (>= 4.1, with its subset library).

    Without ``libharfbuzz-subset.so.0`` (HarfBuzz >= 4.1), WeasyPrint subsets fonts with fontTools, which
    writes the current time into every embedded font (``head.modified``): the same report rendered twice
    would differ, and a past period would no longer re-render to the same bytes. Raises
    :class:`RenderError` naming the library and the install command instead of rendering such a PDF.
    """
    from weasyprint.text import ffi as wffi

    if wffi.harfbuzz_subset is None:
        raise RenderError(
            "PDF reports must be reproducible, and WeasyPrint cannot load libharfbuzz-subset.so.0 "
            f"(it would fall back to fontTools, which stamps the current time into every font): {HARFBUZZ_SUBSET_HINT}"
        )
    if not wffi.harfbuzz.hb_version_atleast(4, 1, 0):
        raise RenderError(
            "PDF reports need HarfBuzz >= 4.1.0 for font subsetting; this system has "
            f"{pdf_engine_versions()['harfbuzz']}: {HARFBUZZ_SUBSET_HINT}"
        )


def pdf_engine_versions() -> dict[str, str]:
    """The versions a PDF's bytes depend on, besides the HTML: WeasyPrint, pydyf, fontTools, HarfBuzz and
    Pango (the shared libraries WeasyPrint loaded). Two hosts render identical PDFs when these and the font
    files agree (README: Reports, reproducibility)."""
    import ctypes
    from importlib.metadata import version

    from weasyprint.text import ffi as wffi

    def _library(names: tuple[str, ...], symbol: str) -> str:
        for name in names:
            try:
                lib = ctypes.CDLL(name)
            except OSError:
                continue
            fn = getattr(lib, symbol)
            fn.restype = ctypes.c_char_p
            return str(fn().decode())
        return "absent"

    return {
        "weasyprint": version("weasyprint"),
        "pydyf": version("pydyf"),
        "fonttools": version("fonttools"),
        "harfbuzz": _library(("libharfbuzz.so.0", "libharfbuzz.0.dylib"), "hb_version_string"),
        "harfbuzz_subset": "loaded" if wffi.harfbuzz_subset is not None else "absent",
        "pango": _library(("libpango-1.0.so.0", "libpango-1.0.dylib"), "pango_version_string"),
    }


def html_to_pdf(html: str, *, name: str) -> bytes:
    """The PDF of ``html`` (``name`` is for error messages). The same HTML gives the same bytes with the same
    WeasyPrint, pydyf, HarfBuzz, Pango and fonts, whatever the clock says; raises :class:`RenderError`
    rather than produce a PDF that would not be (see :func:`require_reproducible_pdf_engine`)."""
    require_reproducible_pdf_engine()
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    # data: URIs only (the embedded chart): a report never reaches out to the network or the disk.
    fetcher = URLFetcher(allowed_protocols={"data"}, fail_on_errors=True)
    detector = _FallbackDetector()
    # WeasyPrint logs seven "Step n" lines per document at INFO: thousands per catalog in the task log.
    logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)
    weasy_logger = logging.getLogger("weasyprint")
    weasy_logger.addHandler(detector)
    try:
        pdf = HTML(string=html, base_url=None, url_fetcher=fetcher).write_pdf()
    except BaseException as exc:  # FatalURLFetchingError is a BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise RenderError(f"PDF rendering of {name} failed: {exc}") from exc
    finally:
        weasy_logger.removeHandler(detector)
    if detector.messages:
        raise RenderError(
            f"PDF rendering of {name} fell back to fontTools font subsetting, which is not reproducible "
            f"({detector.messages[0]}): {HARFBUZZ_SUBSET_HINT}"
        )
    if not pdf:
        raise RenderError(f"PDF rendering of {name} produced nothing")
    return bytes(pdf)


def json_bytes(value: Any) -> bytes:
    """Stable, readable JSON: sorted keys, two-space indent, UTF-8, trailing newline."""
    return (json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def _pdf_job(job: tuple[str, str]) -> bytes:
    html, name = job
    return html_to_pdf(html, name=name)


def render_processes() -> int:
    """Processes for PDF rendering: ``ATTESTLY_RENDER_PROCESSES``, else the machine's CPUs (at most 8)."""
    import os

    raw = os.environ.get("ATTESTLY_RENDER_PROCESSES", "").strip()
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            raise RenderError(f"ATTESTLY_RENDER_PROCESSES={raw!r} is not a number") from None
    return max(1, min(os.cpu_count() or 1, 8))


def render_pdfs(jobs: list[tuple[str, str]], *, processes: int | None = None) -> list[bytes]:
    """PDFs of ``jobs`` (``(html, name)``), in order. Rendered by a pool of processes when there are many
    (WeasyPrint is CPU-bound and single-threaded); the bytes do not depend on which process rendered
    them. Where processes cannot be started (a daemonic worker, e.g. a Celery prefork child), they are
    rendered here, one after the other."""
    n = render_processes() if processes is None else processes
    if n <= 1 or len(jobs) < 8:
        return [_pdf_job(j) for j in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if multiprocessing.current_process().daemon:
        logging.getLogger(__name__).info("rendering %d PDFs in this process (daemonic: no pool)", len(jobs))
        return [_pdf_job(j) for j in jobs]
    import threading

    # fork is instant (WeasyPrint already imported) and safe with no other thread alive; otherwise a
    # fork server (which re-imports the main module, as multiprocessing requires).
    ctx = multiprocessing.get_context("fork" if threading.active_count() == 1 else "forkserver")
    with ProcessPoolExecutor(max_workers=min(n, len(jobs)), mp_context=ctx) as pool:
        return list(pool.map(_pdf_job, jobs, chunksize=max(1, len(jobs) // (n * 8))))
