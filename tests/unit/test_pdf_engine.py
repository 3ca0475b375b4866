"""PDF reports are reproducible: HarfBuzz subsets the fonts or nothing is rendered, and a fixed document
gives a known PDF on any host whose engine matches the image's (tests/fixtures/pdf-engine.json)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from attestly.reports import render
from tests.sysdeps import unavailable

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "pdf-engine.json"


def _png() -> bytes:
    """A tiny RGB PNG with stored (uncompressed) zlib blocks: the same bytes with any zlib."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 40 % 256, y * 60 % 256, 128)) for x in range(6)) for y in range(4)
    )
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 6, 4, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows, 0))
        + chunk(b"IEND", b"")
    )


def golden_html() -> str:
    """A fixed document in the reports' own stylesheet: both font families, bold, a table, an image."""
    css = (render.templates_dir() / "report.css").read_text(encoding="utf-8")
    png = base64.b64encode(_png()).decode()
    rows = "".join(
        f"<tr><td>2026-01-{d:02d}</td><td class='num'>{d * 7}</td><td class='mono'>{hashlib.sha256(str(d).encode()).hexdigest()}</td></tr>"
        for d in range(1, 9)
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Golden</title><style>{css}</style></head>"
        "<body><h1>soc2:CC6.1 — Logical access</h1><p class='sub'>2026-Q1 · <b>effective</b> · "
        "Größe · naïve · — ±</p><span class='badge status-effective'>Effective</span>"
        f"<table><thead><tr><th>day</th><th class='num'>items</th><th>sha256</th></tr></thead><tbody>{rows}</tbody></table>"
        "<pre class='evidence'>2026-01-01 iam.inactive_users pass 3 objects/sha256/ab…</pre>"
        f"<div class='chart'><img alt='chart' src='data:image/png;base64,{png}'></div></body></html>"
    )


def test_rendering_refuses_without_harfbuzz_subsetting(monkeypatch: pytest.MonkeyPatch) -> None:
    from weasyprint.text import ffi

    monkeypatch.setattr(ffi, "harfbuzz_subset", None)
    with pytest.raises(
        render.RenderError, match=r"libharfbuzz-subset\.so\.0.*apt-get install libharfbuzz-subset0"
    ):
        render.html_to_pdf("<p>x</p>", name="soc2/CC6.1.pdf")


def test_a_fonttools_fallback_is_caught_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should WeasyPrint fall back to fontTools anyway, its warning reaches the logs and the render fails."""
    import logging

    from weasyprint.pdf import fonts

    monkeypatch.setattr(render, "require_reproducible_pdf_engine", lambda: None)
    monkeypatch.setattr(fonts, "harfbuzz_subset", None)
    with pytest.raises(
        render.RenderError, match=r"soc2/CC6\.1\.pdf fell back to fontTools.*libharfbuzz-subset0"
    ):
        render.html_to_pdf("<p>x</p>", name="soc2/CC6.1.pdf")
    assert logging.getLogger("weasyprint").getEffectiveLevel() <= logging.WARNING
    assert logging.getLogger("fontTools").getEffectiveLevel() <= logging.WARNING


def test_the_same_document_renders_to_the_same_bytes_at_any_time() -> None:
    import time_machine

    html = golden_html()
    first = render.html_to_pdf(html, name="golden")
    for when in ("2027-01-01T00:00:00Z", "2031-06-15T12:00:00Z"):
        with time_machine.travel(when, tick=False):
            assert render.html_to_pdf(html, name="golden") == first, f"differs when rendered at {when}"


def _deb_version(package: str) -> str | None:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return None
    return out.stdout.strip() or None


def _dockerfile_pins() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    return dict(re.findall(r"\b([a-z0-9][a-z0-9.+-]+)=([0-9][^\s\\]*)", text))


def _requirement_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def test_the_image_and_the_requirements_pin_the_engine_the_golden_pdf_was_made_with() -> None:
    """What must match between hosts, written once (the fixture) and checked against both pin files."""
    engine: dict[str, Any] = json.loads(FIXTURE.read_text())
    for package, version in engine["debian"].items():
        assert _dockerfile_pins().get(package) == version, f"Dockerfile must pin {package}={version}"
    for package, version in engine["python"].items():
        assert _requirement_pins().get(package) == version, f"requirements.txt must pin {package}=={version}"


def test_this_host_renders_the_images_golden_pdf() -> None:
    """With the image's engine (same Debian packages, same Python pins) this host produces the image's
    bytes. A host with another engine cannot, and is told which versions differ."""
    engine: dict[str, Any] = json.loads(FIXTURE.read_text())
    versions = render.pdf_engine_versions()
    differences = [
        f"{p} {versions.get(p)} (image: {v})" for p, v in engine["python"].items() if versions.get(p) != v
    ]
    differences += [
        f"{p} {_deb_version(p)} (image: {v})" for p, v in engine["debian"].items() if _deb_version(p) != v
    ]
    if differences:
        unavailable(
            "this host's PDF engine differs from the image's (" + ", ".join(differences) + "); its PDFs "
            "cannot be byte-identical to the image's",
            packages=" ".join(f"{p}={v}" for p, v in engine["debian"].items()),
        )
    pdf = render.html_to_pdf(golden_html(), name="golden")
    assert hashlib.sha256(pdf).hexdigest() == engine["golden_pdf_sha256"]
