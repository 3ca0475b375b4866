"""Exceptions of the archive workflow. Each message names the batch, object, column or value at fault."""

from __future__ import annotations

from typing import Any


class ArchiveError(RuntimeError):
    """Base class: the archive workflow refused or failed."""


class ArchiveConfigError(ArchiveError):
    """The policy or the audit table cannot be archived as configured (e.g. a needed column is unmapped)."""


class BatchNotFound(ArchiveError, LookupError):
    """No archive batch with that id in the journal."""


class ObjectConflict(ArchiveError):
    """The batch's object key holds something that is not this batch's archive (never overwritten)."""


class VerificationMismatch(ArchiveError):
    """Read-back figures differ from the database or from what was uploaded: the batch is not purged."""

    def __init__(self, batch_id: str, problems: list[str]) -> None:
        self.batch_id = batch_id
        self.problems = problems
        #: The ``fail`` evidence item recorded for this mismatch (set by the runner), if any.
        self.recorded: dict[str, Any] | None = None
        super().__init__(f"archive batch {batch_id} failed verification, NOT purged: " + "; ".join(problems))


class PurgeRefused(ArchiveError):
    """The rows in the database no longer match what was verified; nothing was deleted."""


from attestly.holds import HoldError  # noqa: E402  (defined with the holds; kept here for existing imports)

__all__ = [
    "ArchiveConfigError",
    "ArchiveError",
    "BatchNotFound",
    "HoldError",
    "ObjectConflict",
    "PurgeRefused",
    "VerificationMismatch",
]
