"""Audit-log quality: completeness and integrity of the audit log, validated with Great Expectations.

Public API::

    run_quality(*, start, end, conn_id="audit_db", policy=None) -> QualityResult
    QualityResult  .start .end .checks .success .rows .to_evidence(*, controls=None, airflow=None) .to_dict()
    CheckResult    .name .success .unexpected_count .sample_ids .detail .expectation .error
    format_result(result) -> str                  # one line per check, then a summary
    quality_cli(start, end, as_json) -> int       # `attestly quality run`: 0 pass, 1 a check failed, 2 bad input
    QualityConfigError, QualityError

The checks, their stable ids and their counting rules are described in :mod:`attestly.quality.checks`;
how they run in GX in :mod:`attestly.quality.suite`. Importing this package does not import GX.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

from attestly.quality.checks import QualityConfigError
from attestly.quality.result import COLLECTOR, CheckResult, QualityResult, format_result
from attestly.quality.suite import QualityError, run_quality

__all__ = [
    "COLLECTOR",
    "CheckResult",
    "QualityConfigError",
    "QualityError",
    "QualityResult",
    "format_result",
    "quality_cli",
    "run_quality",
]


def quality_cli(start: datetime, end: datetime, as_json: bool) -> int:
    """``attestly quality run --from START --to END [--json]``.

    Naive datetimes are taken as UTC. Prints the result (JSON with ``as_json``) on stdout; returns 0 when
    every check passed, 1 when a check failed or could not be evaluated, 2 on bad input, an invalid
    policy or an unreachable database (message on stderr).
    """
    from attestly.connections import ConnectionNotFound
    from attestly.policy import PolicyErrors

    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    try:
        result = run_quality(start=start, end=end)
    except (QualityConfigError, QualityError, PolicyErrors, ConnectionNotFound) as exc:
        print(f"attestly quality run: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        print(format_result(result))
    return 0 if result.success else 1
