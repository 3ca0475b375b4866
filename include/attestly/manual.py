"""Manual evidence: documents and sign-offs (policies, access reviews, risk assessments, training records,
restore tests) stored and ledgered exactly like collected evidence.

A *statement* is an evidence item (``attestly.evidence/v1``, collector ``manual``) that names the controls,
the period it covers, a title, who attests it, when, and every attached file by SHA-256, size and type.
The files are stored write-once under ``attachments/sha256/<hex>`` (Object Lock, COMPLIANCE), the item
under ``objects/sha256/<hex>.json`` like every other item, and the ledger entry (kind ``evidence``) lists
both, with an Ed25519/ECDSA signature over the item's hash by Attestly's signing key, so ``attestly
verify`` re-hashes the files and checks the signature with the public key alone.

Order, for a crash at any step (see ``archive.failpoints.MANUAL_FAILPOINTS``): everything is checked first (files,
controls, period, sizes, types) and nothing is written when anything is wrong; then the statement is
frozen in ``attestly.manual_statements`` (the intent journal); then the attachments, the item, the
ledger entry and the journal's ``recorded`` mark. Re-running the same command — or the daily reminders
task, for a statement whose files are all stored — completes a pending statement from the frozen bytes;
the same statement is never ledgered twice.

File types are decided by content (magic bytes and structure), never by the name alone: PDF, PNG,
JPEG, plain UTF-8 text (TXT, CSV, Markdown), JSON, and Office Open XML / OpenDocument documents without
macros. Executables, scripts, HTML/SVG/XML, archives and PDFs with JavaScript or launch actions are
refused: nothing uploaded is ever executed or rendered as active content.
"""

from __future__ import annotations

import getpass
import hashlib
import io
import json
import re
import socket
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attestly.evidence import (
    EvidenceItem,
    Finding,
    Method,
    Population,
    canonical_for,
    canonical_json_v1,
    iso,
    item_version,
    sha256_hex,
)
from attestly.textinput import TextInputError, clean_name, clean_text

if TYPE_CHECKING:
    from attestly.ledger import Ledger, LedgerEntry
    from attestly.policy import Policy
    from attestly.signing import Signer
    from attestly.store import EvidenceStore, StoredObject

COLLECTOR = "manual"
ATTACHMENT_PREFIX = "attachments/sha256/"
SIGNATURE_CONTEXT = b"attestly.manual-statement/v1:"
MAX_TITLE = 200


class ManualEvidenceError(ValueError):
    """Input refused; the message names the file, control, option or value and why. Nothing was written."""


# ------------------------------------------------------------------------------------------ file types

#: Accepted media types and the extensions that may claim them.
MEDIA_TYPES: dict[str, tuple[str, ...]] = {
    "application/pdf": (".pdf",),
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "text/plain; charset=utf-8": (".txt", ".log", ".md", ".csv", ".tsv", ".text", ".yaml", ".yml"),
    "application/json": (".json",),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (".docx",),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": (".xlsx",),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": (".pptx",),
    "application/vnd.oasis.opendocument.text": (".odt",),
    "application/vnd.oasis.opendocument.spreadsheet": (".ods",),
}
_OOXML = {
    "word/": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xl/": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt/": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
_REFUSED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xfe\xed\xfa\xcf", "a Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "a Mach-O or Java class file"),
    (b"#!", "a script"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (
        b"\xd0\xcf\x11\xe0",
        "a legacy Office (OLE) document, which may carry macros; save it as PDF or .docx/.xlsx",
    ),
)
_ACTIVE_TEXT = re.compile(rb"^\s*(<\?xml|<!doctype|<html|<svg|<script|<head|<body|<iframe)", re.IGNORECASE)
_PDF_ACTIVE = re.compile(rb"/(JavaScript|JS|Launch|EmbeddedFile|RichMedia|XFA)\b")
_ALLOWED_CONTROL = {9, 10, 12, 13}


def sniff(data: bytes, *, name: str) -> str:
    """The media type of ``data`` (a file called ``name``), decided by content; :class:`ManualEvidenceError`
    naming the file and the reason when the content is not an accepted type, is active content, or does
    not match the name's extension."""
    where = f"file {name!r}"
    if not data:
        raise ManualEvidenceError(f"{where}: is empty")
    for magic, what in _REFUSED_MAGIC:
        if data.startswith(magic):
            raise ManualEvidenceError(f"{where}: is {what}; not accepted as evidence")
    media: str
    if data.startswith(b"%PDF-"):
        if b"%%EOF" not in data[-2048:]:
            raise ManualEvidenceError(f"{where}: PDF is truncated (no %%EOF trailer)")
        active = _PDF_ACTIVE.search(data)
        if active:
            raise ManualEvidenceError(
                f"{where}: PDF contains /{active[1].decode()} (active content); print it to a plain PDF"
            )
        media = "application/pdf"
    elif data.startswith(b"\x89PNG\r\n\x1a\n"):
        media = "image/png"
    elif data.startswith(b"\xff\xd8\xff"):
        media = "image/jpeg"
    elif data.startswith(b"PK\x03\x04"):
        media = _sniff_zip(data, where)
    else:
        media = _sniff_text(data, where)
    ext = Path(name).suffix.lower()
    claimed = [m for m, exts in MEDIA_TYPES.items() if ext in exts]
    if claimed and media not in claimed:
        raise ManualEvidenceError(
            f"{where}: the name says {ext} but the content is {media.split(';')[0]}; rename it or export it "
            "to the format its name says"
        )
    return media


def _sniff_zip(data: bytes, where: str) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
            if "mimetype" in names:
                kind = zf.read("mimetype").decode("ascii", "replace").strip()
                if kind in MEDIA_TYPES:
                    media = kind
                else:
                    raise ManualEvidenceError(f"{where}: OpenDocument type {kind!r} is not accepted")
            elif "[Content_Types].xml" in names:
                found = [m for prefix, m in _OOXML.items() if any(n.startswith(prefix) for n in names)]
                if len(found) != 1:
                    raise ManualEvidenceError(f"{where}: an Office package of no known kind")
                media = found[0]
            else:
                raise ManualEvidenceError(f"{where}: is a zip archive; attach the documents themselves")
            lowered = [n.lower() for n in names]
            if any(n.endswith("vbaproject.bin") or n.startswith("basic/") or "/basic/" in n for n in lowered):
                raise ManualEvidenceError(f"{where}: the document contains macros; save it without them")
            return media
    except zipfile.BadZipFile as exc:
        raise ManualEvidenceError(f"{where}: a damaged zip/Office file ({exc})") from None


def _sniff_text(data: bytes, where: str) -> str:
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManualEvidenceError(
            f"{where}: not a PDF, image, Office document or UTF-8 text (undecodable byte at offset "
            f"{exc.start}); export it as PDF"
        ) from None
    for i, ch in enumerate(text):
        if (ord(ch) < 32 and ord(ch) not in _ALLOWED_CONTROL) or ord(ch) == 127:
            raise ManualEvidenceError(
                f"{where}: binary content (control character U+{ord(ch):04X} at character {i + 1}); "
                "export it as PDF"
            )
    if _ACTIVE_TEXT.match(body):
        raise ManualEvidenceError(
            f"{where}: HTML, SVG or XML is not accepted (it could be rendered as active content); "
            "print it to PDF"
        )
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            json.loads(text)
            return "application/json"
        except ValueError:
            pass
    return "text/plain; charset=utf-8"


# ------------------------------------------------------------------------------------------ statements


@dataclass(frozen=True)
class Attachment:
    name: str
    sha256: str
    size: int
    media_type: str
    data: bytes

    @property
    def key(self) -> str:
        return ATTACHMENT_PREFIX + self.sha256

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "size": self.size, "media_type": self.media_type}


@dataclass(frozen=True)
class Statement:
    """A checked statement, ready to record: the evidence item and the attachments it names."""

    item: EvidenceItem
    attachments: tuple[Attachment, ...]
    content_key: str
    recorded_by: str

    @property
    def sha256(self) -> str:
        return self.item.sha256


def _safe_name(raw: str, option: str) -> str:
    name = Path(raw).name
    try:
        return clean_name(name, option=option)
    except TextInputError as exc:
        raise ManualEvidenceError(str(exc)) from None


def check_controls(policy: Policy, controls: Sequence[str]) -> tuple[str, ...]:
    """The controls, each a manual control in scope; errors name the control and why."""
    if not controls:
        raise ManualEvidenceError("--control: name at least one control")
    out = []
    for cid in controls:
        control = policy.controls.get(cid)
        if control is None:
            close = [c for c in policy.controls if c.lower().startswith(cid.split(".")[0].lower())][:3]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ManualEvidenceError(f"--control {cid!r}: unknown control{hint}")
        if not control.manual:
            raise ManualEvidenceError(
                f"--control {cid}: is evidenced by collectors only (manual: false in controls.yaml); "
                "manual evidence is taken for manual controls"
            )
        if not policy.in_scope(control):
            raise ManualEvidenceError(
                f"--control {cid}: its trust services category ({control.category}) is not in scope "
                "(controls.yaml frameworks.soc2.categories_in_scope)"
            )
        out.append(cid)
    return tuple(sorted(set(out)))


def build_statement(
    *,
    policy: Policy,
    controls: Sequence[str],
    files: Sequence[tuple[str, bytes]],
    period_from: date,
    period_to: date,
    title: str,
    attested_by: str,
    attested_at: datetime,
    recorded_by: str,
    exception: str | None = None,
) -> Statement:
    """Check everything and build the statement; :class:`ManualEvidenceError` names what is wrong.

    ``files`` are ``(name, bytes)``; ``attested_at`` is the trusted current time (the period may not end
    after its day); ``exception`` records that the evidence shows the control did *not* operate as
    intended (the item's result is then ``fail`` with that finding)."""
    settings = policy.manual_evidence
    ids = check_controls(policy, controls)
    if period_to < period_from:
        raise ManualEvidenceError(
            f"--period-to {period_to.isoformat()} is before --period-from {period_from.isoformat()}"
        )
    today = attested_at.astimezone(UTC).date()
    if period_to > today:
        raise ManualEvidenceError(
            f"--period-to {period_to.isoformat()} is after today ({today.isoformat()}): evidence cannot "
            "cover days that have not happened"
        )
    try:
        title = clean_text(title, option="--title", max_len=MAX_TITLE)
        attested_by = clean_name(attested_by, option="--attested-by")
        exception = clean_text(exception, option="--exception") if exception is not None else None
        recorded_by = clean_name(recorded_by, option="recorded by")
    except TextInputError as exc:
        raise ManualEvidenceError(str(exc)) from None
    if not files:
        raise ManualEvidenceError("--file: attach at least one file")
    if len(files) > settings.max_files:
        raise ManualEvidenceError(
            f"--file: {len(files)} files; at most {settings.max_files} (controls.yaml manual_evidence.max_files)"
        )
    limit = settings.max_file_mib * 1024 * 1024
    attachments: dict[str, Attachment] = {}
    for raw_name, data in files:
        name = _safe_name(raw_name, "--file")
        if len(data) > limit:
            raise ManualEvidenceError(
                f"file {name!r}: {len(data):,} bytes; at most {settings.max_file_mib} MiB "
                "(controls.yaml manual_evidence.max_file_mib)"
            )
        media = sniff(data, name=name)
        digest = sha256_hex(data)
        attachments.setdefault(digest, Attachment(name, digest, len(data), media, data))
    ordered = tuple(sorted(attachments.values(), key=lambda a: (a.name, a.sha256)))
    described = [a.describe() for a in ordered]
    statement = {
        "title": title,
        "attested_by": attested_by,
        "attested_at": iso(attested_at),
        "recorded_by": recorded_by,
        "attachments": described,
    }
    content_key = sha256_hex(
        canonical_json_v1(  # an internal identifier: kept stable across the v2 upgrade
            {
                "controls": list(ids),
                "from": period_from.isoformat(),
                "to": period_to.isoformat(),
                "title": title,
                "attested_by": attested_by,
                "exception": exception,
                "attachments": [a.sha256 for a in ordered],
            }
        )
    )
    findings: tuple[Finding, ...] = (
        (Finding(resource=title, status="fail", detail=exception),)
        if exception
        else tuple(Finding(resource=a.name, status="pass", detail=f"sha256:{a.sha256}") for a in ordered)
    )
    item = EvidenceItem(
        collector=COLLECTOR,
        controls=ids,
        period_start=datetime.combine(period_from, time(), tzinfo=UTC),
        period_end=datetime.combine(period_to + timedelta(days=1), time(), tzinfo=UTC),
        scope={"kind": "manual", "statement": content_key[:16]},
        retroactive=False,
        result="fail" if exception else "pass",
        findings=findings,
        data={"statement": statement},
        airflow=None,
        collected_at=attested_at,
        observed_at=attested_at,
        method=Method(COLLECTOR, parameters={"attested_by": attested_by}),
        population=Population(
            "files attested by the statement" if not exception else "the statement's exception",
            "uploaded with the statement and named by SHA-256",
            len(ordered) if not exception else 1,
        ),
    )
    return Statement(item=item, attachments=ordered, content_key=content_key, recorded_by=recorded_by)


def read_files(paths: Sequence[Path], *, max_file_mib: int) -> list[tuple[str, bytes]]:
    """Read the files named on the command line; errors name the path (missing, a directory, too big)."""
    out = []
    limit = max_file_mib * 1024 * 1024
    for p in paths:
        if not p.exists():
            raise ManualEvidenceError(f"--file {p}: no such file")
        if not p.is_file():
            raise ManualEvidenceError(f"--file {p}: not a regular file")
        size = p.stat().st_size
        if size > limit:
            raise ManualEvidenceError(
                f"--file {p}: {size:,} bytes; at most {max_file_mib} MiB (controls.yaml manual_evidence.max_file_mib)"
            )
        try:
            out.append((p.name, p.read_bytes()))
        except OSError as exc:
            raise ManualEvidenceError(f"--file {p}: cannot be read ({exc.strerror})") from None
    return out


def default_recorder() -> str:
    """Who recorded a statement from the command line: ``cli:<user>@<host>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"[:128]


# ------------------------------------------------------------------------------------------ recording


def _hit(name: str) -> None:
    from attestly import failpoints

    failpoints.hit(name)


def sign_item(signer: Signer, item_sha256: str) -> dict[str, str]:
    import base64

    from attestly.signing import fingerprint

    pem = signer.public_key_pem()
    return {
        "algorithm": signer.algorithm,
        "key_fingerprint": fingerprint(pem),
        "signature": base64.b64encode(signer.sign(SIGNATURE_CONTEXT + item_sha256.encode())).decode(),
    }


def _journal(ledger: Ledger, st: Statement) -> tuple[bytes, list[dict[str, Any]], int | None]:
    """Freeze the statement (or find it frozen): returns the frozen item bytes, attachments and, when it
    was already recorded, its ledger seq."""
    from psycopg.types.json import Jsonb

    conn = ledger.conn
    with conn.transaction():
        conn.execute(
            "INSERT INTO attestly.manual_statements (content_key, item_sha256, item, attachments, recorded_by) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (content_key) DO NOTHING",
            (
                st.content_key,
                st.sha256,
                st.item.canonical(),
                Jsonb([a.describe() for a in st.attachments]),
                st.recorded_by,
            ),
        )
        row = conn.execute(
            "SELECT item, attachments, ledger_seq FROM attestly.manual_statements WHERE content_key = %s",
            (st.content_key,),
        ).fetchone()
    assert row is not None
    return bytes(row[0]), list(row[1]), row[2]


def _store_attachment(
    store: EvidenceStore, data: bytes, meta: dict[str, Any], retain_until: datetime
) -> StoredObject:
    stored = store.put_bytes(
        ATTACHMENT_PREFIX + meta["sha256"],
        data,
        retain_until=retain_until,
        content_type=str(meta["media_type"]),
        expected_sha256=str(meta["sha256"]),
    )
    if not stored.created and stored.retain_until < retain_until:
        # The same file attached earlier to a statement with a shorter retention: extend its lock (never
        # shortened) so it is kept as long as this statement needs it.
        store.extend_retention(stored.key, stored.version_id, retain_until)
        from dataclasses import replace

        stored = replace(stored, retain_until=retain_until)
    return stored


def _complete(
    *,
    ledger: Ledger,
    store: EvidenceStore,
    signer: Signer,
    item_bytes: bytes,
    attachments: list[dict[str, Any]],
    content_key: str,
    data_by_sha: dict[str, bytes],
) -> LedgerEntry:
    """Store what is not stored yet, ledger the statement once and mark the journal row recorded."""
    from attestly.evidence import object_key, parse_item
    from attestly.recording import evidence_summary

    item_sha = sha256_hex(item_bytes)
    doc = parse_item(item_bytes)
    period_end = datetime.fromisoformat(doc["period"]["end"].replace("Z", "+00:00"))
    retain_until = store.retain_until_for(period_end)
    stored_files = []
    for n, meta in enumerate(attachments):
        data = data_by_sha.get(meta["sha256"])
        if data is None:
            data = _stored_attachment(store, meta)
        stored_files.append(
            {
                **_store_attachment(store, data, meta, retain_until).to_dict(),
                "name": meta["name"],
                "media_type": meta["media_type"],
            }
        )
        if n == 0:
            _hit("manual.mid_attachments")
    _hit("manual.after_attachments")
    stored_item = store.put_bytes(
        object_key(item_sha), item_bytes, retain_until=retain_until, content_type="application/json"
    )
    _hit("manual.after_item")
    item = _item_from_doc(doc)
    observation = item.observation_sha256
    summary = evidence_summary(item)
    statement = doc["data"]["statement"]
    body = {
        **summary,
        **stored_item.to_dict(),
        "sha256": item_sha,
        "observation": observation,
        "manual": {
            "title": statement["title"],
            "attested_by": statement["attested_by"],
            "attested_at": statement["attested_at"],
            "recorded_by": statement["recorded_by"],
            "content_key": content_key,
        },
        "attachments": stored_files,
        "signature": sign_item(signer, item_sha),
    }
    entry, _created = ledger.append("evidence", body, dedupe_key=f"evidence:{observation}")
    _hit("manual.after_ledger")
    with ledger.conn.transaction():
        ledger.conn.execute(
            "UPDATE attestly.manual_statements SET ledger_seq = %s, recorded_at = clock_timestamp() "
            "WHERE content_key = %s AND ledger_seq IS NULL",
            (entry.seq, content_key),
        )
    return entry


def _stored_attachment(store: EvidenceStore, meta: dict[str, Any]) -> bytes:
    """An attachment already in the bucket (completing a pending statement without its files)."""
    key = ATTACHMENT_PREFIX + meta["sha256"]
    version = store.first_version(key)
    if version is None:
        raise PendingIncomplete(
            f"attachment {meta['name']!r} (sha256 {meta['sha256']}) was never stored; re-run the "
            "`attestly evidence add` that made this statement, with its files"
        )
    data = store.get_bytes(key, version)
    if sha256_hex(data) != meta["sha256"]:
        raise PendingIncomplete(f"attachment {key} holds different content than its statement names")
    return data


class PendingIncomplete(RuntimeError):
    """A pending statement cannot be completed without its files (they were never stored)."""


def _item_from_doc(doc: dict[str, Any]) -> EvidenceItem:
    def ts(s: str) -> datetime:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))

    item = EvidenceItem(
        collector=doc["collector"],
        controls=tuple(doc["controls"]),
        period_start=ts(doc["period"]["start"]),
        period_end=ts(doc["period"]["end"]),
        scope=dict(doc["scope"]),
        retroactive=bool(doc["retroactive"]),
        result=doc["result"],
        findings=tuple(Finding(f["resource"], f["status"], f["detail"]) for f in doc["findings"]),
        data=doc["data"],
        airflow=None,
        collected_at=ts(doc["collected_at"]),
        version=item_version(doc),  # a statement frozen before the upgrade to v2 completes as v1
        observed_at=ts(doc["observed_at"]) if doc.get("observed_at") else None,
        method=Method.from_dict(doc["method"]) if doc.get("method") else None,
        population=Population.from_dict(doc["population"]) if doc.get("population") else None,
        policy=str(doc["policy"]["sha256"]) if doc.get("policy") else None,
    )
    if item.canonical() != canonical_for(item.version, doc):
        raise RuntimeError("a frozen statement does not round-trip; refusing to ledger it")
    return item


@dataclass(frozen=True)
class Recorded:
    entry: LedgerEntry
    created: bool  # False when this exact statement was already recorded

    def to_dict(self) -> dict[str, Any]:
        b = self.entry.body
        return {
            "sha256": b["sha256"],
            "key": b["key"],
            "version_id": b["version_id"],
            "ledger_seq": self.entry.seq,
            "created": self.created,
            "controls": b["controls"],
            "period": {"from": b["period_start"][:10], "to": _last_day(b["period_end"])},
            "result": b["result"],
            "title": b["manual"]["title"],
            "attested_by": b["manual"]["attested_by"],
            "attested_at": b["manual"]["attested_at"],
            "attachments": [
                {k: a[k] for k in ("name", "sha256", "size", "media_type", "key", "version_id")}
                for a in b["attachments"]
            ],
        }


def _last_day(end_iso: str) -> str:
    end = datetime.fromisoformat(end_iso.replace("Z", "+00:00"))
    return (end - timedelta(microseconds=1)).date().isoformat()


def record_statement(st: Statement, *, ledger: Ledger, store: EvidenceStore, signer: Signer) -> Recorded:
    """Journal, store and ledger a checked statement (see the module docstring); idempotent.

    The statement names the policy in force, as collected items do (its bundle stored and ledgered once,
    :func:`attestly.recording.with_policy`), whichever path files it (the CLI or the Evidence view)."""
    from dataclasses import replace

    from attestly.ledger import LedgerEntry  # noqa: F401  (type only)
    from attestly.recording import with_policy

    if st.item.version == 2 and st.item.policy is None:
        st = replace(st, item=with_policy(st.item, store=store, ledger=ledger))
    item_bytes, attachments, seq = _journal(ledger, st)
    if seq is not None:
        entry = _entry(ledger, seq)
        return Recorded(entry, created=False)
    _hit("manual.after_journal")
    data = {a.sha256: a.data for a in st.attachments}
    entry = _complete(
        ledger=ledger,
        store=store,
        signer=signer,
        item_bytes=item_bytes,
        attachments=attachments,
        content_key=st.content_key,
        data_by_sha=data,
    )
    return Recorded(entry, created=True)


def _entry(ledger: Ledger, seq: int) -> LedgerEntry:
    for e in ledger.entries(after_seq=seq - 1, kind="evidence"):
        if e.seq == seq:
            return e
        break
    raise RuntimeError(f"ledger entry {seq} of a recorded manual statement is missing")


def complete_pending(*, ledger: Ledger, store: EvidenceStore, signer: Signer) -> dict[str, Any]:
    """Complete every pending statement whose files are all stored (the daily task runs this): returns
    ``{completed: [item sha256], incomplete: [{item_sha256, created_at, reason}]}``."""
    rows = ledger.conn.execute(
        "SELECT content_key, item, attachments, created_at FROM attestly.manual_statements "
        "WHERE ledger_seq IS NULL ORDER BY created_at"
    ).fetchall()
    ledger.conn.commit()
    completed, incomplete = [], []
    for content_key, item, attachments, created_at in rows:
        try:
            entry = _complete(
                ledger=ledger,
                store=store,
                signer=signer,
                item_bytes=bytes(item),
                attachments=list(attachments),
                content_key=content_key,
                data_by_sha={},
            )
            completed.append(entry.body["sha256"])
        except PendingIncomplete as exc:
            incomplete.append(
                {
                    "item_sha256": sha256_hex(bytes(item)),
                    "created_at": created_at.isoformat(),
                    "reason": str(exc),
                }
            )
    return {"completed": completed, "incomplete": incomplete}


def add_evidence(
    *,
    policy: Policy,
    ledger: Ledger,
    store: EvidenceStore,
    signer: Signer,
    controls: Sequence[str],
    files: Sequence[tuple[str, bytes]],
    period_from: date,
    period_to: date,
    title: str,
    attested_by: str,
    recorded_by: str,
    exception: str | None = None,
) -> Recorded:
    """Check, then record, a statement (the CLI and the UI both come here). The attestation time is the
    trusted current time; a pending identical statement (a crashed earlier attempt) is completed with its
    original time."""
    from attestly.clock import trusted_now

    now = trusted_now(ledger.conn)
    st = build_statement(
        policy=policy,
        controls=controls,
        files=files,
        period_from=period_from,
        period_to=period_to,
        title=title,
        attested_by=attested_by,
        attested_at=now,
        recorded_by=recorded_by,
        exception=exception,
    )
    return record_statement(st, ledger=ledger, store=store, signer=signer)


# ------------------------------------------------------------------------------------------ reading


def statement_summary(body: dict[str, Any]) -> dict[str, Any] | None:
    """What a ledger entry body says about a manual statement (None for collected evidence)."""
    manual = body.get("manual")
    if body.get("collector") != COLLECTOR or not isinstance(manual, dict):
        return None
    return {
        "title": manual.get("title"),
        "attested_by": manual.get("attested_by"),
        "attested_at": manual.get("attested_at"),
        "recorded_by": manual.get("recorded_by"),
        "attachments": [
            {k: a.get(k) for k in ("name", "sha256", "size", "media_type")}
            for a in body.get("attachments", [])
            if isinstance(a, dict)
        ],
    }


def verify_statement_signature(body: dict[str, Any], public_pem: bytes) -> str | None:
    """None when the statement's signature verifies under ``public_pem``, else why not."""
    import base64
    import binascii

    from attestly.signing import verify_signature

    sig = body.get("signature")
    if not isinstance(sig, dict):
        return "the statement carries no signature"
    try:
        raw = base64.b64decode(str(sig.get("signature", "")), validate=True)
    except (binascii.Error, ValueError):
        return "the statement's signature is not base64"
    message = SIGNATURE_CONTEXT + str(body.get("sha256", "")).encode()
    try:
        ok = verify_signature(public_pem, str(sig.get("algorithm", "")), message, raw)
    except ValueError:
        ok = False
    return None if ok else "the statement's signature does not verify under the public key"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            h.update(chunk)
    return h.hexdigest()
