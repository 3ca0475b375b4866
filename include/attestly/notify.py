"""Send e-mail over an Airflow SMTP connection (``smtp_default``).

Generic: used for the quarterly reports and for alerts (quality failures). The connection gives host,
port, login and password; its ``extra`` may set ``from_email`` (else the login is the sender),
``disable_ssl`` (default false: implicit TLS, ``SMTP_SSL``), ``disable_tls`` (default false: STARTTLS
when not using implicit TLS) and ``timeout`` (seconds, default 30) — the same keys as Airflow's SMTP
provider.

Inside Airflow (:func:`attestly.connections.use_airflow`) the SMTP session is the SMTP provider's
``SmtpHook`` (its connection lookup, TLS, login or OAuth2, ``ssl_context``, connect retries); outside,
Python's smtplib with the same keys. Either way the message is built here (in-memory attachments, a
stable Message-ID) and sent once with ``send_message``, whose refused recipients fail the send — the
hook's ``send_email_smtp`` builds its own message from files and retries a whole send on any error
(a duplicate mail), so it is not used. Nothing here logs the password or the message body.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?$")
_MAINTYPES = ("application", "text", "image", "audio", "video", "message", "multipart")


class NotifyError(RuntimeError):
    """The message could not be built or sent; the message names the connection, address or file."""


def _true(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def check_address(address: str) -> str:
    """``address`` if it is a plain e-mail address; :class:`NotifyError` naming it otherwise."""
    value = address.strip() if isinstance(address, str) else address
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise NotifyError(f"{address!r} is not an e-mail address")
    return value


def send_email(
    *,
    to: Sequence[str],
    subject: str,
    html: str,
    attachments: Sequence[tuple[str, bytes, str]] = (),
    conn_id: str = "smtp_default",
    message_id: str | None = None,
) -> str:
    """Send an HTML message to ``to`` through connection ``conn_id``; returns its Message-ID.

    ``attachments`` are ``(filename, content, mime type)``. ``message_id`` (``<...@...>``) lets a
    caller make a retried send recognisable as the same message; by default a new one is made. Raises
    :class:`NotifyError` for a bad address, attachment or connection, and for any SMTP failure (so a
    task fails and Airflow retries it).
    """
    from attestly.connections import ConnectionNotFound, get_conn, use_airflow

    recipients = sorted({check_address(a) for a in to})
    if not recipients:
        raise NotifyError("no recipients")
    if "\n" in subject or "\r" in subject:
        raise NotifyError(f"subject {subject[:60]!r} contains a line break")
    try:
        conn = get_conn(conn_id)
    except ConnectionNotFound as exc:
        raise NotifyError(str(exc)) from exc
    if not conn.host:
        raise NotifyError(f"connection {conn_id!r} has no host")
    extra = conn.extra or {}
    sender = str(extra.get("from_email") or conn.login or "")
    if not sender:
        raise NotifyError(f"connection {conn_id!r}: set extra.from_email (or a login) as the sender")
    check_address(sender)
    use_ssl = not _true(extra.get("disable_ssl", False))
    use_tls = not _true(extra.get("disable_tls", False))
    timeout = float(extra.get("timeout", 30))
    port = conn.port or (465 if use_ssl else 587 if use_tls else 25)

    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id or make_msgid(domain=sender.rsplit("@", 1)[-1])
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content("This message is HTML; open it in a mail client that shows HTML.")
    msg.add_alternative(html, subtype="html")
    for name, content, mime in attachments:
        if not name or "/" in name or "\\" in name:
            raise NotifyError(f"attachment name {name!r} is not a plain file name")
        maintype, _, subtype = mime.partition("/")
        subtype = subtype.split(";", 1)[0].strip()
        if maintype not in _MAINTYPES or not subtype:
            raise NotifyError(f"attachment {name!r}: {mime!r} is not a MIME type")
        # Bytes are sent base64-encoded as they are (text too): the receiver gets the exact bytes.
        msg.add_attachment(bytes(content), maintype=maintype, subtype=subtype, filename=name)

    try:
        if use_airflow() and _smtp_provider():
            refused = _send_with_hook(conn_id, msg, sender, recipients)
        else:
            context = ssl.create_default_context()
            client: smtplib.SMTP
            if use_ssl:
                client = smtplib.SMTP_SSL(conn.host, port, timeout=timeout, context=context)
            else:
                client = smtplib.SMTP(conn.host, port, timeout=timeout)
            with client:
                client.ehlo()
                if not use_ssl and use_tls:
                    client.starttls(context=context)
                    client.ehlo()
                if conn.login and conn.password:
                    client.login(conn.login, conn.password)
                refused = client.send_message(msg, from_addr=sender, to_addrs=recipients)
    except NotifyError:
        raise
    except Exception as exc:  # smtplib / OSError, or the hook's AirflowException
        raise NotifyError(
            f"sending {subject[:60]!r} via connection {conn_id!r} ({conn.host}:{port}) failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if refused:
        raise NotifyError(f"the server refused recipients {sorted(refused)} (connection {conn_id!r})")
    return str(msg["Message-ID"])


def _smtp_provider() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("airflow.providers.smtp.hooks.smtp") is not None
    except ImportError:
        return False


def _send_with_hook(
    conn_id: str, msg: EmailMessage, sender: str, recipients: list[str]
) -> dict[str, tuple[int, bytes]]:
    """Send ``msg`` once over the SMTP provider's connection; the recipients the server refused."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id=conn_id) as hook:
        client = getattr(hook, "_smtp_client", None)  # the logged-in smtplib client the hook opened
        if not isinstance(client, smtplib.SMTP):
            raise NotifyError(f"connection {conn_id!r}: SmtpHook opened no SMTP client")
        return client.send_message(msg, from_addr=sender, to_addrs=recipients)
