"""Failpoints: deterministic crash sites for the crash-safety tests.

Off unless the environment variable ``ATTESTLY_FAILPOINTS`` names them (comma-separated). Hitting an
enabled failpoint flushes stdout/stderr and ends the process at once with ``os._exit(137)`` — like a
``kill -9``: no ``finally`` blocks, no transaction commit, no multipart-upload abort.

Shared by the workflows that must be crash-safe: the archive has one at every step boundary (see
:data:`ARCHIVE_FAILPOINTS`), and so have key disposal (:data:`DISPOSAL_FAILPOINTS`) and manual evidence
(:data:`MANUAL_FAILPOINTS`). The DAG tasks, the CLI and the crash tests run the same orchestration
functions (:mod:`attestly.archive.runner`, :mod:`attestly.disposal.runner`), so killing a run at each of
these covers the code the DAGs run.
"""

from __future__ import annotations

import os
import sys

ENV = "ATTESTLY_FAILPOINTS"
EXIT_CODE = 137

#: Every failpoint of the archive workflow, in the order a batch meets them.
ARCHIVE_FAILPOINTS: tuple[str, ...] = (
    "archive.after_plan",
    "archive.mid_upload",
    "archive.after_upload_before_journal",
    "archive.after_journal_uploaded",
    "archive.after_authorize_before_verified",
    "archive.after_verify",
    "archive.mid_purge_before_commit",
    "archive.after_purge_before_journal",
    "archive.after_purge_before_evidence",
)

#: Every failpoint of key disposal, in the order a run meets them.
DISPOSAL_FAILPOINTS: tuple[str, ...] = (
    "disposal.after_registry_destroy",
    "disposal.after_kms_schedule",
    "disposal.after_destroy",
    "disposal.after_verify",
    "disposal.after_certificate_issued",
    "disposal.after_certificate_stored",
    "disposal.after_certificate",
)

#: Every failpoint of recording a manual evidence statement (``attestly.manual``), in order.
MANUAL_FAILPOINTS: tuple[str, ...] = (
    "manual.after_journal",
    "manual.mid_attachments",
    "manual.after_attachments",
    "manual.after_item",
    "manual.after_ledger",
)

KNOWN_FAILPOINTS: tuple[str, ...] = ARCHIVE_FAILPOINTS + DISPOSAL_FAILPOINTS + MANUAL_FAILPOINTS


class UnknownFailpoint(ValueError):
    """``ATTESTLY_FAILPOINTS`` names a failpoint that does not exist (a typo would test nothing)."""


def enabled() -> frozenset[str]:
    """The failpoints enabled by the environment; an unknown name raises :class:`UnknownFailpoint`."""
    raw = os.environ.get(ENV, "")
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    unknown = sorted(names - set(KNOWN_FAILPOINTS))
    if unknown:
        raise UnknownFailpoint(
            f"{ENV}: unknown failpoint(s) {', '.join(map(repr, unknown))} (known: {', '.join(KNOWN_FAILPOINTS)})"
        )
    return names


def hit(name: str) -> None:
    """Crash here (``os._exit(137)``) if ``name`` is enabled; otherwise do nothing."""
    if name not in KNOWN_FAILPOINTS:
        raise UnknownFailpoint(f"failpoint {name!r} is not declared in KNOWN_FAILPOINTS")
    if name in enabled():
        print(f"failpoint {name}: exiting with {EXIT_CODE}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_CODE)
