"""The embedded PostgreSQL server: the ``pgserver`` wheel's binaries, listening on loopback TCP.

pgserver's own ``get_server`` listens on a Unix socket only; Airflow, psycopg and tests want a host and
port, and production is a TCP server, so we drive the same binaries (``initdb``, ``pg_ctl``) ourselves.
As root, PostgreSQL refuses to run, so it runs as the system user ``pgserver`` (created on demand), as
pgserver itself does. TCP logins use SCRAM passwords; only the local socket of the admin trusts the OS user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from attestly_dev.stack.procs import Proc

PG_USER = "pgserver"


def _bin(name: str) -> Path:
    import warnings

    with warnings.catch_warnings():
        # pgserver's package import asks platformdirs for XDG_RUNTIME_DIR, unset on servers and CI.
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH) / name


def _as_root() -> bool:
    return os.geteuid() == 0


def _run_as(argv: list[str], *, log: Path | None = None) -> None:
    kwargs: dict[str, object] = {}
    if _as_root():
        kwargs["user"] = PG_USER
    if log is not None:
        with log.open("ab") as out:
            subprocess.run(argv, check=True, stdout=out, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
    else:
        subprocess.run(argv, check=True, capture_output=True, **kwargs)  # type: ignore[call-overload]


def _prepare_root_permissions(*paths: Path) -> None:
    _bin("postgres")  # imports pgserver quietly first
    import stat

    from pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    entry = ensure_user_exists(PG_USER)
    assert entry is not None
    binpath = _bin("postgres").parent
    ensure_prefix_permissions(binpath)
    ensure_folder_permissions(binpath, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(binpath.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    if (binpath.parent / "share").exists():
        ensure_folder_permissions(binpath.parent / "share", stat.S_IRGRP | stat.S_IROTH)
    for path in paths:
        ensure_prefix_permissions(path)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def init_cluster(pgdata: Path, *, superuser_password: str) -> bool:
    """initdb once. Returns True if a new cluster was made."""
    if (pgdata / "PG_VERSION").exists():
        return False
    pgdata.mkdir(parents=True, exist_ok=True)
    pwfile = pgdata.parent / ".pwfile"
    pwfile.write_text(superuser_password + "\n")
    pwfile.chmod(0o600)
    if _as_root():
        _prepare_root_permissions(pgdata)
        entry = pwd.getpwnam(PG_USER)
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    try:
        _run_as(
            [
                str(_bin("initdb")),
                "-D",
                str(pgdata),
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
            ]
        )
    finally:
        pwfile.unlink(missing_ok=True)
    return True


def start(pgdata: Path, *, port: int, socket_dir: Path, log: Path) -> Proc:
    """Start the server with pg_ctl (it daemonises) and return the postmaster as a Proc."""
    socket_dir.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch(exist_ok=True)
    if _as_root():
        entry = pwd.getpwnam(PG_USER)
        _prepare_root_permissions(socket_dir)
        os.chown(log, entry.pw_uid, entry.pw_gid)
        os.chown(log.parent, entry.pw_uid, entry.pw_gid)
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {socket_dir} "
        "-c max_connections=200 -c shared_buffers=128MB -c fsync=on"
    )
    _run_as(
        [str(_bin("pg_ctl")), "-D", str(pgdata), "-l", str(log), "-o", options, "-w", "-t", "60", "start"],
        log=None,
    )
    pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    return Proc.of("postgres", pid, str(log))


def running(pgdata: Path, *, port: int) -> Proc | None:
    """The postmaster already serving this data directory on ``port``, if any (from ``postmaster.pid``:
    pid, data directory, start time, port). Lets ``up`` adopt its own server after a crash lost the
    process table entry, instead of refusing the port as someone else's."""
    import psutil

    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, datadir, listen_port = int(lines[0]), lines[1], int(lines[3])
        proc = psutil.Process(pid)
        if (
            Path(datadir).resolve() != pgdata.resolve()
            or listen_port != port
            or "postgres" not in proc.name()
        ):
            return None
        return Proc.of("postgres", pid, "")
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def stop(pgdata: Path) -> None:
    _run_as([str(_bin("pg_ctl")), "-D", str(pgdata), "-m", "fast", "-w", "-t", "60", "stop"])


def psql_path() -> str:
    return str(_bin("psql")) if _bin("psql").exists() else (shutil.which("psql") or "psql")
