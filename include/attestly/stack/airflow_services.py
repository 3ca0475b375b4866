"""``make airflow``: Airflow's api-server, scheduler, dag-processor and triggerer on the local stack.

Each runs as its own process (not ``airflow standalone``, which leaves orphans on SIGTERM), recorded in
the stack's process table so ``attestly stack down`` (``make stop``) stops exactly them. Returns once
the API server answers, printing the URL and the login.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from attestly.stack import core, procs

SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")


def start(*, quiet: bool = False) -> dict[str, Any]:
    core.up(quiet=quiet)
    p = core.paths()
    env = core._airflow_env(p)
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    table = procs.ProcTable(p.procs)
    running = table.load()
    api_port = int(core._state(p)["ports"]["airflow_api"])
    for service in SERVICES:
        name = f"airflow-{service}"
        existing = running.get(name)
        if existing is not None and existing.alive():
            continue
        argv = [airflow_bin, service]
        if service == "api-server":
            argv += ["--port", str(api_port), "--host", "127.0.0.1"]
        table.add(procs.spawn(name, argv, log=p.logs / f"{name}.log", env=env))
    url = f"http://127.0.0.1:{api_port}"
    _wait_http(f"{url}/api/v2/monitor/health", timeout=120, proc=table.load()["airflow-api-server"])
    login = _login(p)
    info = {"url": url, "username": login[0], "password": login[1], "logs": str(p.logs)}
    if not quiet:
        print(f"Airflow UI: {url}  (user {login[0]}, password {login[1]})")
        print(f"logs: {p.logs}/airflow-*.log   stop everything: make stop")
    return info


def _login(p: core.Paths) -> tuple[str, str]:
    path = p.airflow_home / "passwords.json"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists():
            data = json.loads(path.read_text())
            if data:
                user = next(iter(data))
                return user, str(data[user])
        time.sleep(0.5)
    return "admin", f"(see {path})"


def _wait_http(url: str, *, timeout: float, proc: procs.Proc) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3):  # noqa: S310 - loopback URL we built
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if not proc.alive():
                raise core.StackError(f"{proc.name} exited during start-up; see {proc.log}") from None
            time.sleep(1)
    raise core.StackError(f"{url} did not answer within {timeout:.0f}s")


if __name__ == "__main__":
    start()
