"""Reports on the real local stack: a seeded quarter (synthetic evidence per day, planted failures, days
without evidence, not-applicable days, workflow runs) rendered, checked, stored, re-rendered, exported to
OSCAL, rendered by the CLI and by `airflow dags test control_reports`, and e-mailed to the SMTP sink."""

from __future__ import annotations

import argparse
import base64
import csv
import email
import email.policy
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from attestly.ledger import Ledger
from attestly.reports import Bundle, ReportRequest, publish, render_reports
from tests.conftest import recreate_database
from tests.integration.test_reports_seed import (
    DATA_SECRET,
    EXPECTED,
    PAN,
    PLANTED,
    QUARTER,
    SSN,
    Seeded,
    seed_quarter,
)
from tests.sysdeps import require_tool

pytestmark = pytest.mark.integration
BASE_URL = "http://airflow.example:8080"


def _render(frameworks: list[str], formats: tuple[str, ...] = ("html", "pdf", "json")) -> list[Bundle]:
    from attestly.signing import signer_from_connection
    from attestly.store import EvidenceStore

    signer = signer_from_connection()
    with Ledger.connect() as ledger:
        return render_reports(
            requests=[ReportRequest(framework=f, period=QUARTER, formats=formats) for f in frameworks],
            ledger=ledger,
            store=EvidenceStore.from_connection(),
            public_key_pem=signer.public_key_pem(),
            airflow_base_url=BASE_URL,
            signer=signer,
        )


@pytest.fixture(scope="module")
def quarter(stack: dict[str, str]) -> Iterator[Seeded]:
    """The seeded quarter, in a fresh ledger and a bucket of its own. Afterwards the ledger is re-created
    empty: its entries (the shipped policy's among them) name objects in this module's bucket, which the
    next module on this stack does not use (under xdist any module may follow this one)."""
    saved = os.environ.get("ATTESTLY_EVIDENCE_BUCKET")
    try:
        yield seed_quarter()
    finally:
        if saved is None:
            os.environ.pop("ATTESTLY_EVIDENCE_BUCKET", None)
        else:
            os.environ["ATTESTLY_EVIDENCE_BUCKET"] = saved
        recreate_database("attestly")


@pytest.fixture(scope="module")
def bundles(quarter: Seeded) -> dict[str, Bundle]:
    return {b.framework: b for b in _render(["soc2", "hipaa", "pci"])}


def _report(bundles: dict[str, Bundle], control_id: str) -> dict[str, Any]:
    framework = control_id.split(":", maxsplit=1)[0]
    for r in bundles[framework].reports:
        if r["control"]["id"] == control_id:
            return r
    raise KeyError(control_id)


def test_statuses_match_what_was_planted(bundles: dict[str, Bundle]) -> None:
    statuses = {cid: st for b in bundles.values() for cid, st in b.statuses.items()}
    assert {cid: statuses[cid] for cid in EXPECTED} == EXPECTED
    from attestly.policy import load_policy

    policy = load_policy()
    assert len(statuses) == len(policy.controls) == 380  # the whole catalog: 61 SOC 2, 69 HIPAA, 250 PCI DSS
    soc2 = bundles["soc2"].index
    counted = Counter(st for cid, st in statuses.items() if cid.startswith("soc2:"))
    assert soc2["status_counts"] == {s: counted.get(s, 0) for s in soc2["status_counts"]}
    # Privacy and processing integrity are outside the shipped policy's SOC 2 scope: 5 PI1 + 18 P criteria.
    assert counted["not_in_scope"] == 23 and sum(counted.values()) == 61
    assert {statuses[c] for c in ("soc2:PI1.1", "soc2:P1.1", "soc2:P8.1")} == {"not_in_scope"}
    assert soc2["evidenced_by_counts"] == {"automated": 11, "manual": 43, "both": 7}
    # The index lists controls by status: exceptions, then no evidence, effective, not in scope.
    order = ["exceptions", "no_evidence", "effective", "not_in_scope"]
    listed = [order.index(c["status"]) for c in soc2["controls"]]
    assert listed == sorted(listed)


def test_manual_evidence_in_the_reports(bundles: dict[str, Bundle]) -> None:
    """Manual controls: statements listed with who attested them and when; an overdue control is no
    evidence for exactly its overdue days; a statement with an exception is an exception."""
    overdue = _report(bundles, PLANTED["manual_overdue"])
    manual = overdue["manual_evidence"]
    assert manual["cadence"] == "annual" and manual["requested"]
    (st,) = manual["statements"]
    assert (st["title"], st["attested_by"], st["covers"]) == (
        "2025 board oversight minutes",
        "Dana Reyes, CISO",
        "2025-01-01..2025-02-14",
    )
    assert st["current_until"] == "2026-02-15" and st["files"][0]["name"] == "board-2025.pdf"
    assert manual["overdue_days"] == "2026-02-16..2026-03-31"
    assert overdue["day_counts"]["no_evidence"] == manual["overdue_day_count"] == 44
    assert overdue["day_counts"]["effective"] == 46
    html = bundles["soc2"].files["controls/soc2_CC1.1.html"].decode()
    assert "2025 board oversight minutes" in html and "Dana Reyes, CISO" in html
    assert "2026-02-16..2026-03-31" in html

    exception = _report(bundles, PLANTED["manual_exception"])
    (exc,) = exception["exceptions"]
    assert "3 of 41 employees" in exc["detail"] and exc["collector"] == "manual"
    pack = _report(bundles, "soc2:CC1.2")
    assert pack["status"] == "effective" and pack["manual_evidence"]["statements"][0]["title"].startswith(
        "Q1 2026"
    )
    assert pack["control"]["evidenced_by"] == "manual"
    restore = _report(bundles, "soc2:A1.3")
    assert restore["control"]["evidenced_by"] == "both" and restore["status"] == "effective"
    assert restore["day_counts"]["effective"] == 90


def test_exceptions_name_days_resources_and_findings(bundles: dict[str, Bundle]) -> None:
    r = _report(bundles, "pci:8.4.2")
    assert r["day_counts"]["exception"] == 3
    (exc,) = r["exceptions"]
    assert exc["resource"] == "iam:111111111111:user/alice"
    assert exc["detail"] == "console password without MFA"
    assert exc["days"] == [d.isoformat() for d in PLANTED["mfa_fail_days"]]
    assert exc["day_ranges"] == "2026-01-10..2026-01-12"
    assert len(exc["evidence"]) == 3  # one failing item per day; bob's passing finding is not an exception

    quality = _report(bundles, "soc2:CC7.2")
    (q,) = quality["exceptions"]
    assert (q["collector"], q["resource"], q["days"]) == (
        "quality.audit_log",
        "sequence_gaps",
        [PLANTED["quality_fail_day"].isoformat()],
    )
    assert len(quality["activity"]["quality.audit_log"]["items"]) == 90

    disposal = _report(bundles, "hipaa:164.310(d)(2)(i)")
    (d,) = disposal["exceptions"]
    assert d["days"] == [PLANTED["disposal_failed_run_day"].isoformat()]
    assert d["status"] == "error" and "destroy_keys" in d["detail"]
    assert d["run_urls"] == [
        f"{BASE_URL}/dags/key_disposal/runs/scheduled__2026-03-01T00%3A00%3A00%2B00%3A00"
    ]
    assert disposal["activity"]["disposal.certificate"]["quiet_day_count"] == 89

    backup = _report(bundles, "soc2:A1.2")
    archive = backup["activity"]["archive.manifest"]
    assert [i["date"] for i in archive["items"]] == [PLANTED["archive_day"].isoformat()]
    assert "41000 rows archived" in archive["items"][0]["details"][0]["detail"]
    assert backup["status"] == "effective" and backup["day_counts"]["effective"] == 90


def test_days_without_evidence_are_never_effective(bundles: dict[str, Bundle]) -> None:
    tls = _report(bundles, "hipaa:164.312(e)(1)")
    assert tls["status"] == "no_evidence"
    assert tls["no_evidence_days"] == "2026-02-09..2026-02-10"
    assert tls["missing"] == [{"collector": "s3.tls_only", "days": "2026-02-09..2026-02-10", "day_count": 2}]
    assert tls["day_counts"] == {"effective": 88, "exception": 0, "no_evidence": 2, "not_assessed": 0}
    kms = _report(bundles, "pci:3.5.1")
    assert kms["status"] == "no_evidence"
    assert kms["not_assessed_days"] == "2026-01-01..2026-01-05"
    assert kms["day_counts"]["not_assessed"] == 5 and kms["day_counts"]["effective"] == 85
    assert "exceptions > no evidence > effective" in kms["status_rule"]


def test_evidence_items_link_runs_and_digests_cover_them(bundles: dict[str, Bundle], quarter: Seeded) -> None:
    r = _report(bundles, "pci:8.4.2")
    assert len(r["evidence"]) == 180
    first = r["evidence"][0]
    assert first["run_url"] == (
        f"{BASE_URL}/dags/evidence_collection/runs/scheduled__2026-01-01T00%3A00%3A00%2B00%3A00"
    )
    assert len(first["sha256"]) == 64 and first["key"] == f"objects/sha256/{first['sha256']}.json"
    assert r["digests"] and r["unsealed_entries"] == []
    covered = {s for d in r["digests"] for s in range(d["first_seq"], d["last_seq"] + 1)}
    assert {e["seq"] for e in r["evidence"]} <= covered
    assert all(d["time_range"]["start"] and d["key"].startswith("digests/") for d in r["digests"])


def _page_has_ink(png: Path) -> bool:
    from PIL import Image

    with Image.open(png) as img:
        lo = img.convert("L").getextrema()[0]
    assert isinstance(lo, int | float)
    return lo < 200


def test_control_reports_say_who_triggered_each_run(bundles: dict[str, Bundle]) -> None:
    """The runs behind a control's evidence are listed with who started them (the scheduler, the Airflow
    user who triggered one, or "not recorded" for older records), in the report and in OSCAL."""
    collected = _report(bundles, "pci:8.4.2")
    runs = collected["runs"]
    assert {e["run_url"] for e in collected["evidence"]} <= {r["run_url"] for r in runs}
    assert {r["triggered_by"] for r in runs if r["dag_id"] == "evidence_collection"} == {"scheduler"}
    disposal = _report(bundles, "hipaa:164.310(d)(2)(i)")
    who = {r["run_id"]: r["triggered_by"] for r in disposal["runs"] if r["dag_id"] == "key_disposal"}
    day = PLANTED["disposal_failed_run_day"]
    assert who.pop(f"scheduled__{day.isoformat()}T00:00:00+00:00") == PLANTED["disposal_rerun_by"]
    assert set(who.values()) == {"scheduler"}
    html = bundles["hipaa"].files[f"controls/{disposal['control']['slug']}.html"].decode()
    assert "Triggered by" in html and PLANTED["disposal_rerun_by"] in html
    oscal = json.loads(bundles["hipaa"].files["oscal/assessment-results.json"])["assessment-results"]
    props = [
        p["value"]
        for o in oscal["results"][0]["observations"]
        if any(
            p["name"] == "attestly-control-id" and p["value"] == "hipaa:164.310(d)(2)(i)" for p in o["props"]
        )
        for p in o["props"]
        if p["name"] == "run-triggered-by"
    ]
    assert props == [PLANTED["disposal_rerun_by"], "scheduler"]


def test_every_pdf_renders_to_non_empty_pages(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    pdftoppm = require_tool("pdftoppm", packages="poppler-utils", why="renders the PDF pages to check them")
    count = 0
    for b in bundles.values():
        for path, body in b.files.items():
            if not path.endswith(".pdf"):
                continue
            out = tmp_path / b.framework / path.replace("/", "_")
            out.parent.mkdir(parents=True, exist_ok=True)
            pdf = out.with_suffix(".pdf")
            pdf.write_bytes(body)
            subprocess.run([pdftoppm, "-r", "12", "-png", str(pdf), str(out)], check=True, timeout=120)
            pages = sorted(out.parent.glob(out.name + "*.png"))
            assert pages, f"{b.framework}/{path} rendered no page"
            assert all(_page_has_ink(p) for p in pages), f"{b.framework}/{path} has a blank page"
            count += 1
    assert count == sum(len(b.reports) for b in bundles.values()) + 3


def _texts(b: Bundle, tmp_path: Path) -> dict[str, str]:
    out = {}
    for path, body in b.files.items():
        if path.endswith(".pdf"):
            f = tmp_path / "pdf.pdf"
            f.write_bytes(body)
            out[path] = subprocess.run(
                ["pdftotext", str(f), "-"], capture_output=True, text=True, check=True
            ).stdout
        else:
            out[path] = body.decode("utf-8", errors="replace")
    return out


def test_no_phi_or_secret_reaches_any_report(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    hipaa = _report(bundles, "hipaa:164.312(a)(2)(i)")
    (exc,) = hipaa["exceptions"]
    assert exc["detail"].startswith("2 PHI reads without an actor; note: patient [redacted] card [redacted]")
    for b in bundles.values():
        for path, text in _texts(b, tmp_path).items():
            for planted in (SSN, PAN, DATA_SECRET, "4111111111111111"):
                assert planted not in text, f"{b.framework}/{path} shows {planted!r}"
            if path.endswith(".html"):
                assert "<script>" not in text, f"{b.framework}/{path} renders markup from evidence"
    html = bundles["hipaa"].files["controls/hipaa_164.312-a-2-i.html"].decode()
    assert "&lt;script&gt;x&lt;/script&gt;" in html


def test_packet_holds_manifest_digests_key_and_verify_page(
    bundles: dict[str, Bundle], quarter: Seeded
) -> None:
    b = bundles["pci"]
    with zipfile.ZipFile(io.BytesIO(b.packet_zip())) as zf:
        names = zf.namelist()
        root = b.packet_name.removesuffix(".zip")
        assert sorted(n.removeprefix(root + "/") for n in names) == sorted({*b.files, *b.objects})
        files = {n.removeprefix(root + "/"): zf.read(n) for n in names}
    assert files["public-key.pem"] == quarter.public_pem
    manifest = json.loads(files["evidence-manifest.json"])
    rows = list(csv.DictReader(io.StringIO(files["evidence-manifest.csv"].decode())))
    assert len(manifest) == len(rows) == b.index["evidence_count"] > 0
    assert set(rows[0]) == {
        "key",
        "version_id",
        "sha256",
        "collector",
        "date",
        "controls",
        "result",
        "ledger_seq",
    }
    assert {m["sha256"] for m in manifest} == {r["sha256"] for r in rows}
    # Every evidence object the manifest lists is in the packet itself, with its ledgered hash.
    for m in manifest:
        assert hashlib.sha256(files[m["key"]]).hexdigest() == m["sha256"], m["key"]
    # The policy in force, named by every item, is in the packet too.
    (policy,) = [p for p in files if p.startswith("policy/sha256/")]
    sha = policy.removeprefix("policy/sha256/").removesuffix(".json")
    assert hashlib.sha256(files[policy]).hexdigest() == sha
    assert json.loads(files[policy])["schema"] == "attestly.policy/v1"
    assert {
        json.loads(files[m["key"]])["policy"]["sha256"] for m in manifest if m["collector"] != "manual"
    } == {sha}
    listed = [line.split("  ", 1)[1] for line in files["SHA256SUMS"].decode().splitlines()]
    assert sorted(listed) == sorted(p for p in files if not p.startswith("SHA256SUMS"))
    for line in files["SHA256SUMS"].decode().splitlines():
        digest, path = line.split("  ", 1)
        assert hashlib.sha256(files[path]).hexdigest() == digest
    # SHA256SUMS is signed by the ledger's signing key; the fingerprint is printed for out-of-band checks.
    from attestly.signing import fingerprint, verify_signature

    sig = json.loads(files["SHA256SUMS.sig"])
    assert sig["signed"] == "SHA256SUMS" and sig["public_key_fingerprint"] == fingerprint(quarter.public_pem)
    assert verify_signature(
        quarter.public_pem, sig["algorithm"], files["SHA256SUMS"], base64.b64decode(sig["signature"])
    )
    assert fingerprint(quarter.public_pem) in files["VERIFY.md"].decode()
    assert fingerprint(quarter.public_pem) in files["index.html"].decode()
    assert [p for p in files if p.startswith("digests/")] and "oscal/assessment-results.json" in files
    verify = files["VERIFY.md"].decode()
    command = f"attestly verify --bucket {quarter.bucket} --public-key public-key.pem --from 2026-01-01 --to 2026-03-31"
    assert command in verify


def test_the_verify_command_of_the_packet_passes(
    bundles: dict[str, Bundle], quarter: Seeded, tmp_path: Path
) -> None:
    (tmp_path / "public-key.pem").write_bytes(bundles["pci"].files["public-key.pem"])
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "attestly.cli",
            "verify",
            "--bucket",
            quarter.bucket,
            "--public-key",
            "public-key.pem",
            "--from",
            "2026-01-01",
            "--to",
            "2026-03-31",
            "--json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    found = json.loads(run.stdout)["found"]
    # Every item of the quarter but the archive manifest (its own period is 2024-11), and the manual
    # statements covering days of the quarter (the overdue control's covers 2025).
    expected = quarter.items - 1 + quarter.manual_in_quarter
    assert found["evidence_objects_verified"] == found["evidence_objects"] == expected


def test_the_packets_own_node_verifier_agrees_and_checks_the_packet_offline(
    bundles: dict[str, Bundle], quarter: Seeded, tmp_path: Path
) -> None:
    """The packet's `verify.mjs` (Node.js, standard library only) reaches the verdict of `attestly verify`
    on the bucket, and verifies the packet alone; a packet file or manifest row changed is caught."""
    from tests.integration.test_verify_twin import _node_env
    from tests.sysdeps import require_tool

    node = require_tool("node", packages="nodejs", why="the packet's independent verifier")
    b = bundles["pci"]
    for path in ("verify.mjs", "public-key.pem"):
        (tmp_path / path).write_bytes(b.files[path])
    args = [
        "--bucket",
        quarter.bucket,
        "--public-key",
        "public-key.pem",
        "--from",
        "2026-01-01",
        "--to",
        "2026-03-31",
    ]
    py = subprocess.run(
        [sys.executable, "-m", "attestly.cli", "verify", *args, "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    js = subprocess.run(
        [node, "verify.mjs", *args, "--json"],
        cwd=tmp_path,
        env=_node_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert py.returncode == js.returncode == 0, js.stderr[-2000:]
    assert json.loads(js.stdout)["found"] == json.loads(py.stdout)["found"]

    packet = tmp_path / b.packet_name
    packet.write_bytes(b.packet_zip())
    run = subprocess.run(
        [node, "verify.mjs", "--packet", str(packet), "--public-key", "public-key.pem", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    report = json.loads(run.stdout)
    assert report["found"]["evidence_objects_verified"] == b.index["evidence_count"] > 0
    assert report["found"]["digests_valid"] == report["found"]["digests"] > 0
    assert report["sha256sums_signed"] is True
    assert report["found"]["objects_by_kind"]["policy"] == {"requested": 1, "verified": 1}

    # Tampered: a report changed after the fact, and a manifest row pointing at another object.
    root = tmp_path / "unpacked"
    with zipfile.ZipFile(packet) as zf:
        zf.extractall(root)
    (folder,) = root.iterdir()
    index = folder / "index.json"
    index.write_bytes(index.read_bytes().replace(b'"fail"', b'"pass"', 1) + b" ")
    manifest = json.loads((folder / "evidence-manifest.json").read_text())
    manifest[0]["sha256"] = "0" * 64
    (folder / "evidence-manifest.json").write_text(json.dumps(manifest))
    (folder / manifest[1]["key"]).unlink()  # an evidence object left out of the packet
    sums = folder / "SHA256SUMS"  # SHA256SUMS re-written to match: its signature no longer verifies
    sums.write_bytes(sums.read_bytes().replace(b"  index.json\n", b"  index.jsonx\n"))
    run = subprocess.run(
        [node, "verify.mjs", "--packet", str(folder), "--public-key", "public-key.pem", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert run.returncode == 1, run.stderr[-2000:]
    problems = {(p["kind"], p["key"]) for p in json.loads(run.stdout)["problems"]}
    assert ("packet_altered", "index.json") in problems
    assert ("packet_altered", "evidence-manifest.json") in problems
    assert ("altered", manifest[0]["key"]) in problems
    assert ("missing", manifest[1]["key"]) in problems
    assert ("bad_signature", "SHA256SUMS.sig") in problems


def _trestle() -> Path | None:
    for candidate in (
        Path(sys.executable).with_name("trestle"),
        Path(__file__).resolve().parents[2] / ".venv-trestle" / "bin" / "trestle",
    ):
        if candidate.exists():
            return candidate
    return None


def test_reports_and_oscal_show_observation_time_method_and_population(bundles: dict[str, Bundle]) -> None:
    """The period an item is filed under and when it was really observed are two things, in the reports
    and in OSCAL (never the period's end as `collected`); so are what was enumerated, how, and the
    method and policy."""
    b = bundles["pci"]
    oscal = json.loads(b.files["oscal/assessment-results.json"])["assessment-results"]["results"][0]
    by_control = {
        next(p["value"] for p in o["props"] if p["name"] == "attestly-control-id"): o
        for o in oscal["observations"]
    }
    checked = 0
    for r in b.reports:
        if r["status"] == "not_in_scope" or not r["evidence"]:
            continue
        observed = [e["observed_at"] for e in r["evidence"] if e["observed_at"]]
        assert observed, r["control"]["id"]
        obs = by_control[r["control"]["id"]]
        assert (
            obs["collected"]
            == max(observed).replace("Z", "+00:00")
            != f"{QUARTER.end.isoformat()}T23:59:59+00:00"
        )
        props = {p["name"]: p["value"] for p in obs["props"]}
        assert props["observed-last"] == max(observed)
        assert "policy-sha256" in props  # manual statements name the policy in force too
        assert r["policies"] == sorted({e["policy"] for e in r["evidence"]}) and all(r["policies"])
        for e in r["evidence"]:
            if e["collector"] == "manual":
                assert e["policy"] and len(e["policy"]) == 64
                continue
            # Observed after the day it is filed under (an observation of state goes on counting for the
            # days after it, so `date` can be a range that ends long after it was observed).
            assert e["observed_at"] > e["first_day"], (e["collector"], e["date"])
            assert e["population"]["what"] and e["population"]["how"] and e["population"]["size"] is not None
            assert e["method"]["collector"] == e["collector"] and e["method"]["version"] == "0.1.0"
            assert e["policy"] and len(e["policy"]) == 64
        prov = {p["collector"]: p for p in r["provenance"]}
        assert set(prov) == {e["collector"] for e in r["evidence"]}
        checked += 1
    assert checked
    slug = next(
        r["control"]["slug"] for r in b.reports if any(e["collector"] != "manual" for e in r["evidence"])
    )
    html = b.files[f"controls/{slug}.html"].decode()
    assert "How the evidence was produced" in html and "the seeded estate" in html


def test_trestle_validates_the_oscal_assessment_results(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    trestle = _trestle()
    assert trestle is not None, "compliance-trestle is pinned in requirements.txt: run `make setup`"
    workspace = tmp_path / "trestle"
    workspace.mkdir()
    subprocess.run([str(trestle), "init"], cwd=workspace, check=True, capture_output=True, timeout=120)
    for fw, b in bundles.items():
        src = tmp_path / f"{fw}.json"
        src.write_bytes(b.files["oscal/assessment-results.json"])
        doc = json.loads(src.read_bytes())
        results = doc["assessment-results"]["results"][0]
        assert len(results["findings"]) == sum(1 for r in b.reports if r["status"] != "not_in_scope")
        imported = subprocess.run(
            [str(trestle), "import", "-f", str(src), "-o", f"{fw}-2026-q1"],
            cwd=workspace,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert imported.returncode == 0, imported.stdout + imported.stderr
        target = workspace / "assessment-results" / f"{fw}-2026-q1" / "assessment-results.json"
        valid = subprocess.run(
            [str(trestle), "validate", "-f", str(target)],
            cwd=workspace,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert valid.returncode == 0 and "VALID" in valid.stdout, valid.stdout + valid.stderr
    pci = json.loads(bundles["pci"].files["oscal/assessment-results.json"])
    states = {
        f["target"]["target-id"]: f["target"]["status"]["state"]
        for f in pci["assessment-results"]["results"][0]["findings"]
    }
    assert states["pci-8.4.2"] == "not-satisfied" and states["pci-10.5.1"] == "satisfied"


def test_publish_is_create_only_and_idempotent(bundles: dict[str, Bundle]) -> None:
    from attestly.store import EvidenceStore

    store = EvidenceStore.from_connection()
    b = bundles["pci"]
    with Ledger.connect() as ledger:
        first = publish(b, store=store, ledger=ledger)
        again = publish(b, store=store, ledger=ledger)
        reports = [e for e in ledger.entries(kind="report") if e.body.get("rendition") == b.rendition]
    assert first["prefix"] == f"reports/pci/2026-Q1/{b.rendition[:16]}/"
    assert again["created"] is False and again["objects_created"] == 0
    assert again["ledger_seq"] == first["ledger_seq"] and len(reports) == 1
    packet = store.get_bytes(first["packet"]["key"], first["packet"]["version_id"])
    assert packet == b.packet_zip()
    head = store.s3.head_object(Bucket=store.bucket, Key=first["packet"]["key"])
    assert head["ObjectLockMode"] == "COMPLIANCE"


def test_a_past_quarter_re_rendered_later_is_identical(bundles: dict[str, Bundle]) -> None:
    """Later evidence, later digests, later reports and a later clock do not change a past quarter's files."""
    from attestly.evidence import EvidenceItem, Finding
    from attestly.recording import record_evidence
    from attestly.signing import signer_from_connection
    from attestly.store import EvidenceStore

    store = EvidenceStore.from_connection()
    with Ledger.connect() as ledger:
        for n in range(3):
            day = datetime(2026, 4, 1, tzinfo=UTC) + timedelta(days=n)
            item = EvidenceItem(
                collector="iam.root_account",
                controls=("pci:8.4.2", "soc2:CC6.1"),
                period_start=day,
                period_end=day + timedelta(days=1),
                scope={"account": "111111111111", "region": "global"},
                retroactive=False,
                result="fail",
                findings=(Finding("iam:111111111111:root", "fail", "root has access keys"),),
            )
            record_evidence(item, store=store, ledger=ledger)
        assert ledger.seal(store=store, signer=signer_from_connection()) is not None
    before = bundles["soc2"]  # any framework shows it; SOC 2 (61 controls) keeps the three renders short
    # The clock at later dates (the first rendition was made "now"): quarter end + 1 day, + 1 month,
    # + 1 year. Nothing in the files may depend on when they were made — PDFs included, whose font
    # subsets carry a timestamp unless HarfBuzz subsets them (render.require_reproducible_pdf_engine).
    import time_machine

    quarter_end = datetime(2026, 3, 31, 23, 59, tzinfo=UTC)
    for later in (timedelta(days=1), timedelta(days=31), timedelta(days=366)):
        with time_machine.travel(quarter_end + later, tick=True):
            (again,) = _render(["soc2"])
        assert again.rendition == before.rendition, f"re-rendered at quarter end + {later}"
        assert again.files == before.files  # byte-identical: HTML, PDF, JSON, PNG charts, OSCAL, manifest
        assert again.packet_zip() == before.packet_zip()


def _cli(argv: list[str]) -> int:
    from attestly.reports.cli import register

    parser = argparse.ArgumentParser(prog="attestly")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_renders_a_period_and_names_bad_values(
    bundles: dict[str, Bundle], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = _cli(
        [
            "report",
            "render",
            "--framework",
            "pci",
            "--from",
            "2026-01-01",
            "--to",
            "2026-03-31",
            "--out",
            str(out),
            "--formats",
            "json",
            "--json",
        ]
    )
    assert code == 1  # rendered; some controls have exceptions
    summary = json.loads(capsys.readouterr().out)
    assert summary[0]["statuses"]["pci:10.5.1"] == "effective"
    target = out / "pci" / "2026-Q1"
    assert (target / "controls" / "pci_8.4.2.json").is_file()
    assert (target / "attestly-pci-2026-Q1-packet.zip").is_file()
    assert not list(target.glob("controls/*.pdf"))
    ok = _cli(
        [
            "report",
            "render",
            "--store",
            "--framework",
            "pci",
            "--control",
            "pci:10.5.1",
            "--from",
            "2026-01-01",
            "--to",
            "2026-03-31",
            "--out",
            str(out / "one"),
            "--formats",
            "json",
        ]
    )
    assert ok == 0
    assert "stored under s3://" in capsys.readouterr().out
    with Ledger.connect() as ledger:
        one = [
            e.body
            for e in ledger.entries(kind="report")
            if e.body.get("event") == "stored" and list(e.body["statuses"]) == ["pci:10.5.1"]
        ]
    assert len(one) == 1 and one[0]["airflow"] is None
    for argv, named in (
        (["--framework", "iso27001", "--from", "2026-01-01", "--to", "2026-03-31"], "'iso27001'"),
        (["--framework", "pci", "--from", "2026-02-30", "--to", "2026-03-31"], "'2026-02-30'"),
        (["--framework", "pci", "--from", "2026-03-01", "--to", "2026-01-31"], "2026-01-31"),
        (
            ["--framework", "pci", "--control", "pci:99.9", "--from", "2026-01-01", "--to", "2026-03-31"],
            "'pci:99.9'",
        ),
        (["--framework", "pci", "--formats", "docx", "--from", "2026-01-01", "--to", "2026-03-31"], "'docx'"),
    ):
        assert _cli(["report", "render", *argv, "--out", str(out / "bad")]) == 2
        assert named in capsys.readouterr().err


def _dags_test(
    logical: date, conf: dict[str, Any], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    airflow = str(Path(sys.executable).with_name("airflow"))
    dag_file = Path(__file__).resolve().parents[2] / "dags" / "control_reports.py"
    return subprocess.run(
        [
            airflow,
            "dags",
            "test",
            "control_reports",
            logical.isoformat(),
            "-f",
            str(dag_file),
            "-c",
            json.dumps(conf),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "ATTESTLY_RETRY_DELAY_SECONDS": "1", **(env or {})},
        check=False,
        timeout=900,
    )


def _mail_dir() -> Path:
    from attestly_dev.stack import core

    return core.paths().mail


def test_dag_renders_stores_and_emails_the_quarter(bundles: dict[str, Bundle], quarter: Seeded) -> None:
    from attestly.store import EvidenceStore

    before = set(_mail_dir().glob("*.eml"))
    # SOC 2 and PCI DSS: one packet small enough to attach, one linked instead (HIPAA adds only time).
    run = _dags_test(date(2026, 4, 1), {"recipients": ["auditor@example.com"], "frameworks": ["soc2", "pci"]})
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]

    with Ledger.connect() as ledger:
        entries = [e.body for e in ledger.entries(kind="report")]
        runs = [e.body for e in ledger.entries(kind="run") if e.body["dag_id"] == "control_reports"]
    stored = {
        b["framework"]: b for b in entries if b.get("event") == "stored" and b["period"]["label"] == "2026-Q1"
    }
    emailed = {b["framework"]: b for b in entries if b.get("event") == "emailed"}
    assert set(stored) == set(emailed) == {"soc2", "pci"}
    assert runs and runs[-1]["outcome"] == "success"
    # The DAG rendered what the library renders (same ledger, same period; only the base URL differs).
    assert stored["pci"]["statuses"] == bundles["pci"].statuses

    messages = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in set(_mail_dir().glob("*.eml")) - before
    ]
    reports = [m for m in messages if "control reports 2026-Q1" in str(m["Subject"])]
    assert len(reports) == 2
    store = EvidenceStore.from_connection()
    branches: set[bool] = set()
    for msg in reports:
        fw = next(f for f in ("soc2", "pci") if f"attestly-{f}-" in msg.as_string())
        assert "auditor@example.com" in str(msg["To"]) and "security@example.com" in str(msg["To"])
        assert str(msg["Message-ID"]) == emailed[fw]["message_id"]
        body = msg.get_body(preferencelist=("html",))
        assert body is not None and "Top exceptions" in body.get_content()
        # The key's fingerprint for out-of-band confirmation, and the digest sealing the reports' own entry.
        assert bundles["pci"].index["public_key_fingerprint"] in body.get_content()
        assert (
            stored[fw]["packet"]["sha256"] in body.get_content()
            and "sealed by <code>digests/" in body.get_content()
        )
        attached: dict[str, bytes] = {}
        for part in msg.iter_attachments():
            name, content = part.get_filename(), part.get_payload(decode=True)
            assert isinstance(name, str) and isinstance(content, bytes)
            attached[name] = content
        objects = {o["path"]: o for o in stored[fw]["objects"]}
        expected = {
            f"attestly-{fw}-2026-Q1-index.pdf": objects["index.pdf"],
            f"attestly-{fw}-2026-Q1-packet.zip": stored[fw]["packet"],
        }
        # Attached while the total stays within 10 MB (index first), otherwise linked by its s3:// URI.
        fits = objects["index.pdf"]["size"] + stored[fw]["packet"]["size"] <= 10 * 1024 * 1024
        branches.add(fits)
        if fits:
            assert set(attached) == set(expected)
        else:
            assert set(attached) == {f"attestly-{fw}-2026-Q1-index.pdf"}
            assert f"s3://{quarter.bucket}/{stored[fw]['packet']['key']}" in body.get_content()
        for name, content in attached.items():
            obj = expected[name]
            assert hashlib.sha256(content).hexdigest() == obj["sha256"]
            assert hashlib.sha256(store.get_bytes(obj["key"], obj["version_id"])).hexdigest() == obj["sha256"]
        text = msg.as_string()
        assert SSN not in text and DATA_SECRET not in text
    assert branches == {True, False}  # one packet attached, one linked


def test_a_failed_send_fails_only_the_email_task(quarter: Seeded) -> None:
    """SMTP down: render and store succeed (reports stored and ledgered), e-mail fails after its retries,
    the run fails; a later run with SMTP back finds the same stored objects and only sends."""
    dead = json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": 9,
            "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "attestly@localhost"},
        }
    )
    conf = {
        "frameworks": ["pci"],
        "formats": ["json"],
        "period_start": "2026-01-01",
        "period_end": "2026-03-31",
    }
    run = _dags_test(date(2026, 4, 1), conf, env={"AIRFLOW_CONN_SMTP_DEFAULT": dead})
    assert run.returncode != 0
    log = run.stdout + run.stderr
    assert "NotifyError" in log and "127.0.0.1:9" in log
    from attestly.policy import load_policy

    pci_controls = len(load_policy().controls_for_framework("pci"))
    with Ledger.connect() as ledger:
        entries = [e.body for e in ledger.entries(kind="report")]
        failed = [e.body for e in ledger.entries(kind="run") if e.body["dag_id"] == "control_reports"][-1]
    json_only = [
        b
        for b in entries
        if b.get("event") == "stored"
        and b["framework"] == "pci"
        and len(b["statuses"]) == pci_controls
        and not any(o["path"].endswith(".pdf") for o in b["objects"])
    ]
    assert len(json_only) == 1
    states = {t["task_id"]: t["state"] for t in failed["tasks"]}
    assert states["render"] == states["store"] == "success" and states["email"] == "failed"

    before = set(_mail_dir().glob("*.eml"))
    again = _dags_test(date(2026, 4, 1), conf)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    with Ledger.connect() as ledger:
        stored = [e.body for e in ledger.entries(kind="report") if e.body.get("event") == "stored"]
    assert len([b for b in stored if b["rendition"] == json_only[0]["rendition"]]) == 1  # not stored twice
    new = [p for p in set(_mail_dir().glob("*.eml")) - before if b"PCI DSS control reports" in p.read_bytes()]
    assert len(new) == 1
