"""The CLI without the development tooling: dev commands exit 2 saying how to install it, production
commands do not need it; the image's migration entry point parses a superuser URL."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

from attestly import cli
from attestly.db import migrate

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("missing", ["attestly_dev", "moto", "pgserver", "aiosmtpd"])
@pytest.mark.parametrize(
    "argv",
    [["stack", "up"], ["stack", "down"], ["seed", "aws"], ["demo"]],
    ids=" ".join,
)
def test_a_dev_command_without_its_requirements_exits_2_with_how_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], missing: str, argv: list[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a)
    )
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert missing in err and "requirements-dev.txt" in err and "make setup" in err


def test_stack_env_is_a_no_op_without_the_development_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_ATTESTLY_DB", raising=False)
    for name in ("attestly_dev", "attestly_dev.stack", "attestly_dev.stack.core"):
        monkeypatch.setitem(sys.modules, name, None)  # `import` raises ModuleNotFoundError
    before = dict(os.environ)
    cli.stack_env()
    assert dict(os.environ) == before


def test_migrate_url_reads_a_superuser_url() -> None:
    srv = migrate.UrlServer("postgresql://admin:p%40ss%20w@db.example:6543/postgres?sslmode=verify-full")
    info = srv.admin_conninfo("attestly")
    assert "host='db.example'" in info and "port='6543'" in info and "dbname='attestly'" in info
    assert "user='admin'" in info and "password='p@ss w'" in info and "sslmode='verify-full'" in info
    assert "dbname='postgres'" in migrate.UrlServer("postgres://u@h").admin_conninfo()
    assert "p%40ss" not in repr(srv) and "p@ss" not in repr(srv)
    with pytest.raises(migrate.MigrationError, match="not a PostgreSQL URL"):
        migrate.UrlServer("mysql://u@h/db").admin_conninfo("audit")


def test_migrate_url_needs_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATTESTLY_DATABASE_URL", raising=False)
    with pytest.raises(migrate.MigrationError, match="ATTESTLY_DATABASE_URL"):
        migrate.migrate_url()


def test_the_migration_entry_point_reports_a_missing_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ATTESTLY_DATABASE_URL", raising=False)
    assert migrate.main([]) == 1
    assert "ATTESTLY_DATABASE_URL" in capsys.readouterr().err
