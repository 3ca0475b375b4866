"""Manual evidence from the Evidence view: the upload form and what its ``POST`` does.

``GET /attestly/evidence/add[?control=ID]`` shows a form (controls evidenced by documents and sign-offs,
in scope, one or more files, the period covered, a title, an optional exception). The page's script sends
it as ``multipart/form-data`` to ``POST /attestly/api/evidence`` with the header
``X-Attestly-Action: add-evidence`` (a cross-site form cannot set it), and the statement is recorded by
:func:`attestly.manual.add_evidence` — the same checks, storage, signature and ledger entry as ``attestly
evidence add``. The person who attests is the logged-in Airflow user (never a form field), recorded as
``ui:<user>``; uploading needs permission to create runs of ``evidence_collection``
(:func:`attestly.ui.auth.require_evidence_writer`).

Limits, before anything is parsed or stored: a ``Content-Length`` is required and may not exceed
``max_files × max_file_mib`` (plus 1 MiB of form overhead) from ``controls.yaml`` ``manual_evidence``
(``411``/``413`` otherwise); at most ``max_files`` files and 16 fields; each file at most ``max_file_mib``.
File types are decided by content (:func:`attestly.manual.sniff`). Nothing uploaded is ever served back
or rendered by this app: the page lists a statement's title, attester and file hashes as escaped text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jinja2 import Environment, StrictUndefined

if TYPE_CHECKING:
    from attestly.policy import Policy

ACTION_HEADER_VALUE = "add-evidence"
MAX_FIELDS = 16
MAX_FIELD_BYTES = 64 * 1024
FORM_OVERHEAD = 1024 * 1024

# The CLI's option names in ManualEvidenceError messages, as the form labels them.
_FIELD_NAMES = {
    "--period-from": "period from",
    "--period-to": "period to",
    "--attested-by": "attested by",
    "--exception": "exception",
    "--control": "control",
    "--title": "title",
    "--file": "file",
}


class UploadRefused(ValueError):
    """A bad upload; ``status`` is the HTTP status, the message names the field, file or value and why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def ui_message(message: str) -> str:
    for option, label in _FIELD_NAMES.items():
        message = message.replace(option, label)
    return message


def max_request_bytes(policy: Policy) -> int:
    s = policy.manual_evidence
    return s.max_files * s.max_file_mib * 1024 * 1024 + FORM_OVERHEAD


def check_length(header: str | None, policy: Policy) -> None:
    """Refuse before reading a byte: no ``Content-Length`` (``411``), or more than the form can hold (``413``)."""
    if header is None:
        raise UploadRefused("send a Content-Length: uploads are size-checked before they are read", 411)
    try:
        length = int(header)
    except ValueError:
        raise UploadRefused(f"Content-Length {header[:40]!r} is not a number") from None
    limit = max_request_bytes(policy)
    if length > limit:
        s = policy.manual_evidence
        raise UploadRefused(
            f"the upload is {length:,} bytes; at most {limit:,} ({s.max_files} files of at most "
            f"{s.max_file_mib} MiB, controls.yaml manual_evidence)",
            413,
        )


def _date(value: str | None, field: str) -> Any:
    from datetime import date

    if not value:
        raise UploadRefused(f"{field}: required (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UploadRefused(f"{field}: {value[:40]!r} is not a date (YYYY-MM-DD)") from None


async def read_form(request: Any, policy: Policy) -> dict[str, Any]:
    """The form's fields and files, bounded (see the module doc); :class:`UploadRefused` names what is wrong."""
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException as StarletteHTTPException

    s = policy.manual_evidence
    check_length(request.headers.get("content-length"), policy)
    try:
        form = await request.form(max_files=s.max_files, max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES)
    except StarletteHTTPException as exc:  # too many files/fields, a field too big, a malformed body
        raise UploadRefused(f"the form could not be read: {exc.detail}") from None
    limit = s.max_file_mib * 1024 * 1024
    files: list[tuple[str, bytes]] = []
    try:
        for value in form.getlist("file"):
            if not isinstance(value, UploadFile):
                raise UploadRefused("file: expected an uploaded file, got a text field")
            name = value.filename or ""
            if not name:
                continue  # an empty file input
            data = await value.read(limit + 1)
            if len(data) > limit:
                raise UploadRefused(
                    f"file {name!r}: larger than {s.max_file_mib} MiB (controls.yaml manual_evidence.max_file_mib)"
                )
            files.append((name, data))
        texts: dict[str, Any] = {}
        for key in ("period_from", "period_to", "title", "exception"):
            raw = form.get(key)
            if raw is not None and not isinstance(raw, str):
                raise UploadRefused(f"{key.replace('_', ' ')}: expected text, got a file")
            texts[key] = raw
        controls = [c for c in form.getlist("control") if isinstance(c, str) and c]
    finally:
        await form.close()
    if not controls:
        raise UploadRefused("control: choose at least one control")
    if not files:
        raise UploadRefused("file: attach at least one file")
    exception = (texts["exception"] or "").strip() or None
    return {
        "controls": controls,
        "files": files,
        "period_from": _date(texts["period_from"], "period from"),
        "period_to": _date(texts["period_to"], "period to"),
        "title": texts["title"] or "",
        "exception": exception,
    }


def record_upload(fields: dict[str, Any], *, user_name: str, policy: Policy) -> dict[str, Any]:
    """Record the statement (blocking: run it in the thread pool); the ``Recorded`` dict."""
    from attestly.ledger import Ledger
    from attestly.manual import ManualEvidenceError, add_evidence
    from attestly.signing import signer_from_connection
    from attestly.store import EvidenceStore

    store = EvidenceStore.from_connection()
    with Ledger.connect() as ledger:
        try:
            recorded = add_evidence(
                policy=policy,
                ledger=ledger,
                store=store,
                signer=signer_from_connection(),
                controls=fields["controls"],
                files=fields["files"],
                period_from=fields["period_from"],
                period_to=fields["period_to"],
                title=fields["title"],
                attested_by=user_name,
                recorded_by=f"ui:{user_name}",
                exception=fields["exception"],
            )
        except ManualEvidenceError as exc:
            raise UploadRefused(ui_message(str(exc))) from None
    return recorded.to_dict()


# ------------------------------------------------------------------------------------------ the form

_FORM = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Attestly — Add evidence</title>
<style>
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2933; margin: 0; padding: 16px 24px 48px; }
  h1 { font-size: 20px; margin: 0 0 4px; } label { display: block; margin: 14px 0 4px; font-weight: 600; }
  .muted { color: #616e7c; font-weight: normal; } input[type=text], textarea, select { width: 100%; max-width: 720px; font: inherit; }
  select[multiple] { height: 14em; } button { font: inherit; padding: 4px 12px; margin-top: 16px; }
  .ok { color: #1b873f; font-weight: 600; } .bad { color: #c62828; font-weight: 600; } pre { white-space: pre-wrap; }
</style>
</head>
<body>
<h1>Add manual evidence</h1>
<div class="muted">Documents and sign-offs (policies, access reviews, risk assessments, training records, restore tests)
are stored write-once, signed and ledgered like collected evidence. You, <b>{{ user }}</b>, are recorded as the person attesting.
<a href="{{ root }}/">Back to the Evidence view</a></div>
<form id="evidence-form" enctype="multipart/form-data">
  <label for="control">Controls <span class="muted">(those evidenced by documents; hold Ctrl to choose several)</span></label>
  <select id="control" name="control" multiple required>
  {% for c in controls %}<option value="{{ c.id }}"{% if c.id in selected %} selected{% endif %}>{{ c.id }} — {{ c.title }}{% if c.cadence %} ({{ c.cadence }}){% endif %}</option>
  {% endfor %}
  </select>
  <label for="file">Files <span class="muted">(PDF, PNG, JPEG, text/CSV/JSON, Word/Excel/OpenDocument without macros; at most {{ max_files }} files of {{ max_file_mib }} MiB)</span></label>
  <input id="file" name="file" type="file" multiple required accept=".pdf,.png,.jpg,.jpeg,.txt,.csv,.md,.json,.docx,.xlsx,.pptx,.odt,.ods,.odp">
  <label for="period_from">Period covered: from</label><input id="period_from" name="period_from" type="date" required>
  <label for="period_to">to</label><input id="period_to" name="period_to" type="date" required>
  <label for="title">Title</label><input id="title" name="title" type="text" maxlength="200" required>
  <label for="exception">Exception <span class="muted">(only if the evidence shows the control did not operate as intended)</span></label>
  <textarea id="exception" name="exception" rows="3" maxlength="2000"></textarea>
  <button type="submit">Record evidence</button>
</form>
<pre id="result"></pre>
<script>
document.getElementById("evidence-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const out = document.getElementById("result");
  out.className = ""; out.textContent = "uploading…";
  try {
    const resp = await fetch({{ post_url|tojson }}, {method: "POST", credentials: "same-origin",
      headers: {"X-Attestly-Action": {{ action|tojson }}}, body: new FormData(event.target)});
    const data = await resp.json().catch(() => ({detail: "HTTP " + resp.status}));
    if (!resp.ok) { out.className = "bad"; out.textContent = "refused: " + (data.detail || resp.status); return; }
    out.className = "ok";
    out.textContent = (data.created ? "recorded" : "already recorded") + ": evidence " + data.sha256 +
      " (ledger seq " + data.ledger_seq + ") for " + data.controls.join(", ");
  } catch (err) { out.className = "bad"; out.textContent = "the upload failed: " + err; }
});
</script>
</body>
</html>
"""


def render_form(policy: Policy, *, user: str, app_root: str, selected: list[str]) -> str:
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    controls = list(policy.manual_controls())
    s = policy.manual_evidence
    root = app_root.rstrip("/")
    return env.from_string(_FORM).render(
        controls=sorted(controls, key=lambda c: (str(c.framework), c.id)),
        selected=set(selected),
        user=user,
        root=root,
        post_url=f"{root}/api/evidence",
        action=ACTION_HEADER_VALUE,
        max_files=s.max_files,
        max_file_mib=s.max_file_mib,
    )
