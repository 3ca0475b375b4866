"""Test helpers: a real moto server over HTTP (a subprocess) and a stub AWS endpoint that refuses.

The fixtures are imported into the test module (no conftest). Nothing here mocks boto3 in process.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

MOTO_SERVER = Path(sys.executable).with_name("moto_server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def conn_json(endpoint_url: str) -> str:
    """An ``AIRFLOW_CONN_AWS_DEFAULT`` value for ``endpoint_url`` (moto's base account 123456789012)."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"region_name": "us-east-1", "endpoint_url": endpoint_url},
        }
    )


@dataclass
class MotoServer:
    """A moto server subprocess on 127.0.0.1:<port>."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def conn_json(self) -> str:
        return conn_json(self.url)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_moto_server(log_dir: Path, *, timeout: float = 30.0) -> MotoServer:
    """Start ``moto_server -H 127.0.0.1 -p <free port>`` and wait until it answers."""
    port = free_port()
    log_path = log_dir / f"moto-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = MotoServer(port=port, process=process, log_path=log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/moto-api/data.json", timeout=2):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"moto_server did not answer on {server.url} within {timeout}s")


@dataclass
class StubAws:
    """A local HTTP endpoint that answers every AWS request with AccessDenied and records each request.

    With ``allow_assume_role``, STS ``AssumeRole`` succeeds (fake temporary credentials), so the failure
    happens in the collector's own calls instead.
    """

    allow_assume_role: bool = False
    requests: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"


_ASSUME_ROLE_OK = """<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleResult><Credentials><AccessKeyId>ASIASTUBSTUBSTUBSTUB</AccessKeyId>
<SecretAccessKey>stub</SecretAccessKey><SessionToken>stub</SessionToken>
<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>
<AssumedRoleUser><AssumedRoleId>AROASTUB:stub</AssumedRoleId>
<Arn>arn:aws:sts::999999999999:assumed-role/AttestlyAudit/stub</Arn></AssumedRoleUser>
</AssumeRoleResult></AssumeRoleResponse>"""


def _handler(stub: StubAws) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            target = self.headers.get("X-Amz-Target") or ""
            action = target or (body.split("Action=", 1)[1].split("&", 1)[0] if "Action=" in body else "")
            stub.requests.append(f"{self.command} {self.path} {action}".strip())
            if action == "AssumeRole" and stub.allow_assume_role:
                self._send(200, "text/xml", _ASSUME_ROLE_OK)
            elif target:  # JSON protocols (KMS, CloudTrail, Config)
                message = {"__type": "AccessDeniedException", "message": "stub: access denied"}
                self._send(400, "application/x-amz-json-1.1", json.dumps(message))
            else:  # query and rest-xml protocols (STS, IAM, EC2, RDS, S3)
                xml = (
                    "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                    f"<Message>stub: not authorized to perform {action or 'this request'}</Message></Error>"
                    "<RequestId>stub</RequestId></ErrorResponse>"
                )
                self._send(403, "text/xml", xml)

        def _send(self, status: int, content_type: str, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@contextlib.contextmanager
def stub_aws(*, allow_assume_role: bool = False) -> Iterator[StubAws]:
    """Run a :class:`StubAws` on a free port for the duration of the ``with`` block."""
    stub = StubAws(allow_assume_role=allow_assume_role)
    stub.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    thread = threading.Thread(target=stub.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stub.server.shutdown()
        stub.server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto server for the test module; terminated at teardown."""
    server = start_moto_server(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def seeded(moto_server: MotoServer) -> Iterator[dict[str, dict[str, list[str]]]]:
    """Seed the estate once per module; the expected findings with real ids."""
    from attestly_dev.aws_seed import seed_aws_estate

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_AWS_DEFAULT", moto_server.conn_json())
        yield seed_aws_estate()


@pytest.fixture
def aws_env(
    moto_server: MotoServer, seeded: dict[str, dict[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> dict[str, dict[str, list[str]]]:
    """Per test: ``AIRFLOW_CONN_AWS_DEFAULT`` points at the seeded moto server; the expected findings."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", moto_server.conn_json())
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "MOTO_ACCOUNT_ID"):
        monkeypatch.delenv(var, raising=False)
    return seeded
