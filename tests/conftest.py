"""Shared fixtures: one real local stack per test session, in its own ATTESTLY_HOME.

Integration tests talk to a real PostgreSQL server, a real moto server over HTTP and a real SMTP
server; nothing is patched in process. The stack is started once (a few seconds) and stopped at the end.

Under pytest-xdist (`make test` runs ``-n 2``) every worker is a session of its own: its own stack, in its
own ATTESTLY_HOME, on its own free ports. Each module runs whole on one worker (``--dist loadscope`` in
pyproject.toml), so a module's fixtures are built once and see only their own stack.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

#: The modules that take minutes (serial timings, longest first). Under xdist they are handed out first, so
#: that the longest is not the last to start while the other worker idles; the rest keep their order.
LONGEST_FIRST = (
    "tests/integration/test_reports.py",
    "tests/integration/test_evidence_dag.py",
    "tests/integration/test_archive_dag.py",
    "tests/integration/test_runtime_env.py",
    "tests/integration/test_disposal_dag.py",
    "tests/integration/test_archive_failpoints.py",
    "tests/integration/test_disposal_failpoints.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # a serial run keeps pytest's order
    rank = {module: i for i, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.partition("::")[0], len(rank)))


@pytest.fixture(scope="session")
def stack() -> Iterator[dict[str, str]]:
    """The session's stack lives in its own directory, not under pytest's basetemp: pytest keeps only the
    last few basetemps and deletes older ones, which would pull the data directory from under a running
    server whenever another pytest session starts on the same machine."""
    import shutil
    import tempfile

    from attestly_dev.stack import core

    given = os.environ.get("ATTESTLY_TEST_HOME")
    if given and os.environ.get("PYTEST_XDIST_WORKER"):
        given = f"{given}-{os.environ['PYTEST_XDIST_WORKER']}"  # one home per worker: gw0, gw1, ...
    home = Path(given) if given else Path(tempfile.mkdtemp(prefix="attestly-test-"))
    saved = dict(os.environ)
    os.environ["ATTESTLY_HOME"] = str(home)
    try:
        core.up(quiet=True)
        env = core.apply_environment()
        yield env
    finally:
        core.down()
        os.environ.clear()
        os.environ.update(saved)
        if not given:
            shutil.rmtree(home, ignore_errors=True)


def _admin(dbname: str = "postgres") -> str:
    from attestly_dev.stack import core

    return core.server().admin_conninfo(dbname)


def recreate_database(name: str) -> None:
    """Drop and re-create one of the stack's databases and re-apply its migrations."""
    import psycopg
    from psycopg import sql

    from attestly.db import migrate

    with psycopg.connect(_admin(), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
    migrate.migrate(_admin(name), name)


@pytest.fixture
def fresh_audit(stack: dict[str, str]) -> dict[str, str]:
    """An empty audit database (schema migrated) for this test."""
    recreate_database("audit")
    return stack


@pytest.fixture
def admin_audit(stack: dict[str, str]) -> Iterator[object]:
    import psycopg

    with psycopg.connect(_admin("audit"), autocommit=True) as conn:
        yield conn
