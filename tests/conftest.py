"""Shared fixtures: one real local stack per test session, in its own ATTESTLY_HOME.

Integration tests talk to a real PostgreSQL server, a real moto server over HTTP and a real SMTP
server; nothing is patched in process. The stack is started once (a few seconds) and stopped at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def stack() -> Iterator[dict[str, str]]:
    """The session's stack lives in its own directory, not under pytest's basetemp: pytest keeps only the
    last few basetemps and deletes older ones, which would pull the data directory from under a running
    server whenever another pytest session starts on the same machine."""
    import shutil
    import tempfile

    from attestly_dev.stack import core

    given = os.environ.get("ATTESTLY_TEST_HOME")
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
