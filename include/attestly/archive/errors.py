"""Exceptions of the archive workflow. Each message names the batch, object, column or value at fault."""

from __future__ import annotations


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
        super().__init__(f"archive batch {batch_id} failed verification, NOT purged: " + "; ".join(problems))


class PurgeRefused(ArchiveError):
    """The rows in the database no longer match what was verified; nothing was deleted."""


class HoldError(ValueError):
    """A legal-hold request that cannot be done as asked (bad criteria, unknown or released hold)."""
