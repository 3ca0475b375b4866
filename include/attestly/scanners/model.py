"""What every source's finding becomes before it is evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SourceStatus = Literal["PASS", "FAIL", "MANUAL", "NOT_AVAILABLE", "WARNING"]


class SourceFormatError(ValueError):
    """A scanner's output is not what its format says; the message names the file, the finding and the
    field."""


@dataclass(frozen=True)
class SourceFinding:
    """One resource's outcome for one check of a source, as the source reported it.

    ``status`` is the source's own pass/fail (Prowler ``status_code``; Security Hub
    ``Compliance.Status`` PASSED/FAILED/WARNING/NOT_AVAILABLE as PASS/FAIL/WARNING/NOT_AVAILABLE);
    ``muted`` is the source's own suppression (Prowler's mutelist, Security Hub workflow SUPPRESSED),
    with ``muted_reason``. ``requirements`` are the source's framework mappings as the source spells them
    (``{"soc2": ("cc_6_1",), "pci": ("10.2.1",)}``); severity is kept for display only.
    """

    source: str  # "prowler" | "securityhub"
    check: str
    title: str
    account: str
    region: str
    resource: str
    status: SourceStatus
    detail: str
    muted: bool = False
    muted_reason: str = ""
    severity: str = ""
    requirements: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def collector(self) -> str:
        return f"{self.source}.{self.check}"
