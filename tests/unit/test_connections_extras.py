"""Connections without services: ``AIRFLOW_CONN_*`` parsing, the libpq parameters a PostgreSQL
connection gives (the Postgres provider's extras: sslmode family, options, iam), the Amazon provider's
reading of an ``aws`` connection, the lookup decision, and the CLI path with Airflow not importable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from attestly.connections import (
    AwsSettings,
    Conn,
    ConnectionNotFound,
    aws_client,
    get_conn,
    parse_conn,
    use_airflow,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _environment_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AIRFLOW_CONN_") or name.startswith("AIRFLOW__SECRETS__"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("ATTESTLY_CONNECTION_LOOKUP", raising=False)


# ------------------------------------------------------------------------------ AIRFLOW_CONN_* parsing


def test_uri_with_extra_json_and_quoted_parts() -> None:
    extra = {"sslmode": "verify-full", "options": "-c search_path=audit"}
    c = parse_conn(
        "audit_db",
        "postgres://us%40er:p%40ss%2Fw@db.example.com:6432/my%20db?__extra__="
        + __import__("urllib.parse").parse.quote(json.dumps(extra)),
    )
    assert (c.conn_type, c.host, c.port, c.login, c.password, c.schema) == (
        "postgres",
        "db.example.com",
        6432,
        "us@er",
        "p@ss/w",
        "my db",
    )
    assert c.extra == extra
    assert "p@ss/w" not in repr(c)  # the password is never in a repr (logs)


def test_uri_query_params_are_the_extra_and_dashes_are_underscores() -> None:
    c = parse_conn("x", "google-cloud-platform://h?a=1&region_name=eu-west-1")
    assert c.conn_type == "google_cloud_platform"
    assert c.extra == {"a": "1", "region_name": "eu-west-1"}


def test_json_with_extra_as_string_and_round_trips() -> None:
    body = {"conn_type": "aws", "login": "k", "password": "s", "extra": json.dumps({"region_name": "r"})}
    c = parse_conn("aws_default", json.dumps(body))
    assert c.extra == {"region_name": "r"} and c.port is None
    again = parse_conn("aws_default", c.to_json())
    assert again == c
    assert parse_conn("aws_default", c.uri()) == c


def test_invalid_json_names_the_variable() -> None:
    with pytest.raises(ValueError, match="AIRFLOW_CONN_AUDIT_DB: invalid JSON"):
        parse_conn("audit_db", "{not json")


def test_environment_lookup_and_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MY_DB", "postgres://u:p@h:1/d")
    assert get_conn("my_db").host == "h"
    monkeypatch.setenv("ATTESTLY_CONNECTION_LOOKUP", "environment")
    with pytest.raises(ConnectionNotFound, match="AIRFLOW_CONN_NOPE is not set"):
        get_conn("nope")


# ---------------------------------------------------------------------------------- lookup decision


def test_use_airflow_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    assert use_airflow() is False  # pytest is not an Airflow task and no secrets backend is configured
    monkeypatch.setenv("AIRFLOW__SECRETS__BACKEND", "airflow.secrets.local_filesystem.LocalFilesystemBackend")
    assert use_airflow() is True
    monkeypatch.setenv("ATTESTLY_CONNECTION_LOOKUP", "environment")
    assert use_airflow() is False
    monkeypatch.setenv("ATTESTLY_CONNECTION_LOOKUP", "airflow")
    monkeypatch.delenv("AIRFLOW__SECRETS__BACKEND")
    assert use_airflow() is True
    monkeypatch.setenv("ATTESTLY_CONNECTION_LOOKUP", "sometimes")
    with pytest.raises(ValueError, match="auto, airflow or environment"):
        use_airflow()


# --------------------------------------------------------------------------------- PostgreSQL extras


def _pg(**extra: object) -> Conn:
    return Conn("audit_db", "postgres", "db.example.com", 6432, "reader", "pw", "audit", dict(extra))


def _params(conninfo: str) -> dict[str, str]:
    import psycopg.conninfo

    return psycopg.conninfo.conninfo_to_dict(conninfo)  # type: ignore[return-value]


def test_pg_ssl_family_options_and_libpq_extras() -> None:
    extra = {
        "sslmode": "verify-full",
        "sslrootcert": "/etc/ssl/rds-ca.pem",
        "sslcert": "/etc/ssl/client.crt",
        "sslkey": "/etc/ssl/client.key",
        "sslpassword": "k'ey\\pass",
        "sslcrl": "/etc/ssl/crl.pem",
        "options": "-c search_path=audit,public -c statement_timeout=5s",
        "connect_timeout": 7,
        "application_name": "attestly",
        "keepalives": True,
        "target_session_attrs": "read-only",
    }
    got = _params(_pg(**extra).pg_conninfo())
    expected = {k: str(v) for k, v in extra.items()} | {"keepalives": "1"}
    assert {k: got[k] for k in extra} == expected
    assert (got["host"], got["port"], got["dbname"], got["user"], got["password"]) == (
        "db.example.com",
        "6432",
        "audit",
        "reader",
        "pw",
    )


def test_pg_provider_keys_are_not_libpq_parameters_and_unknown_keys_are_refused() -> None:
    got = _params(_pg(cursor="dictcursor", sqlalchemy_scheme="postgresql", iam=False).pg_conninfo())
    assert not {"cursor", "sqlalchemy_scheme", "iam"} & set(got)
    with pytest.raises(ValueError, match="'sslmdoe' is not a libpq connection parameter"):
        _pg(sslmdoe="require").pg_conninfo()


def test_pg_overrides_win() -> None:
    got = _params(_pg(options="-c a=b").pg_conninfo(options="-c x=y", dbname="other"))
    assert got["options"] == "-c x=y" and got["dbname"] == "other"


def test_pg_iam_password_is_an_rds_token_from_the_aws_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    aws = {
        "conn_type": "aws",
        "login": "AKIAIAMTEST",
        "password": "secret",
        "extra": {"region_name": "eu-west-3"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_RDS_AWS", json.dumps(aws))
    conn = _pg(iam=True, aws_conn_id="rds_aws", sslmode="require")
    got = _params(conn.pg_conninfo())
    token = got["password"]
    assert token != "pw" and got["sslmode"] == "require" and got["user"] == "reader"
    # generate_db_auth_token: a presigned "connect" URL for host:port and the login, signed for rds-db
    parts = urlsplit("https://" + token)
    assert parts.netloc == "db.example.com:6432"
    query = parse_qs(parts.query)
    assert query["Action"] == ["connect"] and query["DBUser"] == ["reader"]
    assert query["X-Amz-Credential"][0].startswith("AKIAIAMTEST/")
    assert "/eu-west-3/rds-db/aws4_request" in query["X-Amz-Credential"][0]
    with pytest.raises(ValueError, match="'redshift' is not supported"):
        _pg(iam=True, redshift=True).pg_conninfo()
    assert "iam" not in _pg(iam="false").pg_params()  # a string "false" is false


# ------------------------------------------------------------------------------------ AWS connection


AWS_EXTRAS: list[dict[str, object]] = [
    {},
    {"region_name": "eu-central-1", "endpoint_url": "http://127.0.0.1:5000"},
    {
        "role_arn": "arn:aws:iam::111122223333:role/evidence",
        "assume_role_kwargs": {"ExternalId": "x", "DurationSeconds": 900},
        "service_config": {"sts": {"endpoint_url": "http://sts.local"}, "s3": {"endpoint_url": "http://s3"}},
        "endpoint_url": "http://all.local",
        "aws_session_token": "tok",
        "profile_name": "audit",
        "config_kwargs": {"retries": {"max_attempts": 3}, "signature_version": "unsigned"},
        "verify": False,
    },
    {"aws_access_key_id": "EK", "aws_secret_access_key": "ES", "role_arn": "arn:r", "assume_role_method": "assume_role_with_web_identity"},
]  # fmt: skip


@pytest.mark.parametrize("extra", AWS_EXTRAS)
@pytest.mark.parametrize("keys", [("L", "P"), (None, None)])
def test_aws_settings_read_the_connection_as_the_amazon_provider(
    extra: dict[str, object], keys: tuple[str | None, str | None]
) -> None:
    from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper
    from airflow.sdk import Connection

    conn = Conn("aws_default", "aws", login=keys[0], password=keys[1], extra=json.loads(json.dumps(extra)))
    ours = AwsSettings.from_conn(conn)
    theirs = AwsConnectionWrapper(
        conn=Connection(
            conn_id="aws_default", conn_type="aws", login=keys[0], password=keys[1], extra=json.dumps(extra)
        )
    )
    assert ours.access_key_id == theirs.aws_access_key_id
    assert ours.secret_access_key == theirs.aws_secret_access_key
    assert ours.session_token == theirs.aws_session_token
    assert ours.region_name == theirs.region_name
    assert ours.profile_name == theirs.profile_name
    assert ours.role_arn == theirs.role_arn
    assert ours.assume_role_method == theirs.assume_role_method
    assert ours.assume_role_kwargs == theirs.assume_role_kwargs
    assert ours.verify == theirs.verify
    for service in ("s3", "sts", "kms"):
        assert ours.endpoint_for(service) == theirs.get_service_endpoint_url(service)
    assert ours.endpoint_for("sts", assume_role=True) == theirs.get_service_endpoint_url(
        "sts", sts_connection_assume=True
    )
    mine, provider = ours.botocore_config(), theirs.botocore_config
    assert (mine is None) == (provider is None)
    if mine is not None and provider is not None:
        assert mine.retries == provider.retries and mine.signature_version == provider.signature_version


def test_aws_client_outside_airflow_honours_region_endpoint_token_and_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extra = {
        "region_name": "ap-southeast-2",
        "endpoint_url": "http://127.0.0.1:9",
        "service_config": {"kms": {"endpoint_url": "http://127.0.0.1:10"}},
        "aws_session_token": "session-token",
        "config_kwargs": {"read_timeout": 5},
    }
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps({"conn_type": "aws", "login": "K", "password": "S", "extra": extra}),
    )
    s3 = aws_client("s3")
    assert s3.meta.region_name == "ap-southeast-2" and s3.meta.endpoint_url == "http://127.0.0.1:9"
    assert s3.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 9}  # ours (8 retries), kept
    assert s3.meta.config.read_timeout == 5  # the connection's config_kwargs win where they say
    creds = s3._request_signer._credentials.get_frozen_credentials()
    assert (creds.access_key, creds.secret_key, creds.token) == ("K", "S", "session-token")
    assert aws_client("kms").meta.endpoint_url == "http://127.0.0.1:10"
    assert (
        aws_client("s3", region_name="us-west-2", endpoint_url="http://x:1").meta.endpoint_url == "http://x:1"
    )


# ----------------------------------------------------------------------- the CLI without Airflow


BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoAirflow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "airflow" or name.startswith("airflow."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, NoAirflow())
    """
)


def run_without_airflow(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which ``import airflow`` fails."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__SECRETS__"))}
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=REPO,
        check=False,
        timeout=120,
    )


def test_environment_connections_work_with_airflow_not_importable() -> None:
    aws = {
        "conn_type": "aws",
        "login": "K",
        "password": "S",
        "extra": {"region_name": "eu-west-1", "endpoint_url": "http://127.0.0.1:9"},
    }
    run = run_without_airflow(
        """
        import sys
        from attestly.connections import ConnectionNotFound, aws_client, get_conn, use_airflow
        from attestly import cli, verify  # the CLI and the verifier import without Airflow
        assert "airflow" not in sys.modules
        assert not use_airflow()
        c = get_conn("audit_db")
        assert c.pg_params()["sslmode"] == "require", c
        s3 = aws_client("s3")
        assert s3.meta.endpoint_url == "http://127.0.0.1:9" and s3.meta.region_name == "eu-west-1"
        try:
            get_conn("nope")
        except ConnectionNotFound as exc:
            assert "Airflow is not installed" in str(exc), exc
        else:
            raise AssertionError("no error for a missing connection")
        try:
            import airflow  # noqa: F401
        except ModuleNotFoundError:
            print("OK")
        """,
        env={
            "AIRFLOW_CONN_AUDIT_DB": "postgres://u:p@h:5432/audit?sslmode=require",
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws),
            # a secrets backend in the environment means nothing where Airflow cannot be imported
            "AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
        },
    )
    assert run.returncode == 0 and run.stdout.strip() == "OK", run.stderr[-3000:]


def test_collector_base_session_carries_the_connection_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    from attestly.collectors.aws._session import base_session

    extra = {"region_name": "eu-west-1", "endpoint_url": "http://127.0.0.1:9", "aws_session_token": "T"}
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps({"conn_type": "aws", "login": "K", "password": "S", "extra": extra}),
    )
    session = base_session(aws_conn_id="aws_default")
    for service in ("s3", "ec2", "dynamodb", "sts"):  # boto3 injects methods into some: built once only
        client = session.client(service)
        creds = client._request_signer._credentials.get_frozen_credentials()
        assert (creds.access_key, creds.secret_key, creds.token) == ("K", "S", "T")
        assert client.meta.endpoint_url == "http://127.0.0.1:9" and client.meta.region_name == "eu-west-1"
    assert (
        base_session(aws_conn_id="aws_default", region_name="us-west-2").client("s3").meta.region_name
        == "us-west-2"
    )


def test_quality_connect_args_keep_the_connection_extras_and_append_the_session_settings() -> None:
    from attestly.quality.suite import SESSION_OPTIONS, connect_args

    args = connect_args(_pg(sslmode="verify-ca", sslrootcert="/ca.pem", options="-c search_path=audit"))
    assert args["options"] == f"-c search_path=audit {SESSION_OPTIONS}"  # ours last: they win
    assert (args["sslmode"], args["sslrootcert"], args["password"]) == ("verify-ca", "/ca.pem", "pw")
    assert args["application_name"] == "attestly-quality"
    assert not {"host", "port", "dbname", "user"} & set(args)  # those are in the engine URL
    assert connect_args(_pg())["options"] == SESSION_OPTIONS
