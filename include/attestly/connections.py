"""Resolve Airflow connections: Airflow's own lookup inside Airflow, the environment outside it.

Attestly reads the same connections in a task, in the CLI and in tests: ``audit_db`` (reader role),
``audit_archiver`` (archiver role, purge only), ``audit_writer`` (the application's insert-only role,
used by ``seed audit``), ``attestly_db``, ``aws_default``, ``smtp_default``, ``attestly_signing``.

Lookup (:func:`get_conn`), decided per call by :func:`use_airflow`:

* **Inside Airflow** -- in a task (the Task SDK's supervisor channel is set: workers, ``airflow dags
  test``, ``dag.test()``), or in any process where ``AIRFLOW__SECRETS__BACKEND`` is set and Airflow is
  installed -- the lookup is Airflow's own (``airflow.sdk.BaseHook.get_connection``): the configured
  secrets backend first, then ``AIRFLOW_CONN_<ID>``, then (in a task) the metadata database through the
  API server.
* **Outside Airflow** (the CLI, the verifier, tests; Airflow may not even be installed) --
  ``AIRFLOW_CONN_<ID>`` (URI or JSON, parsed as Airflow parses it); only when that is unset and Airflow is
  importable, Airflow's lookup as a fallback.
* ``ATTESTLY_CONNECTION_LOOKUP=airflow`` forces Airflow's lookup, ``=environment`` the environment only;
  ``auto`` (the default) is the rule above.

The same rule picks how connections are *used*: inside Airflow, AWS sessions and clients come from the
Amazon provider's ``AwsBaseHook`` and mail goes through the SMTP provider's ``SmtpHook``; outside, a boto3
path that reads the same connection extras the same way (see :class:`AwsSettings`) and smtplib.
Nothing here logs a password.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

if TYPE_CHECKING:
    import boto3
    import psycopg
    from botocore.client import BaseClient
    from botocore.config import Config

LOOKUP_ENV = "ATTESTLY_CONNECTION_LOOKUP"

# libpq connection keywords (PostgreSQL 17): an extra with one of these names is passed to libpq as is.
LIBPQ_KEYWORDS = frozenset(
    {
        "hostaddr", "passfile", "require_auth", "channel_binding", "connect_timeout", "client_encoding",
        "options", "application_name", "fallback_application_name", "keepalives", "keepalives_idle",
        "keepalives_interval", "keepalives_count", "tcp_user_timeout", "replication", "gssencmode",
        "sslmode", "sslnegotiation", "sslcompression", "sslcert", "sslkey", "sslpassword", "sslcertmode",
        "sslrootcert", "sslcrl", "sslcrldir", "sslsni", "requirepeer", "ssl_min_protocol_version",
        "ssl_max_protocol_version", "krbsrvname", "gsslib", "gssdelegation", "service",
        "target_session_attrs", "load_balance_hosts",
    }
)  # fmt: skip
# Extras the Postgres provider's hook does not pass to libpq (PostgresHook.ignored_extra_options).
PG_PROVIDER_EXTRAS = frozenset(
    {
        "iam", "redshift", "redshift-serverless", "cursor", "cluster-identifier", "workgroup-name",
        "aws_conn_id", "sqlalchemy_scheme", "sqlalchemy_query", "azure_conn_id",
    }
)  # fmt: skip


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

    def pg_params(self, **overrides: Any) -> dict[str, Any]:
        """libpq connection parameters, read as the Postgres provider reads the connection.

        Every extra whose name is a libpq keyword (``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``,
        ``sslpassword``, ``sslcrl``, ``options``, ``connect_timeout``, ``application_name``, ...) is passed
        as is; the provider's own keys (``iam``, ``aws_conn_id``, ``cursor``, ...) are not; any other key
        is refused by name (libpq would refuse it at connect). With ``"iam": true`` the password is an RDS
        IAM token made with the ``aws_conn_id`` connection (default ``aws_default``) for host, port
        (default 5432) and login -- ``PostgresHook.get_aws_iam_token``'s ``generate_db_auth_token``.
        """
        params: dict[str, Any] = {
            "host": self.host or "localhost",
            "port": self.port or 5432,
            "dbname": self.schema or "postgres",
            "user": self.login,
            "password": self.password,
        }
        for key, value in self.extra.items():
            if key in PG_PROVIDER_EXTRAS:
                continue
            if key not in LIBPQ_KEYWORDS:
                raise ValueError(
                    f"connection {self.conn_id!r}: extra {key!r} is not a libpq connection parameter"
                )
            params[key] = ("1" if value else "0") if isinstance(value, bool) else value
        if _truthy(self.extra.get("iam", False)):
            params["password"] = self.rds_iam_token()
        params.update(overrides)
        return {k: v for k, v in params.items() if v is not None and v != ""}

    def rds_iam_token(self) -> str:
        """An RDS IAM authentication token for this connection's host, port and login."""
        for unsupported in ("redshift", "redshift-serverless", "azure_conn_id"):
            if self.extra.get(unsupported):
                raise ValueError(
                    f"connection {self.conn_id!r}: IAM with {unsupported!r} is not supported (PostgreSQL only)"
                )
        if not self.host or not self.login:
            raise ValueError(f"connection {self.conn_id!r}: IAM authentication needs a host and a login")
        rds = aws_client("rds", aws_conn_id=str(self.extra.get("aws_conn_id") or "aws_default"))
        return str(
            rds.generate_db_auth_token(DBHostname=self.host, Port=self.port or 5432, DBUsername=self.login)
        )

    def pg_conninfo(self, **overrides: Any) -> str:
        """A libpq key/value connection string (values quoted) of :meth:`pg_params`."""
        return " ".join(f"{k}='{_pg_quote(str(v))}'" for k, v in self.pg_params(**overrides).items())

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


def _truthy(value: object) -> bool:
    """An extra's boolean: JSON true, or a string such as ``"true"`` / ``"1"`` (``"false"`` is false)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


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


def in_airflow_task() -> bool:
    """True inside an Airflow task (the Task SDK's supervisor channel is set), without importing Airflow."""
    runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return getattr(runner, "SUPERVISOR_COMMS", None) is not None


def _lookup_mode() -> str:
    mode = os.environ.get(LOOKUP_ENV, "auto").strip().lower() or "auto"
    if mode not in ("auto", "airflow", "environment"):
        raise ValueError(f"{LOOKUP_ENV}={mode!r}: expected auto, airflow or environment")
    return mode


def use_airflow() -> bool:
    """Whether connections are looked up (and used) the Airflow way; see the module docstring."""
    mode = _lookup_mode()
    if mode != "auto":
        return mode == "airflow"
    return in_airflow_task() or (bool(os.environ.get("AIRFLOW__SECRETS__BACKEND")) and _airflow_installed())


def _airflow_installed() -> bool:
    """Whether Airflow is installed (found, not imported: importing it initialises its settings)."""
    import importlib.util

    try:
        return importlib.util.find_spec("airflow") is not None
    except ImportError:
        return False


def get_conn(conn_id: str) -> Conn:
    """The connection ``conn_id``: Airflow's lookup inside Airflow, else ``AIRFLOW_CONN_<ID>``."""
    if use_airflow():
        return _airflow_conn(conn_id)
    env_value = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if env_value:
        return parse_conn(conn_id, env_value)
    if _lookup_mode() == "environment":
        raise ConnectionNotFound(f"connection {conn_id!r}: AIRFLOW_CONN_{conn_id.upper()} is not set")
    return _airflow_conn(conn_id)


def _airflow_conn(conn_id: str) -> Conn:
    try:
        from airflow.sdk import BaseHook
    except ImportError as exc:
        raise ConnectionNotFound(
            f"connection {conn_id!r}: AIRFLOW_CONN_{conn_id.upper()} is not set and Airflow is not installed"
        ) from exc
    try:
        c = BaseHook.get_connection(conn_id)
    except Exception as exc:  # Airflow raises its own AirflowNotFoundException
        raise ConnectionNotFound(
            f"connection {conn_id!r} is not defined (set AIRFLOW_CONN_{conn_id.upper()}, add it in Airflow "
            "or in its secrets backend)"
        ) from exc
    return Conn(
        conn_id=conn_id,
        conn_type=c.conn_type or "",
        host=c.host,
        port=int(c.port) if c.port else None,
        login=c.login,
        password=c.password,
        schema=c.schema,
        extra=dict(c.extra_dejson),
    )


def pg_connect(conn_id: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a psycopg 3 connection for ``conn_id`` (``audit_db``, ``attestly_db``, ...)."""
    import psycopg

    return psycopg.connect(get_conn(conn_id).pg_conninfo(), **kwargs)


# ------------------------------------------------------------------------------------------------ AWS

DEFAULT_REGION = "us-east-1"
RETRY_CONFIG = {"max_attempts": 8, "mode": "adaptive"}
_INVALID_SESSION_NAME = re.compile(r"[^\w+=,.@-]")


def client_config(connection_config: Config | None = None) -> Config:
    """Attestly's botocore config (adaptive retries, 8 attempts; timeouts), overridden by the
    connection's own (``extra.config_kwargs``, the Amazon provider's ``botocore_config``) where that sets
    an option."""
    from botocore.config import Config

    base = Config(retries=dict(RETRY_CONFIG), connect_timeout=10, read_timeout=60)  # type: ignore[arg-type]
    return base.merge(connection_config) if connection_config is not None else base


@dataclass(frozen=True)
class AwsSettings:
    """An ``aws`` connection read as the Amazon provider's ``AwsConnectionWrapper`` reads it.

    Credentials: login/password, else ``extra.aws_access_key_id``/``aws_secret_access_key``, else
    ``extra.session_kwargs``; ``extra.aws_session_token``; else boto3's default chain (instance role,
    IRSA, environment, SSO). ``extra.region_name``, ``profile_name``, ``endpoint_url`` (every service),
    ``service_config.<service>.endpoint_url`` (one service), ``config_kwargs`` (botocore ``Config``),
    ``verify``, ``role_arn`` with ``assume_role_method`` (default ``assume_role``) and
    ``assume_role_kwargs``. As in the provider, the STS client that assumes ``role_arn`` never uses the
    global ``endpoint_url``: only ``service_config.sts.endpoint_url``.
    """

    conn_id: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    region_name: str | None = None
    profile_name: str | None = None
    endpoint_url: str | None = None
    service_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    config_kwargs: dict[str, Any] | None = None
    verify: bool | str | None = None
    role_arn: str | None = None
    assume_role_method: str | None = None
    assume_role_kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_conn(cls, conn: Conn | None) -> AwsSettings:
        if conn is None:
            return cls()
        extra = dict(conn.extra)
        session_kwargs = extra.get("session_kwargs") or {}
        key_id, secret = None, None
        if conn.login and conn.password:
            key_id, secret = conn.login, conn.password
        elif extra.get("aws_access_key_id") and extra.get("aws_secret_access_key"):
            key_id, secret = extra["aws_access_key_id"], extra["aws_secret_access_key"]
        elif session_kwargs.get("aws_access_key_id") and session_kwargs.get("aws_secret_access_key"):
            key_id, secret = session_kwargs["aws_access_key_id"], session_kwargs["aws_secret_access_key"]
        role_arn = extra.get("role_arn") or None
        method = str(extra.get("assume_role_method") or "assume_role") if role_arn else None
        if method and method not in ("assume_role", "assume_role_with_saml", "assume_role_with_web_identity"):
            raise ValueError(f"connection {conn.conn_id!r}: assume_role_method={method!r} is not supported")
        return cls(
            conn_id=conn.conn_id,
            access_key_id=key_id,
            secret_access_key=secret,
            session_token=extra.get("aws_session_token") or session_kwargs.get("aws_session_token") or None,
            region_name=extra.get("region_name") or None,
            profile_name=extra.get("profile_name") or None,
            endpoint_url=extra.get("endpoint_url") or None,
            service_config=dict(extra.get("service_config") or {}),
            config_kwargs=dict(extra["config_kwargs"]) if extra.get("config_kwargs") else None,
            verify=extra.get("verify"),
            role_arn=role_arn,
            assume_role_method=method,
            assume_role_kwargs=dict(extra.get("assume_role_kwargs") or {}) if role_arn else {},
        )

    def endpoint_for(self, service: str, *, assume_role: bool = False) -> str | None:
        """The endpoint URL for ``service`` (``AwsConnectionWrapper.get_service_endpoint_url``)."""
        default = None if (service == "sts" and assume_role) else self.endpoint_url
        return (self.service_config.get(service) or {}).get("endpoint_url", default) or None

    def botocore_config(self) -> Config | None:
        if not self.config_kwargs:
            return None
        from botocore import UNSIGNED
        from botocore.config import Config

        kwargs = dict(self.config_kwargs)
        if kwargs.get("signature_version") == "unsigned":
            kwargs["signature_version"] = UNSIGNED
        return Config(**kwargs)


def aws_settings(aws_conn_id: str | None) -> AwsSettings:
    """The connection's settings; empty (boto3's default chain) when it does not exist."""
    if not aws_conn_id:
        return AwsSettings()
    try:
        return AwsSettings.from_conn(get_conn(aws_conn_id))
    except ConnectionNotFound:
        return AwsSettings()


def _airflow_hook(aws_conn_id: str | None, service: str, region_name: str | None) -> Any:
    """The Amazon provider's hook, or None where the provider is not installed (then our reading)."""
    try:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    except ImportError:
        return None
    return AwsBaseHook(aws_conn_id=aws_conn_id or None, client_type=service, region_name=region_name)


def _default_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def aws_session(aws_conn_id: str | None = "aws_default", *, region_name: str | None = None) -> boto3.Session:
    """A boto3 session with the connection's identity: static keys, a profile, or the role it assumes.

    Inside Airflow this is ``AwsBaseHook(aws_conn_id).get_session()`` (every method the Amazon provider
    supports); outside, the same reading of the connection (:class:`AwsSettings`) with ``role_arn``
    assumed through STS ``AssumeRole`` (refreshed before it expires).
    """
    hook = _airflow_hook(aws_conn_id, "sts", region_name) if use_airflow() else None
    if hook is not None:
        region = region_name or hook.conn_config.region_name or _default_region()
        return hook.get_session(region_name=region)  # type: ignore[no-any-return]
    settings = aws_settings(aws_conn_id)
    return _boto3_session(settings, region_name or settings.region_name or _default_region())


def _boto3_session(settings: AwsSettings, region: str) -> boto3.Session:
    import boto3

    basic = boto3.session.Session(
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        aws_session_token=settings.session_token,
        region_name=region,
        profile_name=settings.profile_name,
    )
    if not settings.role_arn:
        return basic
    if settings.assume_role_method != "assume_role":
        raise ValueError(
            f"connection {settings.conn_id!r}: assume_role_method={settings.assume_role_method!r} needs "
            "Airflow's Amazon provider (run inside Airflow); outside Airflow only assume_role is supported"
        )
    import botocore.credentials
    import botocore.session

    sts = basic.client(
        "sts",
        endpoint_url=settings.endpoint_for("sts", assume_role=True),
        config=settings.botocore_config(),
        verify=settings.verify,
    )
    session_name = _INVALID_SESSION_NAME.sub("", f"Airflow_{settings.conn_id}")

    def refresh() -> dict[str, Any]:
        kwargs = {
            "RoleSessionName": session_name,
            **settings.assume_role_kwargs,
            "RoleArn": settings.role_arn,
        }
        creds = sts.assume_role(**kwargs)["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    core = botocore.session.get_session()
    core._credentials = botocore.credentials.RefreshableCredentials.create_from_metadata(
        metadata=refresh(), refresh_using=refresh, method="sts-assume-role"
    )
    return boto3.session.Session(botocore_session=core, region_name=region)


def aws_client(
    service: str,
    *,
    aws_conn_id: str | None = "aws_default",
    region_name: str | None = None,
    endpoint_url: str | None = None,
) -> BaseClient:
    """A boto3 client for ``service`` configured from an Amazon-provider connection.

    Inside Airflow: ``AwsBaseHook(aws_conn_id, client_type=service).get_client_type()``. Outside: the
    session of :func:`aws_session` and the connection's endpoint for the service. ``endpoint_url``
    overrides the connection's, ``region_name`` its ``extra.region_name``. The client config is
    :func:`client_config` (adaptive retries) merged with the connection's ``config_kwargs``.
    """
    hook = _airflow_hook(aws_conn_id, service, region_name) if use_airflow() else None
    if hook is not None:
        cc = hook.conn_config
        region = region_name or cc.region_name or _default_region()
        config = client_config(cc.botocore_config)
        if endpoint_url:
            return hook.get_session(region_name=region).client(  # type: ignore[no-any-return]
                service, region_name=region, endpoint_url=endpoint_url, config=config, verify=hook.verify
            )
        return hook.get_client_type(region_name=region, config=config)  # type: ignore[no-any-return]
    settings = aws_settings(aws_conn_id)
    region = region_name or settings.region_name or _default_region()
    return _boto3_session(settings, region).client(  # type: ignore[call-overload, no-any-return]
        service,
        region_name=region,
        endpoint_url=endpoint_url or settings.endpoint_for(service),
        config=client_config(settings.botocore_config()),
        verify=settings.verify,
    )
