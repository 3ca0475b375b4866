"""Resolve Airflow connections without needing Airflow for the common case.

Attestly reads the same connections in a task, in the CLI and in tests: ``audit_db`` (reader role),
``audit_archiver`` (archiver role, purge only), ``audit_writer`` (the application's insert-only role,
used by ``seed audit``), ``attestly_db``, ``aws_default``, ``smtp_default``, ``attestly_signing``.

Lookup order is Airflow's own: the ``AIRFLOW_CONN_<ID>`` environment variable first (URI or JSON), then,
only if Airflow is importable, Airflow's secrets backends and metadata database. Reading the environment
ourselves keeps the CLI fast and lets the verifier and key code run where Airflow is not installed.
Nothing here logs a password.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

if TYPE_CHECKING:
    import psycopg
    from botocore.client import BaseClient


class ConnectionNotFound(LookupError):
    """No connection with that id in the environment or in Airflow."""


@dataclass(frozen=True)
class Conn:
    conn_id: str
    conn_type: str = ""
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def pg_conninfo(self, **overrides: Any) -> str:
        """A libpq key/value connection string (values quoted)."""
        params: dict[str, Any] = {
            "host": self.host or "localhost",
            "port": self.port or 5432,
            "dbname": self.schema or "postgres",
            "user": self.login,
            "password": self.password,
        }
        for key in ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name"):
            if key in self.extra:
                params[key] = self.extra[key]
        params.update(overrides)
        return " ".join(f"{k}='{_pg_quote(str(v))}'" for k, v in params.items() if v is not None and v != "")

    def uri(self) -> str:
        """Airflow-style URI (with the password: for the environment of child processes only)."""
        auth = ""
        if self.login:
            auth = quote(self.login, safe="")
            if self.password:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        host = self.host or ""
        port = f":{self.port}" if self.port else ""
        path = f"/{quote(self.schema, safe='')}" if self.schema else ""
        query = ""
        if self.extra:
            query = "?__extra__=" + quote(json.dumps(self.extra), safe="")
        scheme = self.conn_type.replace("_", "-") or "generic"
        return f"{scheme}://{auth}{host}{port}{path}{query}"

    def to_json(self) -> str:
        body: dict[str, Any] = {"conn_type": self.conn_type}
        for key in ("host", "port", "login", "password", "schema"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        if self.extra:
            body["extra"] = self.extra
        return json.dumps(body, sort_keys=True)


def _pg_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def parse_conn(conn_id: str, value: str) -> Conn:
    """Parse the value of an ``AIRFLOW_CONN_*`` variable: JSON or URI, as Airflow does."""
    value = value.strip()
    if value.startswith("{"):
        try:
            body = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"AIRFLOW_CONN_{conn_id.upper()}: invalid JSON ({exc})") from exc
        extra = body.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra else {}
        return Conn(
            conn_id=conn_id,
            conn_type=body.get("conn_type", ""),
            host=body.get("host"),
            port=int(body["port"]) if body.get("port") else None,
            login=body.get("login"),
            password=body.get("password"),
            schema=body.get("schema"),
            extra=extra,
        )
    parts = urlsplit(value)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    uri_extra: dict[str, Any] = json.loads(query["__extra__"]) if "__extra__" in query else dict(query)
    return Conn(
        conn_id=conn_id,
        conn_type=parts.scheme.replace("-", "_"),
        host=unquote(parts.hostname) if parts.hostname else None,
        port=parts.port,
        login=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        schema=unquote(parts.path.lstrip("/")) or None,
        extra=uri_extra,
    )


def get_conn(conn_id: str) -> Conn:
    """The connection ``conn_id``: environment first, then Airflow's secrets backends."""
    env_value = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if env_value:
        return parse_conn(conn_id, env_value)
    try:
        from airflow.sdk import BaseHook
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConnectionNotFound(
            f"connection {conn_id!r}: AIRFLOW_CONN_{conn_id.upper()} is not set and Airflow is not installed"
        ) from exc
    try:
        c = BaseHook.get_connection(conn_id)
    except Exception as exc:  # Airflow raises its own AirflowNotFoundException
        raise ConnectionNotFound(
            f"connection {conn_id!r} is not defined (set AIRFLOW_CONN_{conn_id.upper()} or add it in Airflow)"
        ) from exc
    return Conn(
        conn_id=conn_id,
        conn_type=c.conn_type or "",
        host=c.host,
        port=c.port,
        login=c.login,
        password=c.password,
        schema=c.schema,
        extra=c.extra_dejson,
    )


def pg_connect(conn_id: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a psycopg 3 connection for ``conn_id`` (``audit_db``, ``attestly_db``, ...)."""
    import psycopg

    return psycopg.connect(get_conn(conn_id).pg_conninfo(), **kwargs)


def aws_client(
    service: str,
    *,
    aws_conn_id: str = "aws_default",
    region_name: str | None = None,
    endpoint_url: str | None = None,
) -> BaseClient:
    """A boto3 client configured from an Amazon-provider-style connection.

    Credentials come from login/password when set, otherwise from boto3's default chain (instance role,
    environment, SSO). ``extra`` may hold ``region_name`` and ``endpoint_url`` as in the Amazon provider.
    Retries use botocore's adaptive mode, so throttling is absorbed rather than failing the task.
    """
    import boto3
    from botocore.config import Config

    try:
        conn: Conn | None = get_conn(aws_conn_id)
    except ConnectionNotFound:
        conn = None
    extra = conn.extra if conn else {}
    session = boto3.session.Session(
        aws_access_key_id=conn.login if conn and conn.login else None,
        aws_secret_access_key=conn.password if conn and conn.password else None,
        aws_session_token=extra.get("aws_session_token"),
        region_name=region_name
        or extra.get("region_name")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1",
    )
    config = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=10, read_timeout=60)
    return session.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint_url or extra.get("endpoint_url"),
        config=config,
    )
