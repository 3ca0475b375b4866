"""`attestly.notify.send_email` against the stack's real SMTP server (which writes each message to
`$ATTESTLY_HOME/mail/*.eml`)."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from attestly.notify import NotifyError, send_email

pytestmark = pytest.mark.integration


def _mail_dir() -> Path:
    from attestly_dev.stack import core

    return core.paths().mail


def _wait_for(message_id: str, timeout: float = 10.0) -> EmailMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(_mail_dir().glob("*.eml")):
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if str(msg["Message-ID"]) == message_id:
                assert isinstance(msg, EmailMessage)
                return msg
        time.sleep(0.1)
    raise AssertionError(f"no message {message_id} in {_mail_dir()}")


def test_sends_html_with_exact_attachments(stack: dict[str, str]) -> None:
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 40
    csv = b"a,b\r\n1,2\n"
    mid = send_email(
        to=["b@example.com", "a@example.com", "a@example.com"],
        subject="[Attestly] test: quality check failed",
        html="<p>Quality check <b>failed</b> for 2026-01-01.</p>",
        attachments=[("report.pdf", pdf, "application/pdf"), ("rows.csv", csv, "text/csv")],
    )
    msg = _wait_for(mid)
    assert str(msg["To"]) == "a@example.com, b@example.com"
    assert str(msg["From"]) == "attestly@localhost"
    assert msg["X-Attestly-Envelope-To"] == "a@example.com, b@example.com"
    body = msg.get_body(preferencelist=("html",))
    assert body is not None and "<b>failed</b>" in body.get_content()
    parts = {p.get_filename(): p for p in msg.iter_attachments()}
    assert parts["report.pdf"].get_content_type() == "application/pdf"
    for name, content in (("report.pdf", pdf), ("rows.csv", csv)):
        got = parts[name].get_payload(decode=True)
        assert isinstance(got, bytes)
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(content).hexdigest()


def test_a_given_message_id_is_kept(stack: dict[str, str]) -> None:
    mid = send_email(
        to=["a@example.com"], subject="retry-safe", html="<p>x</p>", message_id="<fixed.1@attestly>"
    )
    assert mid == "<fixed.1@attestly>"
    assert _wait_for(mid)["Subject"] == "retry-safe"


def test_bad_input_is_refused_naming_the_value(stack: dict[str, str]) -> None:
    with pytest.raises(NotifyError, match="'not an address'"):
        send_email(to=["not an address"], subject="s", html="<p>x</p>")
    with pytest.raises(NotifyError, match="no recipients"):
        send_email(to=[], subject="s", html="<p>x</p>")
    with pytest.raises(NotifyError, match=r"'\.\./evil\.sh'"):
        send_email(
            to=["a@example.com"], subject="s", html="x", attachments=[("../evil.sh", b"x", "text/plain")]
        )
    with pytest.raises(NotifyError, match="line break"):
        send_email(to=["a@example.com"], subject="s\nBcc: x@example.com", html="x")
    with pytest.raises(NotifyError, match="'nope_smtp'"):
        send_email(to=["a@example.com"], subject="s", html="x", conn_id="nope_smtp")


def test_an_unreachable_server_fails_naming_the_connection(
    stack: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": 9,
        "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "attestly@localhost", "timeout": 5},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(dead))
    with pytest.raises(NotifyError, match=r"'smtp_default' \(127\.0\.0\.1:9\)"):
        send_email(to=["a@example.com"], subject="s", html="<p>x</p>")
