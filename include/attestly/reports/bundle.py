"""A framework's reports for one period, rendered into files, and the auditor packet (a zip of them).

Files of a bundle (paths inside the packet)::

    index.html | index.pdf                       framework index + cross-framework view (as requested)
    index.json                                   the same as data (always)
    controls/<slug>.html | .pdf | .json          one report per control (formats as requested)
    evidence-manifest.json, evidence-manifest.csv   every evidence object the reports use
    objects/sha256/<hex>.json                    those evidence objects themselves (as stored)
    policy/sha256/<hex>.json                     the policy bundle(s) in force, named by the items
    digests/<first>-<last>.json, digests.json     the signed digests covering that evidence and policy
    public-key.pem                               the key the digests are signed with
    oscal/assessment-results.json                OSCAL 1.1.3 assessment results
    VERIFY.md                                    how to verify, and the specification of every format
    verify.mjs                                   the independent verifier (Node.js, standard library only)
    SHA256SUMS                                   SHA-256 of every other file
    SHA256SUMS.sig                               the signing key's signature over SHA256SUMS (JSON)

The packet cannot hold the digest that seals its own ``report`` ledger entry (that entry records the
packet's SHA-256, so it is written after the packet): the ``control_reports`` run seals it right after
storing the reports and the e-mail names that digest; ``attestly verify`` over the bucket checks it.

Every file is a deterministic function of the ledger, the evidence objects, the policy, the bucket
name, the public key and the Airflow base URL: no generation time is inside any of them, so a past
period re-rendered later gives byte-identical files, the same packet zip (fixed entry times and
order) and the same *rendition* id (SHA-256 over the files' names and hashes). The rendering time is
recorded in the ledger entry of kind ``report`` and in the e-mail, never in the files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attestly.evidence import canonical_json_v1
from attestly.reports.build import BuildContext, assess_all, build_control_report, build_index
from attestly.reports.chart import chart_svg
from attestly.reports.model import Assessment, Period, ReportInputError
from attestly.reports.oscal import assessment_results
from attestly.reports.render import html_to_pdf, json_bytes, render_pdfs, render_template

if TYPE_CHECKING:
    from attestly.ledger import Ledger
    from attestly.policy import Policy
    from attestly.reports.source import ObjectReader, Snapshot
    from attestly.signing import Signer
    from attestly.store import EvidenceStore

FORMATS: tuple[str, ...] = ("html", "pdf", "json")
SIGNATURE_FILE = "SHA256SUMS.sig"
SIGNATURE_SCHEMA = "attestly.sha256sums-signature/v1"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".pdf": "application/pdf",
    ".json": "application/json",
    ".csv": "text/csv; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".pem": "application/x-pem-file",
    ".zip": "application/zip",
}


def content_type(path: str) -> str:
    return _CONTENT_TYPES.get(Path(path).suffix, "text/plain; charset=utf-8")


@dataclass(frozen=True)
class ReportRequest:
    """What to render: one framework over one period, optionally some controls and formats only."""

    framework: str
    period: Period
    controls: tuple[str, ...] = ()
    formats: tuple[str, ...] = FORMATS

    def control_ids(self, policy: Policy) -> list[str]:
        """The controls to render, in policy order; :class:`ReportInputError` naming any bad value."""
        if self.framework not in policy.frameworks:
            raise ReportInputError(
                f"unknown framework {self.framework!r} (known: {', '.join(sorted(policy.frameworks))})"
            )
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise ReportInputError(
                f"unknown format {bad[0]!r} (known: {', '.join(FORMATS)})"
                if bad
                else f"no format requested (choose from {', '.join(FORMATS)})"
            )
        ours = [c.id for c in policy.controls_for_framework(self.framework)]
        if not self.controls:
            return ours
        for cid in self.controls:
            if cid not in policy.controls:
                raise ReportInputError(f"unknown control {cid!r}")
            if cid not in ours:
                raise ReportInputError(
                    f"control {cid!r} belongs to {policy.controls[cid].framework!r}, not {self.framework!r}"
                )
        return [c for c in ours if c in set(self.controls)]


@dataclass
class Bundle:
    """The rendered files of one framework and period (see the module docstring)."""

    framework: str
    period: Period
    bucket: str
    files: dict[str, bytes]
    index: dict[str, Any]
    reports: list[dict[str, Any]] = field(default_factory=list)
    #: Packet-only files: the evidence objects and policy bundles, by path (``objects/sha256/…``,
    #: ``policy/sha256/…``). In the packet and in SHA256SUMS, but not stored again one by one (the bucket
    #: holds them at those keys already) nor listed in the ``report`` ledger entry.
    objects: dict[str, bytes] = field(default_factory=dict)
    _packet: bytes | None = field(default=None, repr=False)

    @property
    def rendition(self) -> str:
        """SHA-256 over the sorted (path, SHA-256) pairs of the files: names this exact content.
        ``SHA256SUMS.sig`` is left out: it attests ``SHA256SUMS`` (which is in), and an ECDSA (KMS)
        signature differs at every signing."""
        listing = {
            p: hashlib.sha256(b).hexdigest() for p, b in sorted(self.files.items()) if p != SIGNATURE_FILE
        }
        return hashlib.sha256(canonical_json_v1(listing)).hexdigest()

    @property
    def rendition_id(self) -> str:
        return self.rendition[:16]

    @property
    def prefix(self) -> str:
        """``reports/<framework>/<period>/<rendition id>/``: a new rendition never overwrites an old one."""
        return f"reports/{self.framework}/{self.period.label}/{self.rendition_id}/"

    @property
    def packet_name(self) -> str:
        return f"attestly-{self.framework}-{self.period.label}-packet.zip"

    @property
    def statuses(self) -> dict[str, str]:
        return {str(c["id"]): str(c["status"]) for c in self.index["controls"]}

    @classmethod
    def from_files(
        cls,
        *,
        framework: str,
        period: Period,
        bucket: str,
        files: dict[str, bytes],
        objects: dict[str, bytes] | None = None,
    ) -> Bundle:
        """A bundle read back from its files (``index.json`` must be among them) and packet-only objects."""
        import json

        if "index.json" not in files:
            raise ReportInputError(f"bundle files for {framework} {period.label} have no index.json")
        return cls(
            framework=framework,
            period=period,
            bucket=bucket,
            files=dict(sorted(files.items())),
            index=json.loads(files["index.json"]),
            objects=dict(sorted((objects or {}).items())),
        )

    def packet_only_paths(self) -> dict[str, str]:
        """The packet-only paths SHA256SUMS lists (path -> hex SHA-256): what ``objects`` must hold."""
        out: dict[str, str] = {}
        for line in self.files.get("SHA256SUMS", b"").decode().splitlines():
            digest, _, path = line.partition("  ")
            if path not in self.files:
                out[path] = digest
        return out

    def packet_zip(self) -> bytes:
        """The auditor packet: every file under ``<packet name without .zip>/``; deterministic bytes."""
        if self._packet is None:
            root = self.packet_name.removesuffix(".zip")
            stamp = (self.period.end.year, self.period.end.month, self.period.end.day, 0, 0, 0)
            buf = io.BytesIO()
            everything = {**self.objects, **self.files}
            with zipfile.ZipFile(buf, "w") as zf:
                for path in sorted(everything):
                    info = zipfile.ZipInfo(f"{root}/{path}", date_time=stamp)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.create_system = 3
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, everything[path], compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
            self._packet = buf.getvalue()
        return self._packet

    def summary(self) -> dict[str, Any]:
        """Small and JSON-able (for XCom and the CLI): identity, statuses, file hashes."""
        return {
            "framework": self.framework,
            "period": self.period.to_dict(),
            "rendition": self.rendition,
            "prefix": self.prefix,
            "packet": {
                "name": self.packet_name,
                "sha256": hashlib.sha256(self.packet_zip()).hexdigest(),
                "size": len(self.packet_zip()),
            },
            "files": {
                p: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}
                for p, b in sorted(self.files.items())
            },
            "packet_objects": len(self.objects),
            "status_counts": dict(self.index["status_counts"]),
            "statuses": self.statuses,
        }

    def write(self, out: Path) -> Path:
        """Write the files and the packet under ``out/<framework>/<period>/``; returns that directory."""
        target = out / self.framework / self.period.label
        for path, body in {**self.objects, **self.files}.items():
            dest = target / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(body)
        (target / self.packet_name).write_bytes(self.packet_zip())
        return target


def _manifest(reports: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], bytes]:
    rows: dict[str, dict[str, Any]] = {}
    for r in reports:
        for e in r["evidence"]:
            rows[e["sha256"]] = {
                "key": e["key"],
                "version_id": e["version_id"],
                "sha256": e["sha256"],
                "collector": e["collector"],
                "date": e["date"],
                "controls": e["controls"],
                "result": e["result"],
                "ledger_seq": e["seq"],
            }
    ordered = sorted(rows.values(), key=lambda x: (x["date"], x["collector"], x["ledger_seq"]))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["key", "version_id", "sha256", "collector", "date", "controls", "result", "ledger_seq"])
    for x in ordered:
        writer.writerow(
            [
                x["key"],
                x["version_id"],
                x["sha256"],
                x["collector"],
                x["date"],
                ";".join(x["controls"]),
                x["result"],
                x["ledger_seq"],
            ]
        )
    return ordered, buf.getvalue().encode()


def render_bundle(
    *,
    policy: Policy,
    snapshot: Snapshot,
    reader: ObjectReader,
    request: ReportRequest,
    bucket: str,
    public_key_pem: bytes,
    airflow_base_url: str | None,
    assessments: dict[str, Assessment] | None = None,
    signer: Signer | None = None,
) -> Bundle:
    """Render one framework's reports, index and packet files from a snapshot (see module docstring).
    With ``signer`` (whose public key must be ``public_key_pem``) the packet holds ``SHA256SUMS.sig``."""
    from attestly.signing import fingerprint

    if not _BUCKET.match(bucket):
        raise ReportInputError(f"bucket name {bucket!r} is not a valid S3 bucket name")
    if snapshot.period != request.period:
        raise ReportInputError(
            f"snapshot period {snapshot.period.label} does not match the request's {request.period.label}"
        )
    control_ids = request.control_ids(policy)
    formats = set(request.formats)
    try:
        key_fingerprint = fingerprint(public_key_pem)
    except ValueError as exc:
        raise ReportInputError(f"public key is not a PEM public key ({exc})") from exc
    ctx = BuildContext(
        policy=policy,
        snapshot=snapshot,
        reader=reader,
        airflow_base_url=airflow_base_url,
        public_key_fingerprint=key_fingerprint,
    )
    assessments = assessments or assess_all(policy, snapshot)
    files: dict[str, bytes] = {}
    reports: list[dict[str, Any]] = []
    pdf_jobs: list[tuple[str, tuple[str, str]]] = []
    for cid in control_ids:
        report = build_control_report(ctx, cid, assessments)
        reports.append(report)
        slug = report["control"]["slug"]
        chart = chart_svg(assessments[cid])
        if "html" in formats:
            html = render_template(
                "control_report.html.j2", r=report, chart=chart, bucket=bucket, for_pdf=False
            )
            files[f"controls/{slug}.html"] = html.encode()
        if "pdf" in formats:
            html = render_template(
                "control_report.html.j2", r=report, chart=chart, bucket=bucket, for_pdf=True
            )
            pdf_jobs.append((f"controls/{slug}.pdf", (html, f"the report of {cid}")))
        if "json" in formats:
            files[f"controls/{slug}.json"] = json_bytes(report)
    for (path, _job), pdf in zip(pdf_jobs, render_pdfs([j for _p, j in pdf_jobs]), strict=True):
        files[path] = pdf
    index = build_index(ctx, framework=request.framework, reports=reports, assessments=assessments)
    if formats & {"html", "pdf"}:
        html = render_template(
            "framework_index.html.j2", ix=index, bucket=bucket, link_html="html" in formats
        )
        if "html" in formats:
            files["index.html"] = html.encode()
        if "pdf" in formats:
            files["index.pdf"] = html_to_pdf(html, name=f"the {request.framework} index")
    files["index.json"] = json_bytes(index)  # always: the machine summary the e-mail and UI read
    manifest, manifest_csv = _manifest(reports)
    files["evidence-manifest.json"] = json_bytes(manifest)
    files["evidence-manifest.csv"] = manifest_csv
    # The objects themselves: every evidence object the manifest lists, and the policy bundles the items
    # name (with the digests sealing those policies' ledger entries).
    objects = reader.objects(manifest)
    named = sorted({e["policy"] for r in reports for e in r["evidence"] if e.get("policy")})
    policies = [snapshot.policies[p] for p in named if p in snapshot.policies]
    objects.update(reader.objects(policies))
    covering = sorted(
        {d["key"] for r in reports for d in r["digests"]}
        | {d.key for d in snapshot.digests_covering(p["seq"] for p in policies)}
    )
    rows = {d.key: d for d in snapshot.digests}
    for key in covering:
        files[f"digests/{key.rsplit('/', 1)[-1]}"] = reader.digest(rows[key])
    files["digests.json"] = json_bytes(index["digests"])
    files["public-key.pem"] = public_key_pem
    files["oscal/assessment-results.json"] = json_bytes(
        assessment_results(index=index, reports=reports, bucket=bucket)
    )
    files["VERIFY.md"] = render_template("VERIFY.md.j2", ix=index, bucket_arg=bucket).encode()
    files["verify.mjs"] = (Path(__file__).resolve().parent.parent / "verify.mjs").read_bytes()
    everything = {**objects, **files}
    sums = "".join(f"{hashlib.sha256(everything[p]).hexdigest()}  {p}\n" for p in sorted(everything))
    files["SHA256SUMS"] = sums.encode()
    if signer is not None:
        files[SIGNATURE_FILE] = sign_sums(files["SHA256SUMS"], signer=signer, public_key_pem=public_key_pem)
    return Bundle(
        framework=request.framework,
        period=request.period,
        bucket=bucket,
        files=dict(sorted(files.items())),
        index=index,
        reports=reports,
        objects=dict(sorted(objects.items())),
    )


def sign_sums(sums: bytes, *, signer: Signer, public_key_pem: bytes) -> bytes:
    """``SHA256SUMS.sig``: JSON ``{schema, signed: "SHA256SUMS", algorithm, public_key_fingerprint,
    signature}`` — ``signature`` is base64 of the signer's signature over the exact bytes of SHA256SUMS
    (Ed25519, or ECDSA P-256 SHA-256 DER from KMS)."""
    import base64

    from attestly.signing import fingerprint

    if fingerprint(signer.public_key_pem()) != fingerprint(public_key_pem):
        raise ReportInputError("the signing key is not the public key given for the packet")
    body = {
        "schema": SIGNATURE_SCHEMA,
        "signed": "SHA256SUMS",
        "algorithm": signer.algorithm,
        "public_key_fingerprint": fingerprint(public_key_pem),
        "signature": base64.b64encode(signer.sign(sums)).decode("ascii"),
    }
    return json_bytes(body)


def render_reports(
    *,
    requests: Iterable[ReportRequest],
    ledger: Ledger,
    store: EvidenceStore,
    public_key_pem: bytes,
    airflow_base_url: str | None,
    policy: Policy | None = None,
    signer: Signer | None = None,
) -> list[Bundle]:
    """Render every request (one ledger snapshot per distinct period; objects read once)."""
    from attestly.policy import load_policy
    from attestly.reports.source import ObjectReader, load_snapshot

    policy = policy or load_policy()
    reader = ObjectReader(store)
    reqs = list(requests)
    for req in reqs:
        req.control_ids(policy)  # validate everything before any work
    snapshots: dict[Period, tuple[Snapshot, dict[str, Assessment]]] = {}
    bundles = []
    for req in reqs:
        if req.period not in snapshots:
            snap = load_snapshot(ledger=ledger, period=req.period, cadences=policy.cadences())
            snapshots[req.period] = (snap, assess_all(policy, snap))
        snap, assessments = snapshots[req.period]
        bundles.append(
            render_bundle(
                policy=policy,
                snapshot=snap,
                reader=reader,
                request=req,
                bucket=store.bucket,
                public_key_pem=public_key_pem,
                airflow_base_url=airflow_base_url,
                assessments=assessments,
                signer=signer,
            )
        )
    return bundles


def airflow_base_url() -> str | None:
    """The public base URL of the Airflow UI for run links (:func:`attestly.links.public_base_url`:
    ``ATTESTLY_PUBLIC_BASE_URL``, else Airflow's ``[api] base_url``)."""
    from attestly.links import public_base_url

    return public_base_url()
