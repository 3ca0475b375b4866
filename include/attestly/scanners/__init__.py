"""The ecosystem's check libraries as evidence sources: Prowler (OCSF) and AWS Security Hub (ASFF).

One ingestion path for both: the source's own output is parsed into :class:`SourceFinding` (``ocsf``,
``asff``), its framework mappings translated to ``controls.yaml`` ids (``mapping``), and the findings
grouped into evidence items — one per (source check, account, region), a finding per resource, collector
``prowler.<check id>`` / ``securityhub.<control id>`` — with the status from the source's pass/fail,
never from severity, and the policy's accepted risks applied (``normalize``). Prowler itself runs in its
own virtual environment (``prowler``).
"""

from __future__ import annotations

from attestly.scanners.model import SourceFinding, SourceFormatError

__all__ = ["SourceFinding", "SourceFormatError"]
