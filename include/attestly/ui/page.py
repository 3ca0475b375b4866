"""The Evidence page: one self-contained HTML document (inline CSS, a few lines of JS for the verify
button), rendered with Jinja2 autoescaping so no ledger or bucket text can inject markup.

The page is shown inside the Airflow UI (an iframe sandboxed without top navigation), so links open in
the frame; it is also usable on its own at ``<airflow>/attestly/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from jinja2 import Environment, StrictUndefined

if TYPE_CHECKING:
    from attestly.ui.overview import Overview

STATUS_LABELS = {"pass": "pass", "fail": "fail", "no_evidence": "no evidence"}
RESULT_CLASSES = {
    "pass": "pass",
    "fail": "fail",
    "error": "fail",
    "not_applicable": "na",
    "success": "pass",
    "failed": "fail",
}

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Attestly — Evidence</title>
<style>
  :root { --fg:#1f2933; --muted:#616e7c; --line:#e4e7eb; --pass:#1b873f; --fail:#c62828; --none:#7b8794; }
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
         margin: 0; padding: 16px 24px 48px; background: #fff; }
  h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
  .muted { color: var(--muted); } code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
  table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
  .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; white-space: nowrap; }
  .badge.pass { background: var(--pass); } .badge.fail { background: var(--fail); } .badge.no_evidence, .badge.na { background: var(--none); }
  .summary span { margin-right: 16px; }
  details summary { cursor: pointer; color: var(--muted); }
  .ok { color: var(--pass); font-weight: 600; } .bad { color: var(--fail); font-weight: 600; }
  button { font: inherit; padding: 4px 12px; border: 1px solid #9aa5b1; border-radius: 4px; background: #f5f7fa; cursor: pointer; }
  a { color: #0b5cad; }
</style>
</head>
<body>
<h1>Evidence</h1>
<div class="muted">Bucket <code>{{ o.bucket }}</code> · controls assessed {{ o.period.start.isoformat() }} .. {{ o.period.end.isoformat() }}
  ({{ o.period.days|length }} day{{ "s" if o.period.days|length != 1 }}, quarter to date) · generated {{ o.generated_at }}</div>

<h2 id="controls">Controls</h2>
<p><a id="add-evidence" href="{{ evidence_url }}">Add manual evidence</a> <span class="muted">(documents and sign-offs for the controls they evidence)</span></p>
<div class="summary">
  <span><span class="badge pass">pass</span> {{ o.status_counts.get("pass", 0) }}</span>
  <span><span class="badge fail">fail</span> {{ o.status_counts.get("fail", 0) }}</span>
  <span><span class="badge no_evidence">no evidence</span> {{ o.status_counts.get("no_evidence", 0) }}</span>
</div>
<p class="muted">Same rules as the quarterly reports: a control passes only with passing evidence from each of its
collectors on every day; any failing item is a failure; a day without evidence (or only "not applicable") is no evidence.</p>
<table>
<thead><tr><th>Control</th><th>Status</th><th>Days (effective / exception / no evidence / not assessed)</th><th>Evidence</th></tr></thead>
<tbody>
{% for c in o.controls %}
<tr id="control-{{ c.control_id }}" data-control="{{ c.control_id }}" data-status="{{ c.status }}">
  <td><b>{{ c.control_id }}</b><br><span class="muted">{{ c.title }} · {{ c.owner }}</span>{% if c.manual %}<br><a class="add-evidence" href="{{ evidence_url }}?control={{ c.control_id|urlencode }}">add evidence</a>{% endif %}</td>
  <td><span class="badge {{ c.status }}">{{ status_label(c.status) }}</span></td>
  <td class="mono">{{ c.days.get("effective", 0) }} / {{ c.days.get("exception", 0) }} / {{ c.days.get("no_evidence", 0) }} / {{ c.days.get("not_assessed", 0) }}</td>
  <td>
  {% if c.latest or c.exceptions or c.runs %}
    <details><summary>{{ c.latest|length }} collector{{ "s" if c.latest|length != 1 }} with evidence{% if c.exceptions_total %}, {{ c.exceptions_total }} failing item{{ "s" if c.exceptions_total != 1 }}{% endif %}</summary>
    <table>
      {% for i in c.exceptions %}{{ item_row(i, "failing") }}{% endfor %}
      {% for i in c.latest %}{{ item_row(i, "latest") }}{% endfor %}
      {% for r in c.runs %}<tr><td colspan="4">run record</td><td>{{ run_link(r) }}</td></tr>{% endfor %}
    </table>
    </details>
  {% else %}<span class="muted">none in this period</span>{% endif %}
  </td>
</tr>
{% endfor %}
</tbody>
</table>

<h2 id="seals">Latest seals</h2>
{% if o.seals %}
<table>
<thead><tr><th>Digest</th><th>Ledger entries</th><th>Sealed at</th><th>SHA-256</th><th>Runs sealed</th></tr></thead>
<tbody>
{% for s in o.seals %}
<tr class="seal"><td><code>{{ s.key }}</code></td><td class="mono">{{ s.first_seq }} – {{ s.last_seq }}</td>
  <td class="mono">{{ s.sealed_at or "" }}</td><td><code title="{{ s.sha256 }}">{{ s.sha256[:16] }}…</code></td>
  <td>{% for r in s.runs %}{{ run_link(r) }}{% if not loop.last %}<br>{% endif %}{% endfor %}</td></tr>
{% endfor %}
</tbody>
</table>
<div class="muted">{{ o.seals|length }} of {{ o.seals_total }} digest{{ "s" if o.seals_total != 1 }}.</div>
{% else %}<p class="muted">Nothing sealed yet.</p>{% endif %}

<h2 id="verify">Verification</h2>
{% if o.verify %}
  {% set r = o.verify.report %}
  <p id="verify-result"><span class="{{ 'ok' if r.ok else 'bad' }}">{{ "OK" if r.ok else "FAILED" }}</span>
  — checked {{ o.verify.checked_at }} in {{ o.verify.duration_seconds }} s (public key from {{ o.verify.public_key_source }}):
  {{ r.found.digests_valid }}/{{ r.found.digests }} digests valid, {{ r.found.evidence_objects_verified }}/{{ r.found.evidence_objects }} evidence objects verified,
  {{ r.found.ledger_entries }} ledger entries{% if r.ledger_checked %}, ledger database cross-checked{% endif %}.</p>
  {% if r.problems %}
  <table><thead><tr><th>Problem</th><th>Key</th><th>Detail</th></tr></thead><tbody>
  {% for p in r.problems[:50] %}<tr><td class="bad">{{ p.kind }}</td><td><code>{{ p.key }}</code></td><td>{{ p.detail }}</td></tr>{% endfor %}
  </tbody></table>
  {% if r.problems|length > 50 %}<div class="muted">… and {{ r.problems|length - 50 }} more (see the JSON).</div>{% endif %}
  {% endif %}
{% else %}<p id="verify-result" class="muted">No verification has been run from this page yet.</p>{% endif %}
<p><button id="verify-button" type="button">Verify the bucket now</button> <span id="verify-status" class="muted"></span></p>

<h2 id="holds">Legal holds</h2>
{% if o.holds %}
<p class="muted">Active holds keep their rows online, their archive objects under S3 legal hold and their keys from
disposal. A hold is released by a person other than the one who placed it, here as the logged-in user, with a reason.</p>
<table>
<thead><tr><th>Hold</th><th>Criteria</th><th>Reason</th><th>Placed</th><th>Release</th></tr></thead>
<tbody>
{% for h in o.holds %}
<tr class="hold" data-hold="{{ h.hold_id }}"><td><code>{{ h.hold_id }}</code></td>
  <td class="mono">{% for k, v in h.criteria.items() %}{{ k }}={{ v[:16] ~ "…" if k == "subject_sha256" else v }}{% if not loop.last %}<br>{% endif %}{% endfor %}</td>
  <td>{{ h.reason }}</td><td class="mono">{{ h.created_at }}<br>{{ h.created_by }}</td>
  <td><form class="release-hold" data-url="{{ hold_release_url(h.hold_id) }}"><input name="reason" required maxlength="500" placeholder="why the hold ends">
  <button type="submit">Release</button> <span class="release-status muted"></span></form></td></tr>
{% endfor %}
</tbody>
</table>
{% else %}<p class="muted">No active legal holds.</p>{% endif %}

<h2 id="reports">Reports</h2>
{% if o.reports %}
<table>
<thead><tr><th>Framework</th><th>Period</th><th>Rendition</th><th>Files</th><th>Run</th></tr></thead>
<tbody>
{% for rep in o.reports %}
<tr class="report"><td>{{ rep.framework }}</td><td>{{ rep.period }}</td><td><code>{{ rep.rendition }}</code><br><span class="muted">{{ rep.recorded_at or "" }}</span></td>
  <td>{% for f in rep.main_files %}<a href="{{ file_url(f.key) }}">{{ f.name }}</a><br>{% endfor %}
      <details><summary>all {{ rep.files|length }} files</summary>{% for f in rep.files %}<a href="{{ file_url(f.key) }}">{{ f.name }}</a><br>{% endfor %}</details></td>
  <td>{% if rep.run %}{{ run_link(rep.run) }}{% endif %}</td></tr>
{% endfor %}
</tbody>
</table>
{% if o.reports_truncated %}<div class="muted">Only the first objects under reports/ are listed.</div>{% endif %}
{% else %}<p class="muted">No reports in the bucket yet.</p>{% endif %}

<script>
document.getElementById("verify-button").addEventListener("click", async () => {
  const status = document.getElementById("verify-status");
  status.textContent = "verifying…";
  try {
    const resp = await fetch({{ verify_url|tojson }}, {method: "POST", credentials: "same-origin",
                             headers: {"X-Attestly-Action": "verify"}});
    if (!resp.ok) { status.textContent = "verify failed to run: HTTP " + resp.status; return; }
    window.location.reload();
  } catch (err) { status.textContent = "verify failed to run: " + err; }
});
for (const form of document.querySelectorAll("form.release-hold")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const status = form.querySelector(".release-status");
    status.textContent = "releasing…";
    try {
      const resp = await fetch(form.dataset.url, {method: "POST", credentials: "same-origin",
        headers: {"X-Attestly-Action": "release-hold", "Content-Type": "application/json"},
        body: JSON.stringify({reason: form.elements.reason.value})});
      if (!resp.ok) { const b = await resp.json().catch(() => ({})); status.textContent = "refused: " + (b.detail || "HTTP " + resp.status); return; }
      window.location.reload();
    } catch (err) { status.textContent = "release failed: " + err; }
  });
}
</script>
</body>
</html>
"""

_ITEM_ROW = """{% macro item_row(i, kind) -%}
<tr class="item" data-collector="{{ i.collector }}"><td>{{ kind }}</td><td><code>{{ i.collector }}</code><br><span class="muted">{{ i.scope }}</span>{% if i.manual %}<br><span class="manual">{{ i.manual.title }}</span> <span class="muted">attested by {{ i.manual.attested_by }} at {{ i.manual.attested_at }}</span>{% endif %}</td>
<td><span class="badge {{ result_class(i.result) }}">{{ i.result }}</span></td>
<td class="mono">{{ i.period_start }} .. {{ i.period_end }}<br><span title="{{ i.sha256 }}">{{ i.sha256[:16] }}…</span></td>
<td>{% if i.run %}{{ run_link(i.run) }}{% endif %}</td></tr>
{%- endmacro %}
{% macro run_link(r) -%}
{% if r.url %}<a class="run" href="{{ r.url }}">{{ r.dag_id }} / {{ r.run_id }}</a>{% else %}{{ r.dag_id }} / {{ r.run_id }}{% endif %}{% if r.outcome %} <span class="badge {{ result_class(r.outcome) }}">{{ r.outcome }}</span>{% endif %}
{%- endmacro %}
"""


def _environment() -> Environment:
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals["status_label"] = lambda s: STATUS_LABELS.get(s, s)
    env.globals["result_class"] = lambda r: RESULT_CLASSES.get(r, "na")
    return env


def render_page(overview: Overview, *, app_root: str = "/attestly") -> str:
    """The page for ``overview``; ``app_root`` is where the app is mounted (for the verify and file URLs)."""
    env = _environment()
    template = env.from_string(_ITEM_ROW + _TEMPLATE)
    root = app_root.rstrip("/")

    def file_url(key: str) -> str:
        return f"{root}/reports/file?key={quote(key, safe='/')}"

    values: dict[str, Any] = {
        "o": overview,
        "verify_url": f"{root}/api/verify",
        "evidence_url": f"{root}/evidence/add",
        "file_url": file_url,
        "hold_release_url": lambda hold_id: f"{root}/api/holds/{quote(hold_id, safe='')}/release",
    }
    return template.render(**values)
