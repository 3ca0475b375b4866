"""The embedded local stack: ``attestly stack up | down | status | env``.

Everything lives under ``$ATTESTLY_HOME`` (default ``.attestly/``, git-ignored):

- PostgreSQL (the ``pgserver`` wheel) with databases ``airflow``, ``audit`` and ``attestly`` and one
  login role per duty; or any server named by ``ATTESTLY_DATABASE_URL`` (a superuser URL), in which case
  no local server is started and the same databases and roles are created there;
- a moto server for S3, KMS, IAM, EC2, CloudTrail, RDS, Config and STS over HTTP, with the evidence bucket
  created with Object Lock;
- an SMTP server writing each message to ``mail/*.eml``;
- an Airflow home whose metadata database is migrated, with the dags folder pointing at ``dags/``.

Connections are given to Airflow and the CLI through ``AIRFLOW_CONN_*`` variables, printed by
``attestly stack env``; the code reading them does not know it is local. Generated passwords and keys are
kept in ``secrets.json`` (mode 0600) and never in the repository.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from attestly import config
from attestly.connections import Conn
from attestly_dev.stack import postgres, procs

DATABASES = ("airflow", "audit", "attestly")
# Login roles the stack creates; each gets a generated password. Non-login owner roles are made by migrations.
LOGIN_ROLES = (
    "airflow",
    "audit_writer",
    "attestly_reader",
    "attestly_archiver",
    "attestly_custodian",
    "attestly_app",
)
AWS_REGION = "us-east-1"
MOTO_ACCESS_KEY = "testing"  # moto accepts any credentials; these are not secrets


class StackError(RuntimeError):
    """The local stack cannot do what was asked; the message says what and where to look."""


@dataclass
class Paths:
    home: Path

    @property
    def state(self) -> Path:
        return self.home / "stack.json"

    @property
    def secrets(self) -> Path:
        return self.home / "secrets.json"

    @property
    def procs(self) -> Path:
        return self.home / "procs.json"

    @property
    def pgdata(self) -> Path:
        return self.home / "pg" / "data"

    @property
    def pg_log(self) -> Path:
        return self.home / "logs" / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        # Unix socket paths are limited to ~107 bytes; fall back to /tmp for deep homes (tests).
        candidate = self.home / "pg" / "sock"
        if len(str(candidate)) > 80:
            import hashlib

            digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
            return Path("/tmp") / f"attestly-pg-{digest}"  # noqa: S108 - short path for the socket only
        return candidate

    @property
    def mail(self) -> Path:
        return self.home / "mail"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"


def paths() -> Paths:
    return Paths(config.home())


# --------------------------------------------------------------------------------------------------- state


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _write_json(path: Path, data: dict[str, Any], *, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
    tmp.replace(path)


def _secrets(p: Paths) -> dict[str, Any]:
    """Generated once per stack: database passwords, Airflow keys, the evidence signing key."""
    data = _read_json(p.secrets)
    changed = False
    for role in (*LOGIN_ROLES, "postgres"):
        key = f"pg:{role}"
        if key not in data:
            data[key] = secrets.token_urlsafe(24)
            changed = True
    if "airflow:fernet_key" not in data:
        data["airflow:fernet_key"] = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        changed = True
    for key in ("airflow:jwt_secret", "airflow:api_secret_key"):
        if key not in data:
            data[key] = secrets.token_urlsafe(32)
            changed = True
    if "signing:ed25519_private" not in data:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        raw = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        data["signing:ed25519_private"] = base64.b64encode(raw).decode()
        changed = True
    if changed:
        _write_json(p.secrets, data, private=True)
    return data


def _state(p: Paths) -> dict[str, Any]:
    state = _read_json(p.state)
    ports = state.setdefault("ports", {})
    for name in ("postgres", "moto", "smtp", "airflow_api", "redis"):
        if name not in ports:
            ports[name] = procs.free_port()
    _write_json(p.state, state)
    return state


# ------------------------------------------------------------------------------------------ connections


@dataclass(frozen=True)
class Server:
    """Where PostgreSQL is: host/port and a superuser to administer it."""

    host: str
    port: int
    admin_user: str
    admin_password: str | None
    admin_db: str
    external: bool
    sslmode: str | None = None

    def admin_conninfo(self, dbname: str | None = None) -> str:
        return Conn(
            conn_id="admin",
            conn_type="postgres",
            host=self.host,
            port=self.port,
            login=self.admin_user,
            password=self.admin_password,
            schema=dbname or self.admin_db,
            extra={"sslmode": self.sslmode} if self.sslmode else {},
        ).pg_conninfo()


def server(p: Paths | None = None) -> Server:
    p = p or paths()
    url = os.environ.get("ATTESTLY_DATABASE_URL")
    if url:
        parts = urlsplit(url)
        from urllib.parse import parse_qs, unquote

        q = parse_qs(parts.query)
        return Server(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            admin_user=unquote(parts.username or "postgres"),
            admin_password=unquote(parts.password) if parts.password else None,
            admin_db=(parts.path.lstrip("/") or "postgres"),
            external=True,
            sslmode=q.get("sslmode", [None])[0],
        )
    sec = _secrets(p)
    st = _state(p)
    return Server(
        host="127.0.0.1",
        port=int(st["ports"]["postgres"]),
        admin_user="postgres",
        admin_password=sec["pg:postgres"],
        admin_db="postgres",
        external=False,
    )


def connections(p: Paths | None = None) -> dict[str, Conn]:
    """The Airflow connections of this stack, by connection id."""
    p = p or paths()
    sec = _secrets(p)
    st = _state(p)
    srv = server(p)
    ssl = {"sslmode": srv.sslmode} if srv.sslmode else {}

    def pg(conn_id: str, role: str, db: str) -> Conn:
        return Conn(
            conn_id=conn_id,
            conn_type="postgres",
            host=srv.host,
            port=srv.port,
            login=role,
            password=sec[f"pg:{role}"],
            schema=db,
            extra=dict(ssl),
        )

    moto = f"http://127.0.0.1:{st['ports']['moto']}"
    return {
        "audit_db": pg("audit_db", "attestly_reader", "audit"),
        "audit_archiver": pg("audit_archiver", "attestly_archiver", "audit"),
        "audit_writer": pg("audit_writer", "audit_writer", "audit"),
        "audit_custodian": pg("audit_custodian", "attestly_custodian", "audit"),
        "attestly_db": pg("attestly_db", "attestly_app", "attestly"),
        "aws_default": Conn(
            conn_id="aws_default",
            conn_type="aws",
            login=MOTO_ACCESS_KEY,
            password=MOTO_ACCESS_KEY,
            extra={"region_name": AWS_REGION, "endpoint_url": moto},
        ),
        "smtp_default": Conn(
            conn_id="smtp_default",
            conn_type="smtp",
            host="127.0.0.1",
            port=int(st["ports"]["smtp"]),
            extra={"disable_tls": True, "disable_ssl": True, "from_email": "attestly@localhost"},
        ),
        "attestly_signing": Conn(
            conn_id="attestly_signing",
            conn_type="generic",
            password=sec["signing:ed25519_private"],
            extra={"algorithm": "ed25519"},
        ),
    }


def environment(p: Paths | None = None) -> dict[str, str]:
    """Variables for Airflow, the CLI and the tests to use this stack."""
    p = p or paths()
    sec = _secrets(p)
    st = _state(p)
    srv = server(p)
    api_port = int(st["ports"]["airflow_api"])
    airflow_db = f"postgresql+psycopg2://airflow:{sec['pg:airflow']}@{srv.host}:{srv.port}/airflow" + (
        f"?sslmode={srv.sslmode}" if srv.sslmode else ""
    )
    env = {
        "ATTESTLY_HOME": str(p.home),
        "ATTESTLY_EVIDENCE_BUCKET": config.evidence_bucket(),
        "ATTESTLY_AWS_ENDPOINT_URL": f"http://127.0.0.1:{st['ports']['moto']}",
        "AIRFLOW_HOME": str(p.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(config.dags_dir()),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(config.plugins_dir()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
        "AIRFLOW__CORE__FERNET_KEY": sec["airflow:fernet_key"],
        # admin runs everything; auditor (viewer) reads the Evidence view and runs, and may not upload or trigger.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,auditor:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(p.airflow_home / "passwords.json"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__API__SECRET_KEY": sec["airflow:api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": sec["airflow:jwt_secret"],
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__EMAIL__EMAIL_BACKEND": "airflow.providers.smtp.notifications.smtp.SmtpNotifier",
        "NO_PROXY": "*",
    }
    executor = st.get("executor") or {}
    if executor.get("kind") == "celery":
        # `make airflow EXECUTOR=celery`: Redis as the broker, the Airflow database as the result backend.
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{st['ports']['redis']}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + airflow_db.replace("+psycopg2", ""),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(executor.get("concurrency", 2)),
                "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                "AIRFLOW__CELERY__TASK_ACKS_LATE": "True",
            }
        )
    for conn_id, conn in connections(p).items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = conn.to_json()
    return env


def set_executor(kind: str, *, workers: int = 0, concurrency: int = 2, p: Paths | None = None) -> None:
    """Record which executor the stack's Airflow runs (``local`` or ``celery``), for every process and
    for ``attestly stack env``."""
    p = p or paths()
    st = _state(p)
    st["executor"] = {"kind": kind, "workers": workers, "concurrency": concurrency}
    _write_json(p.state, st)


def apply_environment(p: Paths | None = None) -> dict[str, str]:
    """Export this stack's variables into the current process (for the CLI and tests)."""
    env = environment(p)
    os.environ.update(env)
    return env


# ------------------------------------------------------------------------------------------------- up


def up(*, quiet: bool = False, migrate_airflow: bool = True) -> dict[str, Any]:
    """Start (or confirm) every service; safe to call again. Returns the status."""
    p = paths()
    p.home.mkdir(parents=True, exist_ok=True)
    (p.home / ".gitignore").write_text("*\n")
    _secrets(p)
    st = _state(p)
    table = procs.ProcTable(p.procs)
    running = table.load()
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr))

    # PostgreSQL
    srv = server(p)
    if not srv.external:
        existing = running.get("postgres")
        if existing is None or not existing.alive():
            if existing is not None:
                table.remove("postgres")
            postgres.init_cluster(p.pgdata, superuser_password=_secrets(p)["pg:postgres"])
            port = int(st["ports"]["postgres"])
            adopted = postgres.running(p.pgdata, port=port) if procs.port_open(port) else None
            if adopted is not None:
                say(f"adopting the PostgreSQL already serving {p.pgdata} on 127.0.0.1:{port}")
                table.add(procs.Proc.of("postgres", adopted.pid, str(p.pg_log)))
            elif procs.port_open(port):
                raise StackError(
                    f"port {port} (PostgreSQL) is taken by another process; remove {p.state} to pick a new one"
                )
            else:
                say(f"starting PostgreSQL on 127.0.0.1:{port}")
                table.add(postgres.start(p.pgdata, port=port, socket_dir=p.socket_dir, log=p.pg_log))
    _bootstrap_databases(srv, _secrets(p))
    from attestly.db import migrate

    migrate.migrate_all(srv)

    # moto server (S3, KMS, IAM, EC2, CloudTrail, RDS, Config, STS)
    moto_port = int(st["ports"]["moto"])
    _ensure_process(
        table,
        name="moto",
        port=moto_port,
        argv=[sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        log=p.logs / "moto.log",
        say=say,
    )
    apply_environment(p)
    _ensure_evidence_bucket()

    # SMTP sink
    smtp_port = int(st["ports"]["smtp"])
    p.mail.mkdir(parents=True, exist_ok=True)
    _ensure_process(
        table,
        name="smtp",
        port=smtp_port,
        argv=[
            sys.executable,
            "-m",
            "attestly_dev.stack.smtp_sink",
            "--port",
            str(smtp_port),
            "--dir",
            str(p.mail),
        ],
        log=p.logs / "smtp.log",
        say=say,
    )

    if migrate_airflow:
        _migrate_airflow(p, say)
    return status()


def _ensure_process(
    table: procs.ProcTable, *, name: str, port: int, argv: list[str], log: Path, say: Any
) -> None:
    existing = table.load().get(name)
    if existing is not None and existing.alive() and procs.port_open(port):
        return
    if existing is not None:
        procs.stop(existing)
        table.remove(name)
    if procs.port_open(port):
        own = procs.find_by_argv(argv)
        if own is not None:
            # Our own server (same command line, same port) whose table entry a crash lost: adopt it.
            say(f"adopting the {name} already serving 127.0.0.1:{port} (pid {own})")
            table.add(procs.Proc.of(name, own, str(log)))
            return
        raise StackError(
            f"port {port} ({name}) is taken by another process; remove stack.json to pick a new one"
        )
    say(f"starting {name} on 127.0.0.1:{port}")
    proc = procs.spawn(name, argv, log=log)
    table.add(proc)
    procs.wait_for_port(port, timeout=60, proc=proc)


def _bootstrap_databases(srv: Server, sec: dict[str, Any]) -> None:
    """Create databases and login roles if missing; (re)set the generated passwords."""
    import psycopg
    from psycopg import sql

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = psycopg.connect(srv.admin_conninfo(), autocommit=True)
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with conn:
        for role in LOGIN_ROLES:
            password = sec.get(f"pg:{role}")
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                    sql.SQL(verb), sql.Identifier(role), sql.Literal(password)
                )
            )
        for db in DATABASES:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
                owner = "airflow" if db == "airflow" else srv.admin_user
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
                        sql.Identifier(db), sql.Identifier(owner)
                    )
                )
                conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db)))
        conn.execute("GRANT CONNECT ON DATABASE airflow TO airflow")


def _ensure_evidence_bucket() -> None:
    """Create the evidence bucket with Object Lock (and versioning, which Object Lock implies)."""
    from attestly.connections import aws_client

    s3 = aws_client("s3")
    bucket = config.evidence_bucket()
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except s3.exceptions.ClientError:
        pass
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )


def _airflow_env(p: Paths) -> dict[str, str]:
    env = dict(os.environ)
    env.update(environment(p))
    return env


def _migrate_airflow(p: Paths, say: Any) -> None:
    marker = p.airflow_home / ".migrated"
    import airflow

    version = getattr(airflow, "__version__", "unknown")
    if marker.exists() and marker.read_text() == version:
        return
    p.airflow_home.mkdir(parents=True, exist_ok=True)
    say("migrating the Airflow metadata database (first run only, ~30 s)")
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    result = subprocess.run(
        [airflow_bin, "db", "migrate"],
        env=_airflow_env(p),
        capture_output=True,
        text=True,
        check=False,
    )
    (p.logs / "airflow-db-migrate.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise StackError(f"airflow db migrate failed; see {p.logs / 'airflow-db-migrate.log'}")
    marker.write_text(version)


# --------------------------------------------------------------------------------------------- status


def status() -> dict[str, Any]:
    """Health of each service: running (ours), reachable, and where."""
    import psycopg

    p = paths()
    if not p.state.exists():
        return {"home": str(p.home), "services": {}, "healthy": False}
    st = _read_json(p.state)
    running = procs.ProcTable(p.procs).load()
    srv = server(p)
    services: dict[str, dict[str, Any]] = {}

    pg_ok = False
    detail = ""
    try:
        with psycopg.connect(srv.admin_conninfo(), connect_timeout=3) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_database WHERE datname = ANY(%s)", (list(DATABASES),)
            ).fetchone()
            pg_ok = bool(row and row[0] == len(DATABASES))
            detail = (
                "databases: " + ", ".join(DATABASES)
                if pg_ok
                else "databases missing (run `attestly stack up`)"
            )
    except psycopg.OperationalError as exc:
        detail = f"unreachable: {str(exc).strip().splitlines()[0]}"
    services["postgres"] = {
        "healthy": pg_ok,
        "address": f"{srv.host}:{srv.port}",
        "managed": not srv.external,
        "pid": running["postgres"].pid if "postgres" in running and running["postgres"].alive() else None,
        "detail": detail,
    }
    for name in ("moto", "smtp"):
        port = int(st["ports"][name])
        proc = running.get(name)
        alive = proc is not None and proc.alive()
        services[name] = {
            "healthy": alive and procs.port_open(port),
            "address": f"127.0.0.1:{port}",
            "managed": True,
            "pid": proc.pid if alive and proc else None,
            "detail": {
                "moto": "S3, KMS, IAM, EC2, CloudTrail, RDS, Config, STS",
                "smtp": f"mail in {p.mail}",
            }[name],
        }
    for name, proc in sorted(running.items()):
        if name.startswith("airflow-"):
            alive = proc.alive()
            services[name] = {
                "healthy": alive,
                "address": ""
                if name != "airflow-api-server"
                else f"http://127.0.0.1:{st['ports']['airflow_api']}",
                "managed": True,
                "pid": proc.pid if alive else None,
                "detail": "running" if alive else f"exited; see {proc.log}",
            }
    af_ok = (p.airflow_home / ".migrated").exists()
    services["airflow"] = {
        "healthy": af_ok and pg_ok,
        "address": str(p.airflow_home),
        "managed": True,
        "pid": None,
        "detail": "metadata database migrated" if af_ok else "not migrated (run `attestly stack up`)",
    }
    return {
        "home": str(p.home),
        "services": services,
        "healthy": all(s["healthy"] for s in services.values()),
    }


# ----------------------------------------------------------------------------------------------- down


def down() -> list[str]:
    """Stop exactly the processes this stack started. Data stays under ATTESTLY_HOME."""
    p = paths()
    table = procs.ProcTable(p.procs)
    stopped: list[str] = []
    # Clients first (Airflow, then the emulators), the database last, so nothing dies on a lost connection.
    entries = sorted(
        table.load().items(), key=lambda kv: (kv[0] == "postgres", not kv[0].startswith("airflow"))
    )
    for name, proc in entries:
        if name == "postgres":
            if proc.alive():
                try:
                    postgres.stop(p.pgdata)
                except subprocess.CalledProcessError:
                    procs.stop(proc)
                stopped.append(name)
        elif procs.stop(proc):
            stopped.append(name)
        table.remove(name)
    return stopped
