"""The evidence item (contract ``attestly.evidence/v2``; ``v1`` items keep verifying).

An evidence item is canonical JSON. ``attestly.evidence/v2`` items are serialised per RFC 8785 (the
JSON Canonicalization Scheme, JCS: keys sorted by UTF-16 code units, numbers as ECMAScript prints them,
minimal string escapes, UTF-8, no whitespace), so any JCS implementation reproduces the bytes.
``attestly.evidence/v1`` items (written before) are Python's ``json.dumps(sort_keys=True,
separators=(",", ":"), ensure_ascii=False)``; they are read and verified as v1, never rewritten. Its
SHA-256 over those bytes is its identity: it is stored content-addressed at ``objects/sha256/<hex>.json`` and the
ledger records that hash. Two runs that observe the same thing produce the same bytes, so re-running an
interval stores nothing new. For that reason ``collected_at`` is the end of the data interval being
evidenced (the moment the evidence speaks about, the period it is filed under), never the wall clock of the
worker.

v2 items also say how they were produced (information produced by the entity, IPE):

* ``observed_at`` — the real moment the source was observed (the wall clock of the run), distinct from the
  period; AWS state read on 2026-12-01 at 14:58 says so, whatever period it is filed under;
* ``method`` (:class:`Method`) — collector id and version, the API operations called or the SQL run
  (parameters bound, never secrets), and the thresholds (policy parameters) it used;
* ``population`` (:class:`Population`) — what was enumerated, how, and how many;
* ``policy`` — the SHA-256 of the policy bundle in force (see :mod:`attestly.policy_evidence`).

They are provenance: :attr:`EvidenceItem.observation_sha256` leaves them out (with ``airflow``), so a
re-run of an interval that observes the same thing ledgers nothing new.

This module imports nothing from Airflow: auditors verify with it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

#: Keys of a v2 item that are provenance, not observation: excluded from ``observation_sha256``.
PROVENANCE_KEYS: tuple[str, ...] = ("airflow", "observed_at", "method", "population", "policy")

SCHEMA_V1 = "attestly.evidence/v1"
SCHEMA = "attestly.evidence/v2"
SCHEMAS = {SCHEMA_V1: 1, SCHEMA: 2}

Result = Literal["pass", "fail", "error", "not_applicable"]
RESULTS: tuple[str, ...] = ("pass", "fail", "error", "not_applicable")
#: A finding may also be ``accepted``: a failure covered by an unexpired accepted risk of the policy
#: (who accepted it and until when is in its detail). It counts as a pass for the item's result and is
#: listed as an accepted exception in the reports — never dropped.
FINDING_STATUSES: tuple[str, ...] = (*RESULTS, "accepted")
FindingStatus = Literal["pass", "fail", "error", "not_applicable", "accepted"]


class EvidenceError(ValueError):
    """An evidence item that does not satisfy the contract; the message names the field and value."""


def iso(ts: datetime) -> str:
    """UTC ISO-8601 with a trailing Z; naive datetimes are refused (they are ambiguous evidence)."""
    if ts.tzinfo is None:
        raise EvidenceError(f"timestamp {ts!r} has no time zone; evidence timestamps must be UTC")
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


class CanonicalError(ValueError):
    """A value that has no canonical JSON form (NaN, an integer beyond 2**53, a non-JSON type)."""


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) bytes of ``value``: what v2 evidence, v2 ledger entries and v2 digests hash and sign.

    Integers must lie within ±(2**53 - 1) (JCS numbers are IEEE-754 doubles) and floats must be finite;
    anything else is refused with :class:`CanonicalError` rather than serialised ambiguously."""
    import rfc8785

    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, OverflowError) as exc:
        raise CanonicalError(f"no canonical JSON form: {exc}") from None


def canonical_json_v1(value: Any) -> bytes:
    """The v1 form: Python's sorted-keys compact JSON (``json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)``), UTF-8, no NaN. Verifies what v1 wrote, and keeps internal identifiers (dedupe
    keys, rendition ids) stable across the upgrade; new signed or hashed formats use :func:`canonical_json`."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise CanonicalError(f"no canonical JSON form: {exc}") from None


def canonical_for(version: int, value: Any) -> bytes:
    """The canonical bytes of ``value`` in format ``version`` (1: sorted-keys JSON, 2: RFC 8785)."""
    if version == 1:
        return canonical_json_v1(value)
    if version == 2:
        return canonical_json(value)
    raise CanonicalError(f"unknown canonical form version {version!r}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Finding:
    """One resource's outcome inside an evidence item. ``detail`` never carries PHI or secrets."""

    resource: str
    status: FindingStatus
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"resource": self.resource, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class AirflowContext:
    dag_id: str
    run_id: str
    task_id: str
    try_number: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "try_number": self.try_number,
        }


def collector_version() -> str:
    """The version of the code that produced an item: the installed ``attestly`` distribution's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("attestly")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
        return "0+unknown"


@dataclass(frozen=True)
class Method:
    """How an item was produced (IPE): collector id and version, the API operations called (with their
    call counts) or SQL text run (parameters bound, no secrets), and the thresholds used.

    ``operations`` maps ``"<service>:<Operation>"`` (or a tool's command) to how many times it was called;
    ``queries`` are SQL statements with their parameters bound; ``parameters`` the policy thresholds and
    settings the decision used; ``tool`` names an external tool and its version (Prowler, Security Hub)."""

    collector: str
    version: str = field(default_factory=collector_version)
    operations: dict[str, int] = field(default_factory=dict)
    queries: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    tool: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "collector": self.collector,
            "version": self.version,
            "operations": dict(sorted(self.operations.items())),
            "queries": list(self.queries),
            "parameters": dict(sorted(self.parameters.items())),
        }
        if self.tool:
            out["tool"] = self.tool
        return out

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Method:
        return cls(
            collector=str(value["collector"]),
            version=str(value["version"]),
            operations={str(k): int(v) for k, v in dict(value.get("operations") or {}).items()},
            queries=tuple(str(q) for q in value.get("queries") or ()),
            parameters=dict(value.get("parameters") or {}),
            tool=value.get("tool"),
        )


@dataclass(frozen=True)
class Population:
    """What was enumerated to produce an item, how, and its size (``size`` members examined)."""

    what: str
    how: str
    size: int

    def __post_init__(self) -> None:
        if self.size < 0:
            raise EvidenceError(f"population {self.what!r}: size {self.size} is negative")

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "how": self.how, "size": self.size}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Population:
        return cls(what=str(value["what"]), how=str(value["how"]), size=int(value["size"]))


@dataclass(frozen=True)
class EvidenceItem:
    """One piece of evidence for one or more controls over one period.

    ``result`` is derived by the producer; :func:`derive_result` gives the usual rule. ``airflow`` is
    ``None`` when the item was produced outside Airflow (the CLI), and then serialises as null.
    """

    collector: str
    controls: tuple[str, ...]
    period_start: datetime
    period_end: datetime
    scope: dict[str, str]
    retroactive: bool
    result: Result
    findings: tuple[Finding, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)
    airflow: AirflowContext | None = None
    collected_at: datetime | None = None
    #: 2 (RFC 8785) for everything new; 1 only to rebuild an item frozen before the upgrade.
    version: int = 2
    #: v2 provenance (see the module docstring); serialised only when set, never in a v1 item.
    observed_at: datetime | None = None
    method: Method | None = None
    population: Population | None = None
    policy: str | None = None

    def __post_init__(self) -> None:
        if self.version not in (1, 2):
            raise EvidenceError(f"evidence item {self.collector!r}: unknown schema version {self.version!r}")
        if not self.collector:
            raise EvidenceError("evidence item: 'collector' is empty")
        if not self.controls:
            raise EvidenceError(f"evidence item {self.collector!r}: 'controls' is empty")
        if self.result not in RESULTS:
            raise EvidenceError(
                f"evidence item {self.collector!r}: result {self.result!r} is not one of {RESULTS}"
            )
        if self.policy is not None and not (
            len(self.policy) == 64 and all(c in "0123456789abcdef" for c in self.policy)
        ):
            raise EvidenceError(f"evidence item {self.collector!r}: policy {self.policy!r} is not a SHA-256")
        if self.period_end < self.period_start:
            raise EvidenceError(
                f"evidence item {self.collector!r}: period end {self.period_end} is before start "
                f"{self.period_start}"
            )
        for f in self.findings:
            if f.status not in FINDING_STATUSES:
                raise EvidenceError(
                    f"evidence item {self.collector!r}: finding {f.resource!r} has status {f.status!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "schema": SCHEMA if self.version == 2 else SCHEMA_V1,
            "collector": self.collector,
            "controls": sorted(set(self.controls)),
            "period": {"start": iso(self.period_start), "end": iso(self.period_end)},
            "collected_at": iso(self.collected_at or self.period_end),
            "scope": dict(sorted(self.scope.items())),
            "retroactive": self.retroactive,
            "result": self.result,
            "findings": [
                f.to_dict() for f in sorted(self.findings, key=lambda f: (f.resource, f.status, f.detail))
            ],
            "data": self.data,
            "airflow": self.airflow.to_dict() if self.airflow else None,
        }
        if self.version == 2:
            if self.observed_at is not None:
                body["observed_at"] = iso(self.observed_at)
            if self.method is not None:
                body["method"] = self.method.to_dict()
            if self.population is not None:
                body["population"] = self.population.to_dict()
            if self.policy is not None:
                body["policy"] = {"sha256": self.policy}
        return body

    def canonical(self) -> bytes:
        return canonical_for(self.version, self.to_dict())

    @property
    def sha256(self) -> str:
        return sha256_hex(self.canonical())

    @property
    def object_key(self) -> str:
        return object_key(self.sha256)

    @property
    def observation_sha256(self) -> str:
        """Hash of what was observed, without its provenance (``airflow``, ``observed_at``, ``method``,
        ``population``, ``policy``): two runs or tries that observe the same thing share it, so a re-run
        does not ledger a second item for an unchanged observation.

        Computed over the v1 form of the item (whatever its version), so an interval observed before the
        upgrade to v2 and re-run after it is still recognised as the same observation."""
        body = self.to_dict()
        for key in PROVENANCE_KEYS:
            body.pop(key, None)
        body["schema"] = SCHEMA_V1
        return sha256_hex(canonical_json_v1(body))


def object_key(sha256: str) -> str:
    return f"objects/sha256/{sha256}.json"


def derive_result(findings: tuple[Finding, ...] | list[Finding], *, empty: Result = "pass") -> Result:
    """error beats fail beats pass (an ``accepted`` failure counts as a pass); no findings gives ``empty``
    (nothing in scope)."""
    statuses = {"pass" if f.status == "accepted" else f.status for f in findings}
    if "error" in statuses:
        return "error"
    if "fail" in statuses:
        return "fail"
    if not statuses or statuses == {"not_applicable"}:
        return empty
    return "pass"


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:24]!r} is out of range")
    return value


def item_version(value: dict[str, Any]) -> int:
    """1 or 2 from an item's ``schema``; :class:`EvidenceError` for anything else."""
    schema = value.get("schema")
    version = SCHEMAS.get(schema) if isinstance(schema, str) else None
    if version is None:
        raise EvidenceError(
            f"evidence object schema is {str(value.get('schema'))[:60]!r}, expected one of {sorted(SCHEMAS)}"
        )
    return version


def parse_item(raw: bytes) -> dict[str, Any]:
    """Parse stored bytes back and check they are canonical in their version's form (re-serialising
    gives the same bytes): v2 RFC 8785, v1 sorted-keys JSON."""
    try:
        value = json.loads(raw, parse_float=_finite)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EvidenceError(f"evidence object is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise EvidenceError("evidence object is not a JSON object")
    version = item_version(value)
    try:
        again = canonical_for(version, value)
    except CanonicalError as exc:
        raise EvidenceError(f"evidence object ({value['schema']}): {exc}") from exc
    if again != raw:
        raise EvidenceError(f"evidence object is not in the canonical form of {value['schema']}")
    return value
