"""The report e-mail: who gets it, what is attached, and the HTML summary.

Settings (the ``reports:`` block a policy may carry; defaults here, overridden by DAG params):
``attach_limit_mb`` (default 10) — files are attached while their total stays within the limit (the
framework index PDF first, then the packet); a file over the limit is linked instead (its ``s3://`` URI
in the bucket; no pre-signed URL is ever mailed, it would be a bearer credential). ``recipients`` —
extra addresses; the owners of the reported controls (``controls.yaml``) are always added unless
``include_owners`` is false.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from attestly.reports.model import ReportInputError

if TYPE_CHECKING:
    from attestly.policy import Policy

DEFAULT_ATTACH_LIMIT_MB = 10.0
TOP_EXCEPTIONS = 10


@dataclass(frozen=True)
class ReportSettings:
    attach_limit_mb: float = DEFAULT_ATTACH_LIMIT_MB
    recipients: tuple[str, ...] = ()
    include_owners: bool = True

    @classmethod
    def from_mapping(cls, value: Mapping[str, Any] | None) -> ReportSettings:
        """From ``{attach_limit_mb, recipients, include_owners}`` (any key optional); errors name the value."""
        from attestly.notify import NotifyError, check_address

        value = dict(value or {})
        unknown = sorted(set(value) - {"attach_limit_mb", "recipients", "include_owners"})
        if unknown:
            raise ReportInputError(f"unknown report setting {unknown[0]!r}")
        limit = value.get("attach_limit_mb", DEFAULT_ATTACH_LIMIT_MB)
        if limit is None:
            limit = DEFAULT_ATTACH_LIMIT_MB
        if isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0:
            raise ReportInputError(f"attach_limit_mb {limit!r} must be a number >= 0")
        raw = value.get("recipients") or []
        if isinstance(raw, str):
            raw = [r for r in raw.replace(";", ",").split(",") if r.strip()]
        if not isinstance(raw, list | tuple):
            raise ReportInputError(f"recipients {raw!r} must be a list of e-mail addresses")
        recipients = []
        for r in raw:
            try:
                recipients.append(check_address(str(r)))
            except NotifyError:
                raise ReportInputError(f"recipient {r!r} is not an e-mail address") from None
        owners = value.get("include_owners", True)
        if not isinstance(owners, bool):
            raise ReportInputError(f"include_owners {owners!r} must be true or false")
        return cls(float(limit), tuple(sorted(set(recipients))), owners)

    @property
    def attach_limit_bytes(self) -> int:
        return int(self.attach_limit_mb * 1024 * 1024)


def recipients_for(*, policy: Policy, control_ids: Iterable[str], settings: ReportSettings) -> list[str]:
    """The controls' owners (unless disabled) and the settings' recipients, sorted and unique."""
    out = set(settings.recipients)
    if settings.include_owners:
        out.update(str(policy.control(c).owner) for c in control_ids)
    return sorted(out)


def plan_attachments(files: Sequence[tuple[str, int]], *, limit_bytes: int) -> list[bool]:
    """Which of ``(name, size)`` to attach, in order, keeping the total within ``limit_bytes``."""
    total = 0
    out = []
    for _, size in files:
        if total + size <= limit_bytes:
            total += size
            out.append(True)
        else:
            out.append(False)
    return out


def _size_label(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    return f"{max(1, round(size / 1024))} KB"


def top_exceptions(index: Mapping[str, Any], *, limit: int = TOP_EXCEPTIONS) -> list[dict[str, Any]]:
    rows = [
        {"control": c["id"], **{k: e[k] for k in ("collector", "resource", "detail", "day_count")}}
        for c in index["controls"]
        for e in c["top_exceptions"]
    ]
    rows.sort(key=lambda r: (-r["day_count"], r["control"], r["collector"], r["resource"]))
    return rows[:limit]


def subject_for(index: Mapping[str, Any]) -> str:
    counts = index["status_counts"]
    return (
        f"[Attestly] {index['framework']['name']} control reports {index['period']['label']}: "
        f"{counts.get('effective', 0)} effective, {counts.get('exceptions', 0)} with exceptions, "
        f"{counts.get('no_evidence', 0)} without evidence"
    )


def compose_html(
    *,
    index: Mapping[str, Any],
    files: Sequence[Mapping[str, Any]],
    bucket: str,
    prefix: str,
    attach_limit_mb: float,
    run_url: str | None,
    sent_at: datetime,
    seal: Mapping[str, Any] | None = None,
) -> str:
    """The summary body. ``files``: ``{name, size, attached, key}``; only whitelisted fields are shown.
    ``seal`` (optional): ``{packet_sha256, ledger_seq, digest}`` — the packet's hash, the ledger entry
    recording the reports and the digest sealing it (the follow-up to the packet, which cannot hold it)."""
    from attestly.reports.render import render_template

    return render_template(
        "email_summary.html.j2",
        subject=subject_for(index),
        ix=index,
        top=top_exceptions(index),
        files=[
            {
                "name": f["name"],
                "size_label": _size_label(int(f["size"])),
                "attached": f["attached"],
                "uri": f"s3://{bucket}/{f['key']}",
            }
            for f in files
        ],
        attach_limit_mb=f"{attach_limit_mb:g}",
        bucket=bucket,
        prefix=f"s3://{bucket}/{prefix}",
        run_url=run_url,
        seal=seal or {},
        sent_at=sent_at.strftime("%Y-%m-%d %H:%M UTC"),
    )


class AttachmentMismatch(RuntimeError):
    """A stored report object read back for the e-mail does not match its recorded SHA-256."""


def deliver(
    *,
    stored: Mapping[str, Any],
    store: Any,
    recipients: Sequence[str],
    settings: ReportSettings,
    run_url: str | None,
    sent_at: datetime,
    message_id: str | None = None,
    conn_id: str = "smtp_default",
) -> dict[str, Any]:
    """Send the summary of a stored rendition (``publish``'s result) to ``recipients``.

    Reads ``index.json``, the index PDF (or HTML) and the packet back from the bucket by key and version,
    checks each against its recorded SHA-256, attaches what fits within the limit and links the rest.
    Returns ``{message_id, recipients, attachments[{name, sha256, size}], linked[{name, key}]}``.
    """
    import hashlib
    import json

    from attestly.notify import send_email
    from attestly.reports.bundle import content_type

    def read(obj: Mapping[str, Any]) -> bytes:
        body: bytes = store.get_bytes(obj["key"], obj["version_id"])
        if hashlib.sha256(body).hexdigest() != obj["sha256"]:
            raise AttachmentMismatch(
                f"s3://{store.bucket}/{obj['key']} (version {obj['version_id']}) does not match its recorded "
                f"SHA-256 {obj['sha256']}"
            )
        return body

    objects = {o["path"]: o for o in stored["objects"]}
    index = json.loads(read(objects["index.json"]))
    fw, label = stored["framework"], stored["period"]["label"]
    candidates: list[tuple[str, Mapping[str, Any]]] = []
    if "index.pdf" in objects:
        candidates.append((f"attestly-{fw}-{label}-index.pdf", objects["index.pdf"]))
    elif "index.html" in objects:
        candidates.append((f"attestly-{fw}-{label}-index.html", objects["index.html"]))
    candidates.append((f"attestly-{fw}-{label}-packet.zip", stored["packet"]))
    attach = plan_attachments(
        [(n, int(o["size"])) for n, o in candidates], limit_bytes=settings.attach_limit_bytes
    )
    attachments: list[tuple[str, bytes, str]] = []
    listed: list[dict[str, Any]] = []
    for (name, obj), yes in zip(candidates, attach, strict=True):
        if yes:
            attachments.append((name, read(obj), content_type(name).split(";")[0]))
        listed.append({"name": name, "size": obj["size"], "attached": yes, "key": obj["key"]})
    html = compose_html(
        index=index,
        files=listed,
        bucket=store.bucket,
        prefix=stored["prefix"],
        attach_limit_mb=settings.attach_limit_mb,
        run_url=run_url,
        sent_at=sent_at,
        seal={
            "packet_sha256": stored["packet"]["sha256"],
            "ledger_seq": stored.get("ledger_seq"),
            "digest": stored.get("report_digest"),
        },
    )
    mid = send_email(
        to=recipients,
        subject=subject_for(index),
        html=html,
        attachments=attachments,
        conn_id=conn_id,
        message_id=message_id,
    )
    return {
        "message_id": mid,
        "recipients": sorted(set(recipients)),
        "attachments": [
            {"name": n, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for n, b, _ in attachments
        ],
        "linked": [{"name": f["name"], "key": f["key"]} for f in listed if not f["attached"]],
    }
