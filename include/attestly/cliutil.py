"""What the workflow commands of the ``attestly`` CLI share (``hold``, ``archive``, ``erase``,
``disposal``, ``phi``): exit codes, argument types, output, and opening the run context.

Exit codes (**contract**): 0 done, 1 a check found a problem, 2 bad input or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from typing import Any

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


def parse_date(text: str) -> date:
    """An ``argparse`` type: ``YYYY-MM-DD``, or a usage error naming the value."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def error(message: str) -> int:
    """Print a usage error on stderr; returns :data:`EXIT_USAGE`."""
    print(f"attestly: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def who() -> str:
    """Who acts from the command line (holds, releases, erasure requests and approvals): the OS account
    running the command, ``cli:<os user>@<host>`` (:func:`attestly.identity.cli_identity`), never a
    free-text flag."""
    from attestly.identity import cli_identity

    return cli_identity()


def refuse_identity_flag(option: str, action: str) -> int:
    """The answer to a retired ``--requested-by``/``--approved-by``: the CLI records the OS user; a
    different person acts in the Airflow UI's Evidence view, as the logged-in user."""
    return error(
        f"{option} is no longer accepted: the command line records the OS user ({who()}), never a name "
        f"given on it. {action} as a different person in the Airflow UI (Browse > Evidence), logged in as "
        "that person."
    )


def open_context(run_id: str) -> Any:
    """The shared run context (:class:`attestly.runcontext.RunContext`) with the local stack's
    connections where it runs (development checkouts: see ``attestly.cli.stack_env``)."""
    from attestly.cli import stack_env
    from attestly.runcontext import RunContext

    stack_env()
    return RunContext.open(run_id=run_id)
