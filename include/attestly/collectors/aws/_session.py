"""boto3 sessions for the collectors and the seeder: base credentials, role assumption, endpoints.

Imported lazily (it imports boto3) by ``run_collector`` and ``seed_aws_estate``, so that importing the
registry at DAG-parse time stays cheap.

* Base credentials are the ``aws_default`` connection's identity as
  :func:`attestly.connections.aws_session` resolves it (the Amazon provider's ``AwsBaseHook`` inside
  Airflow: keys, ``aws_session_token``, ``profile_name``, ``role_arn``...), or boto3's default chain when
  the connection is absent or has no credentials; ``extra.endpoint_url`` is the default endpoint.
* Every client made from an :class:`EndpointSession` defaults to the session's endpoint URL and to
  botocore's adaptive retry mode with 8 attempts; with a custom endpoint, S3 uses path-style addressing,
  and when that endpoint is an IP address or a single-label host (moto, localhost, a compose service)
  S3 Control requests go to the endpoint itself (botocore would otherwise prefix the host with
  ``<account-id>.``, which such a host cannot resolve).
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import boto3
from botocore.config import Config

from attestly.connections import Conn, ConnectionNotFound, get_conn

RETRY_CONFIG = {"max_attempts": 8, "mode": "adaptive"}


def client_config(*, endpoint_url: str | None) -> Any:
    """The botocore ``Config`` every Attestly AWS client uses."""
    kwargs: dict[str, Any] = {"retries": dict(RETRY_CONFIG), "connect_timeout": 10, "read_timeout": 60}
    if endpoint_url:
        kwargs["s3"] = {"addressing_style": "path"}
    return Config(**kwargs)


@functools.lru_cache(maxsize=1)
def _shared_loader() -> Any:
    """One botocore data loader for the process: every session reuses the service models it has parsed
    (parsing them again per session costs ~100 ms a client and dominates collection at scale)."""
    import botocore.session

    return botocore.session.get_session().get_component("data_loader")


class EndpointSession(boto3.session.Session):  # type: ignore[misc]
    """A boto3 Session whose ``client()`` defaults to one endpoint URL and Attestly's client config.

    Sessions share one botocore data loader (:func:`_shared_loader`)."""

    def __init__(self, *, endpoint_url: str | None = None, **kwargs: Any) -> None:
        if "botocore_session" not in kwargs:
            import botocore.session

            core = botocore.session.get_session()
            core.register_component("data_loader", _shared_loader())
            kwargs["botocore_session"] = core
        super().__init__(**kwargs)
        self.attestly_endpoint_url = endpoint_url or None

    def client(self, service_name: str, *args: Any, **kwargs: Any) -> Any:
        endpoint_url = kwargs.get("endpoint_url") or self.attestly_endpoint_url
        kwargs["endpoint_url"] = endpoint_url
        default = client_config(endpoint_url=endpoint_url)
        given = kwargs.get("config")
        kwargs["config"] = default.merge(given) if given is not None else default
        client = super().client(service_name, *args, **kwargs)
        if endpoint_url and service_name == "s3control" and _is_local_host(endpoint_url):
            _keep_endpoint_host(client, endpoint_url)
        return client


def _is_local_host(endpoint_url: str) -> bool:
    """True for an IP literal or a single-label host (``localhost``, a compose service name): hosts
    under which ``<account-id>.<host>`` cannot resolve."""
    host = urlsplit(endpoint_url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "." not in host
    return True


def _keep_endpoint_host(client: Any, endpoint_url: str) -> None:
    """Undo the ``<account-id>.`` host prefix S3 Control adds, for a local endpoint (moto)."""
    netloc = urlsplit(endpoint_url).netloc

    def fix(request: Any, **_: Any) -> None:
        parts = urlsplit(request.url)
        if parts.netloc != netloc and parts.netloc.endswith("." + netloc):
            request.url = urlunsplit(parts._replace(netloc=netloc))

    client.meta.events.register_first("before-sign.s3-control", fix)


def aws_connection(aws_conn_id: str) -> Conn | None:
    """The Amazon connection, or None (boto3's default credential chain then applies)."""
    try:
        return get_conn(aws_conn_id)
    except ConnectionNotFound:
        return None


def connection_endpoint(aws_conn_id: str) -> str | None:
    conn = aws_connection(aws_conn_id)
    return (conn.extra.get("endpoint_url") if conn else None) or None


def base_session(
    *, aws_conn_id: str, region_name: str | None = None, endpoint_url: str | None = None
) -> EndpointSession:
    """A session with the connection's own identity (the hub / base identity).

    The identity is :func:`attestly.connections.aws_session`'s: inside Airflow the Amazon provider's
    (``role_arn``, ``assume_role_method``, ``profile_name``, ... honoured), outside the same reading of
    the connection. ``endpoint_url`` overrides the connection's ``extra.endpoint_url``.
    """
    from attestly.connections import aws_session

    identity = aws_session(aws_conn_id, region_name=region_name)
    session = EndpointSession(
        endpoint_url=endpoint_url or connection_endpoint(aws_conn_id),
        region_name=identity.region_name or region_name or "us-east-1",
    )
    # The identity's credentials object (static, or refreshable for an assumed role) on a fresh botocore
    # session: wrapping the identity's own botocore session in a second boto3 Session would register
    # boto3's handlers twice (S3 clients then fail to build). The Amazon provider sets it the same way.
    credentials = identity.get_credentials()
    if credentials is not None:
        session._session._credentials = credentials
    return session


def assume_role_session(
    *,
    aws_conn_id: str,
    role_arn: str,
    session_name: str,
    region_name: str,
    endpoint_url: str | None = None,
) -> EndpointSession:
    """Assume ``role_arn`` with the base credentials; a session acting in the role's account.

    STS and every client of the returned session use ``endpoint_url`` if given, else the connection's.
    Raises botocore errors as they come (the runner records them).
    """
    base = base_session(aws_conn_id=aws_conn_id, region_name=region_name, endpoint_url=endpoint_url)
    sts = base.client("sts", region_name=region_name)
    creds = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name[:64])["Credentials"]
    return EndpointSession(
        endpoint_url=base.attestly_endpoint_url,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=region_name,
    )
