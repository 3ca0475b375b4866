"""``make airflow``: Airflow's api-server, scheduler, dag-processor and triggerer on the local stack.

Each runs as its own process (not ``airflow standalone``, which leaves orphans on SIGTERM), recorded in
the stack's process table so ``attestly stack down`` (``make stop``) stops exactly them. Returns once
the API server answers, printing the URL and the login.

``make airflow EXECUTOR=celery WORKERS=2`` runs the CeleryExecutor instead of the LocalExecutor, as the
compose deployment does: a Redis broker (Debian's ``redis-server``, on loopback, no persistence) and
``WORKERS`` ``airflow celery worker`` processes, each tracked and stopped like the other services.
Switching executor restarts the scheduler.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from attestly_dev.stack import core, procs

SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")


def start(
    *, quiet: bool = False, executor: str = "local", workers: int = 2, concurrency: int = 2
) -> dict[str, Any]:
    if executor not in ("local", "celery"):
        raise core.StackError(f"EXECUTOR={executor!r}: give local or celery")
    if executor == "celery" and not 1 <= workers <= 16:
        raise core.StackError(f"WORKERS={workers}: give 1 to 16")
    core.up(quiet=quiet)
    p = core.paths()
    table = procs.ProcTable(p.procs)
    running = table.load()
    previous = (core._state(p).get("executor") or {}).get("kind", "local")
    core.set_executor(executor, workers=workers if executor == "celery" else 0, concurrency=concurrency, p=p)
    if previous != executor:  # the scheduler and workers must agree on the executor: restart them
        for name, proc in list(running.items()):
            if name in ("airflow-scheduler", "redis") or name.startswith("airflow-celery-worker"):
                procs.stop(proc)
                table.remove(name)
        running = table.load()
    env = core._airflow_env(p)
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    st = core._state(p)
    api_port = int(st["ports"]["airflow_api"])
    if executor == "celery":
        _start_redis(p, table, running, port=int(st["ports"]["redis"]))
    for service in SERVICES:
        name = f"airflow-{service}"
        existing = running.get(name)
        if existing is not None and existing.alive():
            continue
        argv = [airflow_bin, service]
        if service == "api-server":
            argv += ["--port", str(api_port), "--host", "127.0.0.1"]
        table.add(procs.spawn(name, argv, log=p.logs / f"{name}.log", env=env))
    if executor == "celery":
        for i in range(1, workers + 1):
            name = f"airflow-celery-worker-{i}"
            existing = running.get(name)
            if existing is not None and existing.alive():
                continue
            argv = [
                airflow_bin,
                "celery",
                "worker",
                "--celery-hostname",
                f"worker{i}@%h",
                "--concurrency",
                str(concurrency),
            ]
            table.add(procs.spawn(name, argv, log=p.logs / f"{name}.log", env=env))
    url = f"http://127.0.0.1:{api_port}"
    _wait_http(f"{url}/api/v2/monitor/health", timeout=120, proc=table.load()["airflow-api-server"])
    login = _login(p)
    info = {
        "url": url,
        "username": login[0],
        "password": login[1],
        "logs": str(p.logs),
        "executor": executor,
        "passwords_file": str(p.airflow_home / "passwords.json"),
    }
    if not quiet:
        print(f"Airflow UI: {url}  (user {login[0]}, password {login[1]})")
        if executor == "celery":
            print(f"CeleryExecutor: Redis on 127.0.0.1:{st['ports']['redis']}, {workers} worker(s)")
        print(f"logs: {p.logs}/airflow-*.log   stop everything: make stop")
    return info


def _start_redis(p: core.Paths, table: procs.ProcTable, running: dict[str, procs.Proc], *, port: int) -> None:
    import shutil

    existing = running.get("redis")
    if existing is not None and existing.alive():
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise core.StackError(
            "EXECUTOR=celery needs Redis as the Celery broker: `make system-deps` installs it "
            "(Debian: apt-get install redis-server)"
        )
    data = p.home / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(data), "--protected-mode", "yes"]  # fmt: skip
    proc = procs.spawn("redis", argv, log=p.logs / "redis.log")
    table.add(proc)
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if not proc.alive():
            raise core.StackError(f"redis-server exited during start-up; see {proc.log}")
        time.sleep(0.2)
    raise core.StackError(f"redis-server did not listen on 127.0.0.1:{port} within 20s")


def _login(p: core.Paths) -> tuple[str, str]:
    path = p.airflow_home / "passwords.json"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists():
            data = json.loads(path.read_text())
            if data:
                user = "admin" if "admin" in data else next(iter(data))
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


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m attestly_dev.stack.airflow_services", description=__doc__
    )
    parser.add_argument("--executor", choices=("local", "celery"), default="local")
    parser.add_argument("--workers", type=int, default=2, help="Celery workers (EXECUTOR=celery)")
    parser.add_argument("--concurrency", type=int, default=2, help="task slots per Celery worker")
    args = parser.parse_args(argv)
    try:
        start(executor=args.executor, workers=args.workers, concurrency=args.concurrency)
    except core.StackError as exc:
        print(f"attestly: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
