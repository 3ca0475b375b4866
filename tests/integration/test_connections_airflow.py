"""Airflow-native connections on the real local stack.

* A DAG run (`airflow dags test audit_log_quality`) uses connections defined only in Airflow's local
  filesystem secrets backend: `attestly_db` exists nowhere else, and the `aws_default` in the
  environment points at a dead endpoint, so the run can only succeed if the secrets backend is read
  first, as Airflow reads it.
* `aws_default` with `role_arn` makes the evidence store assume that role (moto server over HTTP): inside
  Airflow through the Amazon provider's `AwsBaseHook`, and in the CLI path with Airflow not importable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from attestly.connections import aws_client, get_conn
from attestly.ledger import Ledger
from tests.conftest import recreate_database
from tests.unit.test_connections_extras import run_without_airflow

pytestmark = pytest.mark.integration

DAY = datetime.now(UTC).date() - timedelta(days=1)
TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
}


def _bucket() -> str:
    bucket = f"conn-{uuid.uuid4().hex[:10]}"
    aws_client("s3").create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return bucket


def test_dag_run_uses_connections_only_in_the_secrets_backend(stack: dict[str, str], tmp_path: Path) -> None:
    from attestly_dev import audit_seed as seed

    recreate_database("audit")
    recreate_database("attestly")
    seed.seed_audit(start=DAY - timedelta(days=1), days=2, events_per_day=600)
    bucket = _bucket()

    # The secrets backend holds the real attestly_db and aws_default.
    secrets = tmp_path / "connections.json"
    secrets.write_text(
        json.dumps(
            {
                "attestly_db": json.loads(get_conn("attestly_db").to_json()),
                "aws_default": json.loads(get_conn("aws_default").to_json()),
            }
        )
    )
    dead_aws = {
        "conn_type": "aws",
        "login": "wrong",
        "password": "wrong",
        "extra": {"region_name": "us-east-1", "endpoint_url": "http://127.0.0.1:9"},
    }
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_CONN_ATTESTLY_DB"}
    env.update(
        {
            "AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
            "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connections_file_path": str(secrets)}),
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(dead_aws),  # must lose to the secrets backend
            "ATTESTLY_EVIDENCE_BUCKET": bucket,
            "ATTESTLY_RETRY_DELAY_SECONDS": "1",
        }
    )
    airflow = str(Path(sys.executable).with_name("airflow"))
    run = subprocess.run(
        [airflow, "dags", "test", "audit_log_quality", (DAY + timedelta(days=1)).isoformat()],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "AwsConnectionWrapper" in run.stdout  # the task's AWS session came from the Amazon provider

    with Ledger.connect() as ledger:  # the test's own environment: the same attestly database
        items = [
            e.body for e in ledger.entries(kind="evidence") if e.body["collector"] == "quality.audit_log"
        ]
    assert len(items) == 1 and items[0]["result"] == "pass"
    keys = [o["Key"] for o in aws_client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])]
    # stored through the secrets backend's aws_default (the environment's points nowhere)
    assert any(k.startswith("objects/sha256/") for k in keys), keys

    # The auditor's side: `attestly verify` on that bucket, where Airflow cannot even be imported.
    verify = run_without_airflow(
        f"""
        import sys
        from attestly.cli import main
        code = main(["verify", "--bucket", {bucket!r}, "--json"])
        assert "airflow" not in sys.modules
        sys.exit(code)
        """,
        env={k: os.environ[k] for k in os.environ if k.startswith("AIRFLOW_CONN_")},
    )
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr[-2000:]
    assert json.loads(verify.stdout)["found"]["evidence_objects_verified"] >= 1


@pytest.fixture
def role_connection(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """An IAM role in moto and an `aws_default` (in the environment) whose `role_arn` is that role."""
    name = f"attestly-evidence-{uuid.uuid4().hex[:8]}"
    role_arn = aws_client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))[
        "Role"
    ]["Arn"]
    base = json.loads(get_conn("aws_default").to_json())
    endpoint = base["extra"]["endpoint_url"]
    base["extra"] = {
        **base["extra"],
        "role_arn": role_arn,
        "assume_role_kwargs": {"DurationSeconds": 900},
        # As in the Amazon provider, the STS call that assumes the role never uses the global
        # endpoint_url: a local STS (moto) is named for the sts service.
        "service_config": {"sts": {"endpoint_url": endpoint}},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(base))
    account = role_arn.split(":")[4]
    yield {
        "role_arn": role_arn,
        "assumed": f"arn:aws:sts::{account}:assumed-role/{name}/Airflow_aws_default".lower(),
        "endpoint": endpoint,
        "bucket": _bucket(),
    }


def _identity_of(client: Any, endpoint: str) -> str:
    """The ARN moto's STS gives the credentials ``client`` signs with."""
    import boto3

    creds = client._request_signer._credentials.get_frozen_credentials()
    sts = boto3.client(
        "sts",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        aws_session_token=creds.token,
    )
    return str(sts.get_caller_identity()["Arn"]).lower()  # moto lower-cases the session name


def test_store_assumes_the_role_of_aws_default_through_the_amazon_provider(
    role_connection: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from attestly.collectors.aws._session import base_session
    from attestly.store import EvidenceStore

    monkeypatch.setenv("ATTESTLY_CONNECTION_LOOKUP", "airflow")  # the path a task takes
    store = EvidenceStore.from_connection(bucket=role_connection["bucket"])
    assert type(store.s3._request_signer._credentials).__name__ == "RefreshableCredentials"
    assert _identity_of(store.s3, role_connection["endpoint"]) == role_connection["assumed"]
    # the collectors' hub identity is the same role (then they assume each account's role from it)
    hub = base_session(aws_conn_id="aws_default").client("sts").get_caller_identity()["Arn"]
    assert hub.lower() == role_connection["assumed"]
    stored = store.put_bytes(
        "keys/role-check.txt", b"assumed", retain_until=datetime.now(UTC) + timedelta(days=1)
    )
    assert store.get_bytes(stored.key, stored.version_id) == b"assumed"


def test_store_assumes_the_role_of_aws_default_without_airflow(role_connection: dict[str, Any]) -> None:
    run = run_without_airflow(
        f"""
        import sys
        from datetime import UTC, datetime, timedelta
        from attestly.store import EvidenceStore
        from tests.integration.test_connections_airflow import _identity_of

        store = EvidenceStore.from_connection(bucket={role_connection["bucket"]!r})
        print(_identity_of(store.s3, {role_connection["endpoint"]!r}))
        from attestly.collectors.aws._session import base_session
        print(base_session(aws_conn_id="aws_default").client("sts").get_caller_identity()["Arn"].lower())
        stored = store.put_bytes("keys/role-check-cli.txt", b"assumed", retain_until=datetime.now(UTC) + timedelta(days=1))
        assert store.get_bytes(stored.key, stored.version_id) == b"assumed"
        assert "airflow" not in sys.modules
        """,
        env={"AIRFLOW_CONN_AWS_DEFAULT": os.environ["AIRFLOW_CONN_AWS_DEFAULT"]},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == [role_connection["assumed"]] * 2


class _Recorder:
    """An SMTP handler that refuses one recipient and keeps the messages it accepts."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("refused@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


@pytest.mark.parametrize("lookup", ["airflow", "environment"])
def test_mail_through_smtp_hook_or_smtplib_keeps_message_and_checks_refusals(
    lookup: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import email
    import email.policy
    import socket

    from aiosmtpd.controller import Controller

    from attestly.notify import NotifyError, send_email

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hooks: list[object] = []
    if lookup == "airflow":  # record that the SMTP provider's hook opened the session
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        enter = SmtpHook.__enter__
        monkeypatch.setattr(SmtpHook, "__enter__", lambda self: hooks.append(self) or enter(self))
    recorder = _Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        smtp = {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "extra": {
                "disable_ssl": True,
                "disable_tls": True,
                "from_email": "attestly@localhost",
                "timeout": 10,
            },
        }
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_TEST", json.dumps(smtp))
        monkeypatch.setenv("ATTESTLY_CONNECTION_LOOKUP", lookup)
        pdf = bytes(range(256)) * 8
        mid = send_email(
            to=["a@example.com"],
            subject="hook",
            html="<p>x</p>",
            attachments=[("r.pdf", pdf, "application/pdf")],
            conn_id="smtp_test",
            message_id="<stable.1@attestly>",
        )
        assert mid == "<stable.1@attestly>" and len(recorder.messages) == 1
        assert len(hooks) == (1 if lookup == "airflow" else 0)
        msg = email.message_from_bytes(recorder.messages[0], policy=email.policy.default)
        assert msg["Message-ID"] == mid
        assert [p.get_content() for p in msg.iter_attachments()] == [pdf]  # type: ignore[attr-defined]
        with pytest.raises(NotifyError, match=r"refused recipients \['refused@example.com'\]"):
            send_email(
                to=["a@example.com", "refused@example.com"], subject="s", html="x", conn_id="smtp_test"
            )
    finally:
        controller.stop()
