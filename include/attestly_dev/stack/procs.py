"""Processes the stack starts, recorded so that ``down`` stops exactly those and nothing else.

A process is recorded with its pid and its start time (from ``/proc``), so a recycled pid that now
belongs to someone else's process is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22).

    Unlike psutil's ``create_time`` (boot time + ticks), it does not move when the wall clock is
    stepped: on these VMs the clock was seen to step 12 s, after which every recorded process looked
    dead and ``up`` refused its own ports."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; fields resume after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass(frozen=True)
class Proc:
    name: str
    pid: int
    create_time: float
    log: str
    ticks: int | None = None

    def alive(self) -> bool:
        try:
            p = psutil.Process(self.pid)
            if p.status() == psutil.STATUS_ZOMBIE:
                return False
            if self.ticks is not None:
                return start_ticks(self.pid) == self.ticks
            return abs(p.create_time() - self.create_time) < 0.5
        except psutil.NoSuchProcess:
            return False

    @classmethod
    def of(cls, name: str, pid: int, log: str) -> Proc:
        return cls(
            name=name, pid=pid, create_time=psutil.Process(pid).create_time(), log=log, ticks=start_ticks(pid)
        )


class ProcTable:
    """A JSON file of the processes this stack owns."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Proc]:
        if not self.path.exists():
            return {}
        raw = json.loads(self.path.read_text())
        return {name: Proc(**p) for name, p in raw.items()}

    def save(self, procs: dict[str, Proc]) -> None:
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({k: asdict(v) for k, v in procs.items()}, indent=2))
        tmp.replace(self.path)

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock around read-modify-write, so two processes bringing the stack up at once
        cannot drop each other's entries (a lost entry is a server nobody can stop)."""
        import fcntl

        @contextlib.contextmanager
        def lock() -> Iterator[None]:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_suffix(".lock"), "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)

        return lock()

    def add(self, proc: Proc) -> None:
        with self._locked():
            procs = self.load()
            procs[proc.name] = proc
            self.save(procs)

    def remove(self, name: str) -> None:
        with self._locked():
            procs = self.load()
            procs.pop(name, None)
            self.save(procs)


def find_by_argv(argv: list[str]) -> int | None:
    """The pid of a live process running exactly ``argv`` (the stack's argvs include their port)."""
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.info["cmdline"] == argv and proc.status() != psutil.STATUS_ZOMBIE:
                return proc.pid
        except psutil.Error:
            continue
    return None


def spawn(
    name: str, argv: list[str], *, log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Proc:
    """Start a detached process (own session, so it survives the CLI and is stopped as a group)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        p = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    return Proc.of(name, p.pid, str(log))


def stop(proc: Proc, *, timeout: float = 10.0) -> bool:
    """SIGTERM the process group the stack started, then SIGKILL what is left. True if it was running."""
    if not proc.alive():
        return False
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return False
    # Only signal the group if the process leads it (it does: start_new_session).
    target_group = pgid == proc.pid
    try:
        if target_group:
            os.killpg(pgid, signal.SIGTERM)
        else:
            os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            break
        time.sleep(0.1)
    if proc.alive():
        try:
            if target_group:
                os.killpg(pgid, signal.SIGKILL)
            else:
                os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # Reap leftovers of the group (children that ignored SIGTERM).
    if target_group:
        for child in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(child.pid) == pgid:
                    child.kill()
            except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
                continue
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def wait_for_port(port: int, *, timeout: float, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited during start-up; see {proc.log}")
        time.sleep(0.1)
    raise TimeoutError(f"port {port} did not open within {timeout:.0f}s")
