"""The Evidence view through Airflow's real api-server: the plugin is loaded, its pages require Airflow's
own login (401 without a token, 403 with a bad one), and with a JWT from `POST /auth/token` they show
each control's status for the quarter to date, the latest seals, the last `verify` and the reports, each
linked to the DAG run behind it. When Chromium is installed, a headless browser logged in with the UI's
session cookie opens the view inside the Airflow UI and takes a screenshot."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from attestly.connections import aws_client
from tests.conftest import recreate_database
from tests.integration.test_backfill import airflow_running, api_token
from tests.sysdeps import require_tool

pytestmark = pytest.mark.integration

EVIDENCE_RUN = "scheduled__2026-01-01T00:00:00+00:00"  # any run id: the page links what the ledger says
REPORT_RUN = "manual__2026-01-02T00:00:00+00:00"


def _plant(bucket: str) -> dict[str, Any]:
    """A ledger and bucket with: one control whose every collector passed over the whole quarter to
    date, one failing collector, a run record, a seal, and one report rendition under reports/."""
    from attestly.evidence import AirflowContext, EvidenceItem, Finding
    from attestly.ledger import Ledger
    from attestly.policy import load_policy
    from attestly.recording import record_evidence
    from attestly.reports.model import EVENT_COLLECTORS
    from attestly.signing import signer_from_connection
    from attestly.store import EvidenceStore
    from attestly.ui import quarter_to_date

    policy = load_policy()
    period = quarter_to_date(datetime.now(UTC).date())
    start = datetime.combine(period.start, time(0), tzinfo=UTC)
    end = period.end_dt
    usable = {  # automated controls in scope (a manual one also needs documents to pass)
        cid: set(c.collectors)
        for cid, c in policy.controls.items()
        if c.collectors
        and not c.manual
        and policy.in_scope(c)
        and not set(c.collectors) & set(EVENT_COLLECTORS)
    }
    passing_id = min(usable, key=lambda cid: (len(usable[cid]), cid))
    passing = usable[passing_id]
    failing_id, failing_collector = next(
        (cid, sorted(cols - passing)[0]) for cid, cols in sorted(usable.items()) if cols - passing
    )
    touched = passing | {failing_collector}
    silent_id = next(cid for cid, cols in sorted(usable.items()) if not cols & touched)

    store = EvidenceStore(
        bucket=bucket, s3=aws_client("s3"), retention_days=policy.retention.evidence.retention_days
    )
    ctx = AirflowContext(
        dag_id="evidence_collection", run_id=EVIDENCE_RUN, task_id="collect_auditdb", try_number=1
    )

    def item(collector: str, result: str) -> EvidenceItem:
        findings = (Finding(resource="planted", status=result, detail="planted by test_plugin"),)  # type: ignore[arg-type]
        return EvidenceItem(
            collector=collector,
            controls=tuple(policy.controls_for_collector(collector)),
            period_start=start,
            period_end=end,
            scope={"database": "audit"},
            retroactive=True,
            result=result,  # type: ignore[arg-type]
            findings=findings,
            airflow=ctx,
        )

    with Ledger.connect() as ledger:
        for collector in sorted(passing):
            record_evidence(item(collector, "pass"), store=store, ledger=ledger)
        failed = record_evidence(item(failing_collector, "fail"), store=store, ledger=ledger)
        ledger.append(
            "run",
            {
                "dag_id": "evidence_collection",
                "run_id": EVIDENCE_RUN,
                "run_type": "scheduled",
                "data_interval": {"start": start.isoformat(), "end": end.isoformat()},
                "tasks": [],
                "evidence": [],
                "failed_tasks": [],
                "outcome": "success",
            },
            dedupe_key=f"run:test-plugin:{uuid.uuid4().hex}",
        )
        sealed = ledger.seal(store=store, signer=signer_from_connection())
        assert sealed is not None
        prefix = f"reports/soc2/{period.label}/0123456789abcdef/"
        html = b"<!doctype html><title>SOC 2 index</title><h1>SOC 2</h1>"
        stored = store.put_bytes(
            prefix + "index.html", html, retain_until=store.retain_until_for(end), content_type="text/html"
        )
        packet = store.put_bytes(
            prefix + "attestly-soc2-packet.zip",
            b"PK\x05\x06" + bytes(18),
            retain_until=store.retain_until_for(end),
        )
        ledger.append(
            "report",
            {
                "framework": "soc2",
                "period": period.to_dict(),
                "prefix": prefix,
                "objects": [
                    {
                        "path": "index.html",
                        "key": stored.key,
                        "version_id": stored.version_id,
                        "sha256": stored.sha256,
                    }
                ],
                "packet": {"key": packet.key, "version_id": packet.version_id, "sha256": packet.sha256},
                "airflow": {"dag_id": "control_reports", "run_id": REPORT_RUN},
            },
            dedupe_key=f"report:test-plugin:{uuid.uuid4().hex}",
        )
    return {
        "period": period,
        "passing": passing_id,
        "failing": failing_id,
        "failing_collector": failing_collector,
        "failing_seq": failed["seq"],
        "silent": silent_id,
        "digest": sealed["key"],
        "report_key": stored.key,
        "report_body": html,
    }


@pytest.fixture(scope="module")
def ui(stack: dict[str, str]) -> Iterator[dict[str, Any]]:
    recreate_database("attestly")
    bucket = f"ui-{uuid.uuid4().hex[:10]}"
    aws_client("s3").create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    saved = os.environ.get("ATTESTLY_EVIDENCE_BUCKET")
    os.environ["ATTESTLY_EVIDENCE_BUCKET"] = bucket
    try:
        planted = _plant(bucket)
        with airflow_running({"ATTESTLY_EVIDENCE_BUCKET": bucket}) as info:
            yield {**info, **planted, "bucket": bucket, "token": api_token(info)}
    finally:
        if saved is not None:
            os.environ["ATTESTLY_EVIDENCE_BUCKET"] = saved


def _get(ui: dict[str, Any], path: str, *, token: str | None = None, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(ui["url"] + path, headers=headers, timeout=60, **kw)


def _run_url(ui: dict[str, Any], dag_id: str, run_id: str) -> str:
    return f"{ui['url']}/dags/{dag_id}/runs/{quote(run_id, safe='')}"


def test_the_view_requires_airflow_login(ui: dict[str, Any]) -> None:
    for path in ("/attestly/", "/attestly/api/overview", f"/attestly/reports/file?key={ui['report_key']}"):
        assert _get(ui, path).status_code == 401, path
        assert _get(ui, path, token="not-a-jwt").status_code == 403, path
    anonymous = httpx.post(
        ui["url"] + "/attestly/api/verify", headers={"X-Attestly-Action": "verify"}, timeout=30
    )
    assert anonymous.status_code == 401


def test_the_plugin_is_registered_in_the_ui(ui: dict[str, Any]) -> None:
    resp = _get(ui, "/api/v2/plugins", token=ui["token"])
    assert resp.status_code == 200
    plugin = next(p for p in resp.json()["plugins"] if p["name"] == "attestly")
    assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/attestly"]
    view = plugin["external_views"][0]
    assert (view["name"], view["url_route"], view["href"], view["destination"]) == (
        "Evidence",
        "evidence",
        "attestly/",
        "nav",
    )


def test_overview_shows_status_seals_reports_and_runs(ui: dict[str, Any]) -> None:
    resp = _get(ui, "/attestly/api/overview", token=ui["token"])
    assert resp.status_code == 200, resp.text[:2000]
    data = resp.json()
    assert data["bucket"] == ui["bucket"]
    assert data["period"]["start"] == ui["period"].start.isoformat()
    controls = {c["control_id"]: c for c in data["controls"]}
    assert controls[ui["passing"]]["status"] == "pass"
    assert controls[ui["passing"]]["days"]["effective"] == len(ui["period"].days)
    assert controls[ui["failing"]]["status"] == "fail"
    assert controls[ui["silent"]]["status"] == "no_evidence"
    exceptions = controls[ui["failing"]]["exceptions"]
    assert [(e["collector"], e["seq"]) for e in exceptions] == [(ui["failing_collector"], ui["failing_seq"])]
    evidence_run = _run_url(ui, "evidence_collection", EVIDENCE_RUN)
    assert exceptions[0]["run"]["url"] == evidence_run
    assert all(i["run"]["url"] == evidence_run for i in controls[ui["passing"]]["latest"])

    assert data["seals_total"] == 1
    seal = data["seals"][0]
    assert seal["key"] == ui["digest"] and seal["first_seq"] == 1 and seal["sealed_at"]
    assert [r["url"] for r in seal["runs"]] == [evidence_run]

    [report] = data["reports"]
    assert (report["framework"], report["period"]) == ("soc2", ui["period"].label)
    assert report["run"]["url"] == _run_url(ui, "control_reports", REPORT_RUN)
    assert {f["name"] for f in report["files"]} == {"index.html", "attestly-soc2-packet.zip"}


def test_page_verify_and_report_files(ui: dict[str, Any]) -> None:
    page = _get(ui, "/attestly/", token=ui["token"])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert f'data-control="{ui["passing"]}" data-status="pass"' in html
    assert f'data-control="{ui["failing"]}" data-status="fail"' in html
    assert f'data-control="{ui["silent"]}" data-status="no_evidence"' in html
    assert ui["digest"] in html
    assert f'href="{_run_url(ui, "evidence_collection", EVIDENCE_RUN)}"' in html
    assert f'href="{_run_url(ui, "control_reports", REPORT_RUN)}"' in html
    assert "No verification has been run from this page yet." in html

    # verify: a cross-site form cannot send the header; with it, the bucket is checked and cached.
    url = ui["url"] + "/attestly/api/verify"
    auth = {"Authorization": f"Bearer {ui['token']}"}
    assert httpx.post(url, headers=auth, timeout=60).status_code == 400
    resp = httpx.post(url, headers={**auth, "X-Attestly-Action": "verify"}, timeout=300)
    assert resp.status_code == 200, resp.text[:2000]
    result = resp.json()
    assert result["report"]["ok"] is True, result["summary"]
    assert result["report"]["ledger_checked"] is True
    assert result["report"]["found"]["digests_valid"] == 1
    cached = Path(ui["logs"]).parent / "ui" / "last-verify.json"
    assert json.loads(cached.read_text())["checked_at"] == result["checked_at"]
    html = _get(ui, "/attestly/", token=ui["token"]).text
    assert '<span class="ok">OK</span>' in html and result["checked_at"] in html

    # report files: served from the bucket, sandboxed; nothing outside reports/.
    obj = _get(ui, "/attestly/reports/file", token=ui["token"], params={"key": ui["report_key"]})
    assert obj.status_code == 200 and obj.content == ui["report_body"]
    assert obj.headers["content-security-policy"] == "sandbox"
    assert f'href="/attestly/reports/file?key={ui["report_key"]}"' in html
    for key in (f"objects/{ui['digest']}", "reports/../digests/x.json"):
        assert _get(ui, "/attestly/reports/file", token=ui["token"], params={"key": key}).status_code == 404
    # A newer version written over the stored report (bucket write access is enough) is never served:
    # the page serves the version the ledger recorded; a key the ledger never recorded is not served.
    aws_client("s3").put_object(Bucket=ui["bucket"], Key=ui["report_key"], Body=b"<script>forged</script>")
    again = _get(ui, "/attestly/reports/file", token=ui["token"], params={"key": ui["report_key"]})
    assert again.status_code == 200 and again.content == ui["report_body"]
    stray = ui["report_key"].rsplit("/", 1)[0] + "/stray.html"
    aws_client("s3").put_object(Bucket=ui["bucket"], Key=stray, Body=b"<p>not ledgered</p>")
    assert _get(ui, "/attestly/reports/file", token=ui["token"], params={"key": stray}).status_code == 404


def test_the_view_in_the_airflow_ui(ui: dict[str, Any], tmp_path: Path) -> None:
    """A person's view: headless Chromium logged in (the UI's `_token` cookie, no bearer header) opens
    `/plugin/evidence`; the Airflow UI frames the page, which lists every control. Screenshot under
    tmp_path. Chromium comes from `make system-deps`; without it the test fails under CI."""
    browser = require_tool("chromium", "chromium-browser", packages="chromium", why="the browser check")
    png = tmp_path / "airflow-evidence-view.png"
    count = asyncio.run(_browse(browser, ui["url"], ui["token"], png, tmp_path / "chromium-profile"))
    from attestly.policy import load_policy

    policy = load_policy()
    assert count == sum(1 for c in policy.controls.values() if policy.in_scope(c))
    assert png.stat().st_size > 10_000
    print(f"screenshot: {png}")


async def _browse(browser: str, url: str, token: str, png: Path, profile: Path) -> int:
    """Drive Chromium over the DevTools protocol: set the session cookie, open the view, wait until the
    framed page shows its controls, take a screenshot; returns how many controls the frame lists."""
    import websockets

    proc = subprocess.Popen(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1500,1000",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        active = profile / "DevToolsActivePort"
        for _ in range(300):
            if active.exists() and active.read_text().strip():
                break
            await asyncio.sleep(0.1)
        port = active.read_text().split()[0]
        page = next(t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page")
        async with websockets.connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20) as ws:
            ids = iter(range(1, 10_000))

            async def call(method: str, **params: Any) -> dict[str, Any]:
                mid = next(ids)
                await ws.send(json.dumps({"id": mid, "method": method, "params": params}))
                while True:
                    msg = json.loads(await ws.recv())
                    if msg.get("id") == mid:
                        assert "error" not in msg, msg
                        return dict(msg["result"])

            await call("Network.enable")
            await call("Network.setCookie", name="_token", value=token, url=url)
            await call("Page.navigate", url=f"{url}/plugin/evidence")
            probe = (
                "(() => { const f = document.querySelector('iframe');"
                " const d = f && f.contentDocument;"
                " return d ? d.querySelectorAll('tr[data-control]').length : -1; })()"
            )
            count = -1
            for _ in range(120):
                result = await call("Runtime.evaluate", expression=probe, returnByValue=True)
                count = int(result["result"].get("value", -1))
                if count > 0:
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(1)  # let the frame finish painting
            shot = await call("Page.captureScreenshot", format="png")
            png.write_bytes(base64.b64decode(shot["data"]))
            return count
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_quarter_to_date_and_run_links() -> None:
    """Pure parts of the view (no services): the period and the run links."""
    from datetime import date

    from attestly.ui import quarter_to_date, run_url

    assert (quarter_to_date(date(2026, 11, 22)).start, quarter_to_date(date(2026, 11, 22)).end) == (
        date(2026, 10, 1),
        date(2026, 11, 21),
    )
    first_day = quarter_to_date(date(2026, 4, 1))
    assert (first_day.start, first_day.end) == (date(2026, 4, 1), date(2026, 4, 1))
    assert quarter_to_date(date(2026, 3, 31)).start == date(2026, 1, 1)
    assert run_url(None, "d", "backfill__2026-11-02T00:00:00+00:00") == (
        "/dags/d/runs/backfill__2026-11-02T00%3A00%3A00%2B00%3A00"
    )
    assert run_url("http://x/", "d", "r") == "http://x/dags/d/runs/r"
    assert run_url("http://x", "d", None) is None


def test_page_escapes_ledger_text() -> None:
    """Text from the ledger or the bucket cannot inject markup into the page."""
    from datetime import date

    from attestly.ui import Overview, quarter_to_date, render_page
    from attestly.ui.overview import ControlRow

    evil = '<script>alert(1)</script>"'
    overview = Overview(
        generated_at="2026-11-22T00:00:00Z",
        period=quarter_to_date(date(2026, 11, 22)),
        bucket=evil,
        controls=[
            ControlRow(
                control_id=evil,
                framework="soc2",
                title=evil,
                owner="o@example.com",
                status="no_evidence",
                report_status="no_evidence",
                days={},
                latest=(),
                exceptions=(),
                exceptions_total=0,
                runs=(),
                manual=True,
            )
        ],
        seals=[],
        seals_total=0,
        reports=[],
        reports_truncated=False,
        verify=None,
    )
    from attestly.ui.overview import ItemRow

    overview.controls[0] = replace(
        overview.controls[0],
        latest=(
            ItemRow(
                seq=1,
                collector="manual",
                result="pass",
                period_start="2026-10-01T00:00:00Z",
                period_end="2026-11-01T00:00:00Z",
                scope=evil,
                sha256="0" * 64,
                run=None,
                manual={"title": evil, "attested_by": evil, "attested_at": "2026-11-02T00:00:00Z"},
            ),
        ),
    )
    html = render_page(overview)
    assert "<script>alert(1)</script>" not in html
    assert 'class="add-evidence" href="/attestly/evidence/add?control=%3Cscript%3E' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# ------------------------------------------------------------------------------- manual evidence upload

UPLOAD_CONTROL = "soc2:CC1.4"  # manual: annual security awareness training records
PDF = b"%PDF-1.4\n1 0 obj <</Type /Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n"


def _token_for(ui: dict[str, Any], user: str) -> str:
    passwords = json.loads(Path(ui["passwords_file"]).read_text())
    return api_token({"url": ui["url"], "username": user, "password": passwords[user]})


def _upload(ui: dict[str, Any], token: str, files: list[tuple[str, bytes]], *, header: bool = True,
            period: tuple[str, str] = ("2026-01-01", "2026-06-30"), **fields: str) -> httpx.Response:  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    if header:
        headers["X-Attestly-Action"] = "add-evidence"
    data = {"control": [UPLOAD_CONTROL], "period_from": period[0], "period_to": period[1],
            "title": "2026 H1 training completion", **fields}  # fmt: skip
    return httpx.post(
        ui["url"] + "/attestly/api/evidence",
        headers=headers,
        data=data,
        files=[("file", (name, body, "application/octet-stream")) for name, body in files],
        timeout=120,
    )


def _manual_entries() -> list[Any]:
    from attestly.ledger import Ledger

    with Ledger.connect() as ledger:
        return [e for e in ledger.entries(kind="evidence") if e.body.get("collector") == "manual"]


def test_upload_manual_evidence_from_the_view(ui: dict[str, Any]) -> None:
    """The form records a statement exactly as `attestly evidence add` does, attested by the logged-in
    user; viewers cannot upload; a request without the action header, a file whose content is not what
    its name says, a reversed period and an oversized file are refused with the reason, nothing written."""
    admin = ui["token"]
    viewer = _token_for(ui, "auditor")
    # Reading is allowed to the viewer; the form and the upload are not.
    assert _get(ui, "/attestly/", token=viewer).status_code == 200
    assert _get(ui, "/attestly/evidence/add", token=viewer).status_code == 403
    assert _upload(ui, viewer, [("training.pdf", PDF)]).status_code == 403
    assert _get(ui, "/attestly/evidence/add").status_code == 401

    form = _get(ui, "/attestly/evidence/add", token=admin, params={"control": UPLOAD_CONTROL})
    assert form.status_code == 200
    assert f'<option value="{UPLOAD_CONTROL}" selected>' in form.text
    assert 'name="file" type="file" multiple' in form.text
    page = _get(ui, "/attestly/", token=admin).text
    assert f'href="/attestly/evidence/add?control={quote(UPLOAD_CONTROL, safe="")}"' in page

    before = _manual_entries()
    assert _upload(ui, admin, [("training.pdf", PDF)], header=False).status_code == 400
    disguised = _upload(ui, admin, [("training.pdf", b"<html><script>alert(1)</script></html>")])
    assert disguised.status_code == 400, disguised.text
    assert "training.pdf" in disguised.json()["detail"]
    reversed_period = _upload(ui, admin, [("training.pdf", PDF)], period=("2026-06-30", "2026-01-01"))
    assert reversed_period.status_code == 400
    assert "period to 2026-01-01 is before period from 2026-06-30" in reversed_period.json()["detail"]
    unknown = _upload(ui, admin, [("training.pdf", PDF)], control="soc2:CC99.9")
    assert unknown.status_code == 400 and "soc2:CC99.9" in unknown.json()["detail"]
    too_big = _upload(ui, admin, [("big.txt", b"a" * (25 * 1024 * 1024 + 1))])
    assert too_big.status_code == 400 and "big.txt" in too_big.json()["detail"]
    assert _manual_entries() == before

    body = PDF + b"% " + uuid.uuid4().hex.encode() + b"\n"
    roster = b"employee,completed\ne-1001,2026-03-02\n"
    first = _upload(ui, admin, [("training.pdf", body), ("roster.csv", roster)])
    assert first.status_code == 201, first.text
    rec = first.json()
    assert rec["created"] is True and rec["controls"] == [UPLOAD_CONTROL]
    assert rec["attested_by"] == ui["username"]
    assert sorted(a["name"] for a in rec["attachments"]) == ["roster.csv", "training.pdf"]
    again = _upload(ui, admin, [("training.pdf", body), ("roster.csv", roster)])
    assert again.status_code == 200 and again.json()["created"] is False
    assert again.json()["sha256"] == rec["sha256"]
    [entry] = [e for e in _manual_entries() if e not in before]
    assert entry.body["manual"]["recorded_by"] == f"ui:{ui['username']}"
    # Stored write-once: the attachment's bytes in the bucket are the uploaded ones, under Object Lock.
    s3 = aws_client("s3")
    att = next(a for a in entry.body["attachments"] if a["name"] == "training.pdf")
    obj = s3.get_object(Bucket=ui["bucket"], Key=att["key"], VersionId=att["version_id"])
    assert obj["Body"].read() == body and obj["ObjectLockMode"] == "COMPLIANCE"

    # The view lists it for the control with who attested it; `verify` checks it like any other item.
    data = _get(ui, "/attestly/api/overview", token=admin).json()
    control = next(c for c in data["controls"] if c["control_id"] == UPLOAD_CONTROL)
    manual = [i for i in control["latest"] if i["collector"] == "manual"]
    assert manual and manual[0]["manual"]["attested_by"] == ui["username"]
    verified = httpx.post(
        ui["url"] + "/attestly/api/verify",
        headers={"Authorization": f"Bearer {admin}", "X-Attestly-Action": "verify"},
        timeout=300,
    )
    assert verified.status_code == 200 and verified.json()["report"]["ok"] is True, verified.text[:2000]


def test_accept_an_exception_response_in_the_view(ui: dict[str, Any]) -> None:
    """A writer accepts a response as the logged-in user (``ui:<user>``); the person who responded from
    the CLI cannot accept it here; viewers, requests without the action header and unknown ids are
    refused."""
    from datetime import timedelta

    from attestly.deviations import respond
    from attestly.ledger import Ledger
    from attestly.store import EvidenceStore

    due = datetime.now(UTC).date() + timedelta(days=14)
    common = {"controls": None, "owner": "it-ops@example.com", "root_cause": "planted failure",
              "ticket": "SEC-9", "due": due}  # fmt: skip
    with Ledger.connect() as ledger:
        sha = next(e.body["sha256"] for e in ledger.entries(kind="evidence") if e.seq == ui["failing_seq"])
        mine, _ = respond(ledger=ledger, store=None, item=sha, finding=None, collector=None,
                          responded_by=f"cli:{ui['username']}@build-host", **common)  # fmt: skip
        theirs, _ = respond(ledger=ledger, store=EvidenceStore.from_connection(), item=None, finding="planted",
                            collector=ui["failing_collector"], responded_by="cli:someone-else@laptop", **common)  # fmt: skip
    admin, viewer = ui["token"], _token_for(ui, "auditor")

    def accept(eid: str, token: str | None, *, header: bool = True) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if header:
            headers["X-Attestly-Action"] = "accept-exception"
        return httpx.post(f"{ui['url']}/attestly/api/exceptions/{eid}/accept", headers=headers, timeout=60)

    assert accept(theirs.exception_id, None).status_code == 401
    assert accept(theirs.exception_id, viewer).status_code == 403
    assert accept(theirs.exception_id, admin, header=False).status_code == 400
    assert accept("EXC-0000000000000000", admin).status_code == 404
    own = accept(mine.exception_id, admin)
    assert own.status_code == 409 and "a different person must accept it" in own.json()["detail"]
    ok = accept(theirs.exception_id, admin)
    assert ok.status_code == 201, ok.text
    assert ok.json()["accepted_by"] == f"ui:{ui['username']}" and ok.json()["state"] == "open"
    again = accept(theirs.exception_id, admin)
    assert again.status_code == 200 and again.json()["created"] is False
    with Ledger.connect() as ledger:
        accepted = [e.body for e in ledger.entries(kind="exception_accept")]
    assert [a["exception_id"] for a in accepted] == [theirs.exception_id]


def test_approve_an_erasure_request_in_the_view(ui: dict[str, Any]) -> None:
    """A writer approves an erasure request as the logged-in user; the person who requested it (from the
    CLI, as the same name) cannot; viewers and requests without the action header are refused."""
    from attestly.disposal.erasure import request_erasure
    from attestly.ledger import Ledger

    with Ledger.connect() as ledger:
        own = request_erasure(ledger.conn, ledger, subject_id="p-190019", reason="GDPR Art. 17 (test)",
                              requested_by=f"cli:{ui['username']}@build-host")  # fmt: skip
        other = request_erasure(ledger.conn, ledger, subject_id="p-190020", reason="GDPR Art. 17 (test)",
                                requested_by="cli:privacy-officer@laptop")  # fmt: skip
    admin, viewer = ui["token"], _token_for(ui, "auditor")

    def approve(rid: str, token: str | None, *, header: bool = True) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if header:
            headers["X-Attestly-Action"] = "approve-erasure"
        return httpx.post(f"{ui['url']}/attestly/api/erasure/{rid}/approve", headers=headers, timeout=60)

    assert approve(other.request_id, viewer).status_code == 403
    assert approve(other.request_id, admin, header=False).status_code == 400
    assert approve("erase-000000000000", admin).status_code == 404
    refused = approve(own.request_id, admin)
    assert refused.status_code == 409 and "a different person must" in refused.json()["detail"]
    ok = approve(other.request_id, admin)
    assert ok.status_code == 201, ok.text
    body = ok.json()
    assert body["approved_by"] == f"ui:{ui['username']}" and body["state"] == "approved"
    assert "subject" not in body and len(body["subject_sha256"]) == 64
    assert approve(other.request_id, admin).status_code == 409  # approving twice is refused
    with Ledger.connect() as ledger:
        approvals = [e.body for e in ledger.entries(kind="erasure") if e.body.get("event") == "approved"]
    assert [a["request_id"] for a in approvals] == [other.request_id]


def test_release_a_legal_hold_in_the_view(ui: dict[str, Any]) -> None:
    """Active holds are listed on the page; a writer releases one as the logged-in user, with a reason;
    the person who placed it (from the CLI, as the same name) cannot, nor viewers, nor requests without
    the action header or a reason."""
    from attestly.holds import add_hold, get_hold
    from attestly.ledger import Ledger
    from attestly.runcontext import RunContext

    with RunContext.open(run_id="test-holds") as ctx:
        own, _ = add_hold(ctx, reason="litigation L-19 (test)", source="billing",
                          created_by=f"cli:{ui['username']}@build-host")  # fmt: skip
        other, _ = add_hold(ctx, reason="regulator inquiry R-7 (test)", source="billing",
                            created_by="cli:legal-counsel@laptop")  # fmt: skip
    admin, viewer = ui["token"], _token_for(ui, "auditor")

    def release(hid: str, token: str | None, *, header: bool = True, reason: str | None = "case closed") -> httpx.Response:  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if header:
            headers["X-Attestly-Action"] = "release-hold"
        body = {} if reason is None else {"reason": reason}
        return httpx.post(
            f"{ui['url']}/attestly/api/holds/{hid}/release", headers=headers, json=body, timeout=120
        )

    page = _get(ui, "/attestly/", token=admin)
    assert page.status_code == 200
    assert f'data-hold="{own.hold_id}"' in page.text and f'data-hold="{other.hold_id}"' in page.text
    assert release(other.hold_id, viewer).status_code == 403
    assert release(other.hold_id, admin, header=False).status_code == 400
    no_reason = release(other.hold_id, admin, reason=None)
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["detail"]
    assert release(other.hold_id, admin, reason="   ").status_code == 400
    assert release("hold-000000000000", admin).status_code == 404
    refused = release(own.hold_id, admin)
    assert refused.status_code == 409 and "a different person must" in refused.json()["detail"]
    ok = release(other.hold_id, admin)
    assert ok.status_code == 201, ok.text
    body = ok.json()
    assert body["released_by"] == f"ui:{ui['username']}" and body["active"] is False
    assert body["release_reason"] == "case closed"
    assert release(other.hold_id, admin).status_code == 409  # already released
    with RunContext.open(run_id="test-holds") as ctx:
        assert get_hold(ctx.db, own.hold_id).active
    page = _get(ui, "/attestly/", token=admin)
    assert f'data-hold="{own.hold_id}"' in page.text and f'data-hold="{other.hold_id}"' not in page.text
    with Ledger.connect() as ledger:
        releases = [e.body for e in ledger.entries(kind="hold_release")]
    assert [(r["hold_id"], r["released_by"]) for r in releases] == [(other.hold_id, f"ui:{ui['username']}")]
