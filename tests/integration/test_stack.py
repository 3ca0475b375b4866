"""`attestly stack up | status | env | down` on a stack of its own: idempotent, healthy, no stray process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ATTESTLY"))}
    env["ATTESTLY_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "attestly.cli", "stack", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )


def _processes_under(home: Path) -> list[int]:
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(home) in cmd:
            found.append(p.info["pid"])
    return found


def test_stack_lifecycle(tmp_path: Path) -> None:
    home = tmp_path / "stack"
    first = _cli(home, "up", "--json")
    assert first.returncode == 0, first.stderr
    status = json.loads(first.stdout)
    assert status["healthy"] is True
    assert set(status["services"]) >= {"postgres", "moto", "smtp", "airflow"}
    pids = {name: s["pid"] for name, s in status["services"].items() if s["pid"]}

    # Up again: harmless, same processes.
    again = _cli(home, "up", "--json")
    assert again.returncode == 0, again.stderr
    assert {n: s["pid"] for n, s in json.loads(again.stdout)["services"].items() if s["pid"]} == pids

    env = _cli(home, "env")
    assert env.returncode == 0
    assert "export AIRFLOW_CONN_AUDIT_DB=" in env.stdout
    assert (
        f"export AIRFLOW__CORE__DAGS_FOLDER={Path.cwd() / 'dags'}" in env.stdout
        or "DAGS_FOLDER" in env.stdout
    )
    assert (home / "secrets.json").stat().st_mode & 0o077 == 0  # generated secrets readable by the owner only

    # An unrelated process must survive `down`.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        down = _cli(home, "down", "--json")
        assert down.returncode == 0, down.stderr
        assert set(json.loads(down.stdout)["stopped"]) == {"postgres", "moto", "smtp"}
        assert bystander.poll() is None
    finally:
        bystander.kill()
    assert _processes_under(home) == []
    for pid in pids.values():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    status_after = _cli(home, "status", "--json")
    assert status_after.returncode == 1
    assert json.loads(status_after.stdout)["healthy"] is False


def test_migrate_url_is_the_stack_migration_from_a_superuser_url(stack: dict[str, str]) -> None:
    """What the image's airflow-init runs (``attestly.db.migrate.migrate_url``): over the stack's server,
    every migration is already applied by ``stack up`` (same files, same checksums), so nothing is."""
    from urllib.parse import quote

    from attestly.db import migrate
    from attestly_dev.stack import core

    srv = core.server()
    url = f"postgresql://{quote(srv.admin_user)}:{quote(srv.admin_password or '')}@{srv.host}:{srv.port}/postgres"
    assert migrate.migrate_url(url) == []
