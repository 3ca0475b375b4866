"""The policy as typed, frozen pydantic models, with every rule the policy check enforces.

Each YAML file has one root model: ``controls.yaml`` -> :class:`ControlsFile`, ``retention.yaml`` ->
:class:`RetentionPolicy`, ``sources.yaml`` -> :class:`SourcesPolicy`, ``aws.yaml`` -> :class:`AwsPolicy`;
:class:`Policy` bundles them. All models are frozen and forbid unknown keys, so a typo is an error.
Scalars are strict (``online_months: "12"`` is an error, not 12; account ids must be quoted strings).

Rules that need another file (a control referenced by ``maps_to``, the columns and enums of
``sources.yaml`` used by retention selectors, whether HIPAA controls exist) read it from the pydantic
validation *context* (see ``loader.py``); validated without context, those cross-file rules are skipped.
Each rule sits on the field it is about (reading fields declared before it through ``info.data``:
declaration order is validation order), so one bad field does not hide the problems of the others.
Rules raise a ``policy`` error (:func:`rule_error`) whose context carries the exact sub-location and
value, so the loader reports them at the offending key rather than at the enclosing object.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from attestly.policy import dates
from attestly.policy.catalog import (
    FRAMEWORKS,
    KNOWN_COLLECTORS,
    LOGICAL_COLUMNS,
    MANDATORY_COLUMNS,
    Framework,
)
from attestly.policy.errors import Loc

# --------------------------------------------------------------------------------------------------
# Rule errors that carry their own location


@dataclass(frozen=True)
class Issue:
    """One rule violation: ``at`` is relative to the model that raised it; ``value`` the bad value."""

    at: Loc
    message: str
    value: object = None


POLICY_ERROR_TYPE = "policy"


def rule_error(issues: Iterable[Issue]) -> PydanticCustomError:
    """A pydantic error of type ``policy`` carrying one or more :class:`Issue` in its context."""
    items = list(issues)
    return PydanticCustomError(
        POLICY_ERROR_TYPE, "{message}", {"message": "; ".join(i.message for i in items), "issues": items}
    )


def _raise_issues(issues: list[Issue]) -> None:
    if issues:
        raise rule_error(issues)


def _fail(message: str, value: object) -> PydanticCustomError:
    return rule_error([Issue((), message, value)])


def _ctx(info: ValidationInfo) -> Mapping[str, Any]:
    return info.context if isinstance(info.context, Mapping) else {}


# --------------------------------------------------------------------------------------------------
# Constrained scalar types

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
_CONTROL_ID = re.compile(r"^(?P<framework>[a-z0-9]+):(?P<ref>.+)$")
_CONTROL_REF = {
    "soc2": re.compile(r"^(?:CC|A|C|PI|P)\d+\.\d+$"),
    "hipaa": re.compile(r"^16[0-4]\.\d{3}(?:\((?:[a-z]+|[0-9]+|[A-Z])\))*$"),
    "pci": re.compile(r"^\d{1,2}(?:\.\d{1,2}){0,4}$"),
}
_ACCOUNT_ID = re.compile(r"^\d{12}$")
_OU = re.compile(r"^(r-[0-9a-z]{4,32}|ou-[0-9a-z]{4,32}-[a-z0-9]{8,32})$")
_ROLE_NAME = re.compile(r"^[\w+=,.@/-]{1,576}$")
_ROLE_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::(?P<account>\d{12}):role/[\w+=,.@/-]{1,512}$")
_REGION = re.compile(r"^[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")
_URL = re.compile(r"^https?://[^\s/]+(?:/\S*)?$")


def _non_blank(value: str) -> str:
    if not value.strip():
        raise _fail("must not be empty", value)
    return value


def _slug(value: str) -> str:
    if not _SLUG.match(value):
        raise _fail(f"{value!r} is not a valid name (lowercase letters, digits and '-')", value)
    return value


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise _fail(f"{value!r} is not an e-mail address", value)
    return value


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise _fail(f"{value!r} is not a plain SQL identifier (letters, digits, '_', max 63)", value)
    return value


def _control_id_format(value: str) -> str:
    match = _CONTROL_ID.match(value)
    if match is None or match["framework"] not in _CONTROL_REF:
        raise _fail(
            f"{value!r} is not a control id: write <framework>:<reference> with framework one of "
            f"{', '.join(FRAMEWORKS)} (e.g. 'soc2:CC6.1', 'hipaa:164.312(b)', 'pci:10.5.1')",
            value,
        )
    if not _CONTROL_REF[match["framework"]].match(match["ref"]):
        raise _fail(f"{value!r}: {match['ref']!r} is not a valid {match['framework']} reference", value)
    return value


def _control_ref(value: str, info: ValidationInfo) -> str:
    _control_id_format(value)
    known = _ctx(info).get("control_ids")
    if known is not None and value not in known:
        raise _fail(f"unknown control {value!r} (not defined in controls.yaml)", value)
    own_id = info.data.get("id")
    if isinstance(own_id, str):
        if value == own_id:
            raise _fail(f"control {value!r} maps to itself", value)
        if value.split(":", 1)[0] == own_id.split(":", 1)[0]:
            raise _fail(
                f"maps_to {value!r} is in the same framework; list controls of other frameworks", value
            )
    return value


def _collector(value: str) -> str:
    if value not in KNOWN_COLLECTORS:
        close = difflib.get_close_matches(value, sorted(KNOWN_COLLECTORS), n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        known = ", ".join(sorted(KNOWN_COLLECTORS))
        raise _fail(f"unknown collector {value!r}{hint} (known: {known})", value)
    return value


def _declared_framework(value: str, info: ValidationInfo) -> str:
    declared = _ctx(info).get("declared_frameworks")
    if declared is not None and value not in declared:
        raise _fail(f"framework {value!r} is not declared under 'frameworks:'", value)
    own_id = info.data.get("id")
    if isinstance(own_id, str) and own_id.split(":", 1)[0] != value:
        raise _fail(f"framework {value!r} does not match the id prefix of {own_id!r}", value)
    return value


def _logical_column(value: str) -> str:
    if value not in LOGICAL_COLUMNS:
        raise _fail(f"unknown logical column {value!r} (known: {', '.join(LOGICAL_COLUMNS)})", value)
    return value


def _account_id(value: str) -> str:
    if not _ACCOUNT_ID.match(value):
        raise _fail(f"{value!r} is not an AWS account id (12 digits, quoted)", value)
    return value


def _region(value: str) -> str:
    if not _REGION.match(value):
        raise _fail(f"{value!r} does not look like an AWS region (e.g. us-east-1)", value)
    return value


def _endpoint(value: str) -> str:
    if value and not _URL.match(value):
        raise _fail(f"{value!r} is not an http(s) URL (leave empty for the AWS default)", value)
    return value


Text = Annotated[StrictStr, AfterValidator(_non_blank)]
Slug = Annotated[StrictStr, AfterValidator(_slug)]
Email = Annotated[StrictStr, AfterValidator(_email)]
Identifier = Annotated[StrictStr, AfterValidator(_identifier)]
ControlId = Annotated[StrictStr, AfterValidator(_control_id_format)]
ControlRef = Annotated[StrictStr, AfterValidator(_control_ref)]
CollectorId = Annotated[StrictStr, AfterValidator(_collector)]
LogicalColumn = Annotated[StrictStr, AfterValidator(_logical_column)]
AccountId = Annotated[StrictStr, AfterValidator(_account_id)]
Region = Annotated[StrictStr, AfterValidator(_region)]
EndpointUrl = Annotated[StrictStr, AfterValidator(_endpoint)]
NonNegInt = Annotated[StrictInt, Field(ge=0)]
PosInt = Annotated[StrictInt, Field(ge=1)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]


def _unique_items(values: tuple[Any, ...]) -> tuple[Any, ...]:
    seen: set[object] = set()
    issues: list[Issue] = []
    for index, value in enumerate(values):
        if value in seen:
            issues.append(Issue((index,), f"duplicate {value!r}", value))
        seen.add(value)
    _raise_issues(issues)
    return values


def _non_empty(values: tuple[Any, ...]) -> tuple[Any, ...]:
    if not values:
        raise _fail("must not be empty", [])
    return values


#: Validators for a whole list; they run only when every item is valid, so they never pile on.
Unique = AfterValidator(_unique_items)
NonEmpty = AfterValidator(_non_empty)


def _column_map(columns: dict[str, str]) -> dict[str, str]:
    issues: list[Issue] = []
    missing = [c for c in MANDATORY_COLUMNS if c not in columns]
    if missing:
        issues.append(Issue((), f"columns must map {', '.join(missing)}", sorted(columns)))
    physical: dict[str, str] = {}
    for logical, column in columns.items():
        if column in physical:
            issues.append(
                Issue((logical,), f"column {column!r} is already mapped to {physical[column]!r}", column)
            )
        physical.setdefault(column, logical)
    _raise_issues(issues)
    return columns


def _mapped_column(value: str, info: ValidationInfo) -> str:
    _logical_column(value)
    columns = info.data.get("columns")
    if isinstance(columns, dict) and value not in columns:
        raise _fail(f"{value!r} is not mapped under columns", value)
    return value


MappedColumn = Annotated[StrictStr, AfterValidator(_mapped_column)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_alias=True, validate_by_name=False)


# --------------------------------------------------------------------------------------------------
# controls.yaml


#: SOC 2 trust services categories (Security — the common criteria — is always in scope).
SOC2_CATEGORIES = ("security", "availability", "confidentiality", "processing_integrity", "privacy")
_SOC2_PREFIX = {
    "CC": "security",
    "A": "availability",
    "C": "confidentiality",
    "PI": "processing_integrity",
    "P": "privacy",
}
Cadence = Literal["monthly", "quarterly", "semiannual", "annual"]
#: Days a piece of manual evidence stays current after the end of the period it covers.
CADENCE_DAYS = {"monthly": 31, "quarterly": 92, "semiannual": 183, "annual": 366}


def soc2_category(control_id: str) -> str | None:
    """``soc2:CC6.1`` → security, ``soc2:A1.2`` → availability, ``soc2:PI1.3`` → processing_integrity."""
    m = re.match(r"^soc2:(CC|PI|A|C|P)\d", control_id)
    return _SOC2_PREFIX[m[1]] if m else None


class FrameworkInfo(_Model):
    """Display name and version of a framework, as reports print them; for SOC 2, the trust services
    categories in scope (``security`` always; the others are the organisation's choice)."""

    name: Text
    version: Text
    categories_in_scope: Annotated[tuple[Literal[SOC2_CATEGORIES], ...], Unique] = ("security",)  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _security_always(self) -> FrameworkInfo:
        if "security" not in self.categories_in_scope:
            raise PydanticCustomError(
                "scope", "categories_in_scope must include security (the common criteria)", {}
            )
        return self


class Control(_Model):
    """One control. ``id`` is ``<framework>:<reference>``; ``maps_to`` lists equivalent controls in
    *other* frameworks (need not be symmetric); ``collectors`` may be empty only when ``manual``.

    ``manual`` controls are (also) shown by documents and sign-offs: ``cadence`` says how often new
    evidence is due, ``requested`` what it is. HIPAA entries say whether they are a ``standard`` or a
    ``required`` / ``addressable`` implementation specification (``specification``)."""

    id: ControlId
    framework: Annotated[Framework, AfterValidator(_declared_framework)]
    title: Text
    summary: Text
    owner: Email
    maps_to: Annotated[tuple[ControlRef, ...], Unique] = ()
    collectors: Annotated[tuple[CollectorId, ...], Unique] = ()
    manual: StrictBool = False
    cadence: Cadence | None = None
    requested: Text | None = None
    specification: Literal["standard", "required", "addressable"] | None = None

    @model_validator(mode="after")
    def _collected_or_manual(self) -> Control:
        issues = []
        if not self.collectors and not self.manual:
            issues.append(
                Issue(("collectors",), "a control needs at least one collector unless it is manual: true", [])
            )
        if self.manual and (self.cadence is None or self.requested is None):
            issues.append(
                Issue(
                    ("cadence",),
                    "a manual control says how often evidence is due (cadence) and what it is (requested)",
                    None,
                )
            )
        if not self.manual and (self.cadence is not None or self.requested is not None):
            issues.append(
                Issue(("cadence",), "cadence and requested are for manual: true controls", self.cadence)
            )
        if self.framework == "hipaa" and self.specification is None:
            issues.append(
                Issue(("specification",), "a HIPAA control says standard, required or addressable", None)
            )
        if self.framework != "hipaa" and self.specification is not None:
            issues.append(
                Issue(("specification",), "specification is for HIPAA controls", self.specification)
            )
        if issues:
            raise rule_error(issues)
        return self

    @property
    def category(self) -> str | None:
        return soc2_category(self.id)

    @property
    def evidenced_by(self) -> str:
        """``automated``, ``manual`` or ``both``."""
        if self.manual and self.collectors:
            return "both"
        return "manual" if self.manual else "automated"


class ManualEvidenceSettings(_Model):
    """How manual evidence is taken and chased: ``compliance_team`` is told when a control is overdue,
    owners ``remind_days_before`` its due date; uploads are at most ``max_files`` files of at most
    ``max_file_mib`` MiB each."""

    compliance_team: Email = "compliance@example.com"
    remind_days_before: Annotated[StrictInt, Field(ge=1, le=90)] = 14
    max_files: Annotated[StrictInt, Field(ge=1, le=100)] = 20
    max_file_mib: Annotated[StrictInt, Field(ge=1, le=512)] = 25


class ControlsFile(_Model):
    """Root of ``controls.yaml``. Control ids are unique (checked by the loader on the raw list)."""

    frameworks: dict[Framework, FrameworkInfo]
    manual_evidence: ManualEvidenceSettings = Field(default_factory=ManualEvidenceSettings)
    controls: Annotated[tuple[Control, ...], NonEmpty]


# --------------------------------------------------------------------------------------------------
# sources.yaml


DEFAULT_SUBJECT_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}"


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise PydanticCustomError(
            "regex", "not a valid regular expression: {error}", {"error": str(exc)}
        ) from None
    if not value or len(value) > 500:
        raise PydanticCustomError("regex", "a pattern of 1 to 500 characters", {})
    return value


class AuditTable(_Model):
    """Where the audit log lives and how its columns are named.

    ``columns`` maps a logical name (see ``catalog.LOGICAL_COLUMNS``) to the user's column; it must map
    at least ``catalog.MANDATORY_COLUMNS`` and no two logical names may share a column. ``required``
    (NOT NULL in the quality suite), ``enums`` and ``free_text`` name logical columns that are mapped.
    The YAML key ``schema`` is the attribute ``schema_name`` (``schema`` is taken by pydantic).
    """

    schema_name: Identifier = Field(alias="schema")
    table: Identifier
    columns: Annotated[dict[LogicalColumn, Identifier], AfterValidator(_column_map)]
    required: Annotated[tuple[MappedColumn, ...], Unique] = ()
    enums: dict[MappedColumn, Annotated[tuple[Text, ...], NonEmpty, Unique]] = Field(default_factory=dict)
    free_text: Annotated[tuple[MappedColumn, ...], Unique] = ()
    clock_skew_seconds: NonNegInt = 300
    heartbeat_action: Text = "heartbeat"
    #: What a data subject id looks like (a full-match regular expression): erasure requests and holds for
    #: anything else are refused before they reach the permanent record.
    subject_id_pattern: Annotated[str, AfterValidator(_regex)] = DEFAULT_SUBJECT_ID_PATTERN


class Source(_Model):
    """An application writing to the audit log; quality checks expect ``min_events_per_hour`` events
    (heartbeats included) every hour unless ``quiet_allowed``."""

    name: Slug
    min_events_per_hour: NonNegInt
    quiet_allowed: StrictBool = False


class SourcesPolicy(_Model):
    """Root of ``sources.yaml``: the audit table mapping and the expected sources (unique names)."""

    audit_table: AuditTable
    sources: Annotated[tuple[Source, ...], NonEmpty]

    def column(self, logical: str) -> str:
        """The user's column name for a logical column; ``KeyError`` if it is not mapped."""
        try:
            return self.audit_table.columns[logical]
        except KeyError:
            raise KeyError(f"logical column {logical!r} is not mapped in sources.yaml") from None

    def has_column(self, logical: str) -> bool:
        """Whether a logical column is mapped."""
        return logical in self.audit_table.columns

    @property
    def source_names(self) -> list[str]:
        """Source names in file order."""
        return [s.name for s in self.sources]

    def source(self, name: str) -> Source:
        """The source called ``name``; ``KeyError`` if there is none."""
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(f"unknown source {name!r} (known: {', '.join(self.source_names)})")


# --------------------------------------------------------------------------------------------------
# retention.yaml

#: Legal minimums enforced per framework: (minimum retention months, minimum online months).
LEGAL_MINIMUMS: dict[str, tuple[int, int]] = {"hipaa": (72, 0), "pci": (12, 3)}
#: Minimum evidence retention when any HIPAA control exists: six years of documentation (2 leap days).
HIPAA_EVIDENCE_MIN_DAYS = 6 * 365 + 2


def _evidence_days(value: int, info: ValidationInfo) -> int:
    in_use = _ctx(info).get("frameworks_in_use") or ()
    if "hipaa" in in_use and value < HIPAA_EVIDENCE_MIN_DAYS:
        raise _fail(
            f"evidence retention {value} days is below the HIPAA documentation minimum of 6 years "
            f"({HIPAA_EVIDENCE_MIN_DAYS} days, 45 CFR 164.316(b)(2)(i))",
            value,
        )
    return value


class EvidenceRetention(_Model):
    """Object Lock retention of evidence, digests and reports. At least six years with HIPAA controls."""

    retention_days: Annotated[PosInt, AfterValidator(_evidence_days)]


def _selector_column(value: str, info: ValidationInfo) -> str:
    _logical_column(value)
    sources = _ctx(info).get("sources")
    if isinstance(sources, SourcesPolicy) and not sources.has_column(value):
        raise _fail(f"selector column {value!r} is not mapped in sources.yaml audit_table.columns", value)
    return value


def _selector_value(value: str, info: ValidationInfo) -> str:
    sources = _ctx(info).get("sources")
    column = info.data.get("column")
    if isinstance(sources, SourcesPolicy) and isinstance(column, str):
        enum = sources.audit_table.enums.get(column)
        if enum is not None and value not in enum:
            raise _fail(
                f"{value!r} is not a value of {column!r} (sources.yaml enums: {', '.join(enum)})", value
            )
    return value


class Selector(_Model):
    """Rows whose logical ``column`` holds one of ``values`` belong to the class."""

    column: Annotated[StrictStr, AfterValidator(_selector_column)]
    values: Annotated[tuple[Annotated[Text, AfterValidator(_selector_value)], ...], NonEmpty, Unique]


class LegalBasis(_Model):
    """Why the class is kept that long; ``framework`` selects the legal minimums that are enforced."""

    framework: Literal["hipaa", "pci", "soc2", "none"]
    citation: Text


def _legal_floor(info: ValidationInfo) -> tuple[str, int, int] | None:
    basis = info.data.get("legal_basis")
    if not isinstance(basis, LegalBasis) or basis.framework not in LEGAL_MINIMUMS:
        return None
    min_retention, min_online = LEGAL_MINIMUMS[basis.framework]
    return basis.framework.upper(), min_retention, min_online


def _online_months(value: int, info: ValidationInfo) -> int:
    floor = _legal_floor(info)
    if floor is not None and value < floor[2]:
        raise _fail(
            f"online_months {value} is below the {floor[0]} minimum of {floor[2]} months "
            "immediately available",
            value,
        )
    return value


def _retention_months(value: int, info: ValidationInfo) -> int:
    issues: list[Issue] = []
    online = info.data.get("online_months")
    if isinstance(online, int) and value < online:
        issues.append(Issue((), f"retention_months {value} is shorter than online_months {online}", value))
    floor = _legal_floor(info)
    if floor is not None and value < floor[1]:
        issues.append(
            Issue((), f"retention_months {value} is below the {floor[0]} minimum of {floor[1]} months", value)
        )
    _raise_issues(issues)
    return value


class _Windows:
    """Month arithmetic shared by a class and an effective (combined) retention."""

    if TYPE_CHECKING:  # declared by the subclasses; kept out of pydantic's field collection (and order)
        online_months: int
        retention_months: int

    def online_until(self, month_start: date) -> date:
        """First day the records of the month starting ``month_start`` are no longer kept online:
        the first day of the month ``online_months`` after the end of their month."""
        return dates.online_until(month_start, self.online_months)

    def dispose_after(self, month_start: date) -> date:
        """First day the records of the month starting ``month_start`` may be disposed of:
        the first day of the month ``retention_months`` after the end of their month."""
        return dates.dispose_after(month_start, self.retention_months)


class RetentionClass(_Model, _Windows):
    """A data class: rows selected by ``select`` stay online ``online_months`` after their month ends,
    then live archived until ``retention_months`` (total, counted the same way), then are crypto-erased.
    """

    # Declaration order is validation order: the window checks see legal_basis and online_months.
    name: Slug
    description: Text
    select: Selector
    disposal: Literal["crypto_erase"]
    legal_basis: LegalBasis
    online_months: Annotated[NonNegInt, AfterValidator(_online_months)]
    retention_months: Annotated[PosInt, AfterValidator(_retention_months)]
    kms_key_deletion_window_days: Annotated[StrictInt, Field(ge=7, le=30)] = 7


@dataclass(frozen=True)
class EffectiveRetention(_Windows):
    """The retention of a row that belongs to several classes: the longest online period and the
    longest retention of those classes, and the longest KMS key deletion window."""

    classes: tuple[str, ...]
    online_months: int
    retention_months: int
    kms_key_deletion_window_days: int


def _coherent_classes(
    classes: tuple[RetentionClass, ...], info: ValidationInfo
) -> tuple[RetentionClass, ...]:
    issues: list[Issue] = []
    column = classes[0].select.column if classes else ""
    for index, cls in enumerate(classes[1:], start=1):
        if cls.select.column != column:
            issues.append(
                Issue(
                    (index, "select", "column"),
                    f"all classes must select on the same column; the first selects on {column!r}",
                    cls.select.column,
                )
            )
    sources = _ctx(info).get("sources")
    if not issues and isinstance(sources, SourcesPolicy):
        covered = {v for cls in classes for v in cls.select.values}
        uncovered = [v for v in sources.audit_table.enums.get(column, ()) if v not in covered]
        if uncovered:
            issues.append(
                Issue(
                    (),
                    f"rows with {column} = {', '.join(map(repr, uncovered))} belong to no "
                    "class and would never be archived or disposed of",
                    uncovered,
                )
            )
    _raise_issues(issues)
    return classes


class RetentionPolicy(_Model):
    """Root of ``retention.yaml``. All classes select on the same logical column
    (:attr:`selector_column`); when that column has an enum, every enum value belongs to some class."""

    evidence: EvidenceRetention
    classes: Annotated[tuple[RetentionClass, ...], NonEmpty, AfterValidator(_coherent_classes)]

    @property
    def selector_column(self) -> str:
        """The logical column every class selects on (``standard`` in the shipped policy)."""
        return self.classes[0].select.column

    def class_named(self, name: str) -> RetentionClass:
        """The class called ``name``; ``KeyError`` if there is none."""
        for cls in self.classes:
            if cls.name == name:
                return cls
        raise KeyError(f"unknown retention class {name!r} (known: {', '.join(c.name for c in self.classes)})")

    def classes_for_row(self, value: str | None) -> list[RetentionClass]:
        """Classes whose selector matches a row whose :attr:`selector_column` holds ``value``
        (file order; empty for ``None`` or an unknown value)."""
        return [cls for cls in self.classes if value is not None and value in cls.select.values]

    def effective_for(self, values: Iterable[str | None]) -> EffectiveRetention | None:
        """Combined retention of rows with any of the selector ``values`` (e.g. ``["hipaa", "pci"]``):
        longest online period, longest retention, longest deletion window over every matching class.
        ``None`` when no class matches."""
        matched: dict[str, RetentionClass] = {}
        for value in values:
            for cls in self.classes_for_row(value):
                matched.setdefault(cls.name, cls)
        return self.effective_for_classes(matched)

    def effective_for_classes(self, names: Iterable[str]) -> EffectiveRetention | None:
        """Combined retention of the named classes (``KeyError`` for an unknown name); ``None`` if empty."""
        chosen = [self.class_named(n) for n in dict.fromkeys(names)]
        if not chosen:
            return None
        return EffectiveRetention(
            classes=tuple(c.name for c in chosen),
            online_months=max(c.online_months for c in chosen),
            retention_months=max(c.retention_months for c in chosen),
            kms_key_deletion_window_days=max(c.kms_key_deletion_window_days for c in chosen),
        )


# --------------------------------------------------------------------------------------------------
# aws.yaml


def _role_arn(value: str, info: ValidationInfo) -> str:
    match = _ROLE_ARN.match(value)
    if match is None:
        raise _fail(f"{value!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)", value)
    account = info.data.get("id")
    if isinstance(account, str) and match["account"] != account:
        raise _fail(f"role ARN is in account {match['account']}, not in {account}", value)
    return value


ALL_ENABLED = "all_enabled"


def _all_enabled_as_tuple(value: object) -> object:
    return (ALL_ENABLED,) if value == ALL_ENABLED else value


def _regions(value: tuple[str, ...]) -> tuple[str, ...]:
    if ALL_ENABLED in value and len(value) > 1:
        raise _fail(f"write either {ALL_ENABLED} or a list of regions, not both", list(value))
    return value


RegionOrAll = Annotated[StrictStr, AfterValidator(lambda v: v if v == ALL_ENABLED else _region(v))]
#: A list of regions, or ``all_enabled`` (held as ``("all_enabled",)``): each account's enabled regions.
Regions = Annotated[
    tuple[RegionOrAll, ...],
    NonEmpty,
    Unique,
    AfterValidator(_regions),
    BeforeValidator(_all_enabled_as_tuple),
]


class AwsAccount(_Model):
    """An assessed account: evidence is collected by assuming ``role_arn`` (in the same account) in each
    region — a list, or ``all_enabled`` (the account's enabled regions, found each run).
    ``endpoint_url`` empty means the AWS default endpoints (see :attr:`endpoint`)."""

    id: AccountId
    name: Slug
    role_arn: Annotated[StrictStr, AfterValidator(_role_arn)]
    regions: Regions
    endpoint_url: EndpointUrl = ""

    @property
    def endpoint(self) -> str | None:
        """The endpoint URL to pass to boto3, or ``None`` for the AWS default."""
        return self.endpoint_url or None


class PasswordPolicy(_Model):
    """The IAM account password policy baseline ``iam.password_policy`` compares against."""

    minimum_length: Annotated[StrictInt, Field(ge=6, le=128)]
    require_symbols: StrictBool
    require_numbers: StrictBool
    require_uppercase: StrictBool
    require_lowercase: StrictBool
    max_age_days: Annotated[StrictInt, Field(ge=1, le=1095)]
    reuse_prevention: Annotated[StrictInt, Field(ge=1, le=24)]


def _ou_id(value: str) -> str:
    if not _OU.match(value):
        raise _fail(f"{value!r} is not an organization root or OU id (r-xxxx or ou-xxxx-xxxxxxxx)", value)
    return value


def _role_name(value: str) -> str:
    if not _ROLE_NAME.match(value):
        raise _fail(f"{value!r} is not an IAM role name (or path/name)", value)
    return value


class AwsOrganization(_Model):
    """Every ACTIVE account of an AWS Organization, read through ``management_role_arn`` (the management
    account or a delegated administrator: ``organizations:List*``/``Describe*``), assessed through the
    role ``member_role_name`` in each; optionally only under ``include_ous``, never ``exclude_accounts``."""

    management_role_arn: Annotated[StrictStr, AfterValidator(_role_arn)]
    member_role_name: Annotated[StrictStr, AfterValidator(_role_name)]
    regions: Regions = (ALL_ENABLED,)
    include_ous: Annotated[tuple[Annotated[StrictStr, AfterValidator(_ou_id)], ...], Unique] = ()
    exclude_accounts: Annotated[tuple[AccountId, ...], Unique] = ()
    endpoint_url: EndpointUrl = ""

    @property
    def endpoint(self) -> str | None:
        return self.endpoint_url or None


class AwsCollection(_Model):
    """How ``evidence_collection`` spreads the work: ``accounts_per_task`` accounts per mapped task
    (each task costs a few seconds of start-up, so a task should have work worth it), but never more than
    ``max_tasks`` tasks (Airflow's ``max_map_length`` is 1,024 and every mapped task costs scheduler
    time): beyond that the groups grow. ``max_parallel`` collections run at once inside a task."""

    max_tasks: Annotated[StrictInt, Field(ge=1, le=1024)] = 256
    accounts_per_task: Annotated[StrictInt, Field(ge=1, le=1000)] = 10
    max_parallel: Annotated[StrictInt, Field(ge=1, le=64)] = 8


def _prowler_check(value: str) -> str:
    from attestly.scanners.mapping import prowler_mappings

    known = prowler_mappings()["all_checks"]
    if value not in known:
        close = difflib.get_close_matches(value, known, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _fail(
            f"{value!r} is not a check of Prowler {prowler_mappings()['prowler_version']}{hint}", value
        )
    return value


def _prowler_service(value: str) -> str:
    from attestly.scanners.mapping import prowler_mappings

    services = sorted({c.split("_", 1)[0] for c in prowler_mappings()["all_checks"]})
    if value not in services:
        close = difflib.get_close_matches(value, services, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _fail(f"{value!r} is not a Prowler AWS service{hint}", value)
    return value


ProwlerCheck = Annotated[StrictStr, AfterValidator(_prowler_check)]
ProwlerService = Annotated[StrictStr, AfterValidator(_prowler_service)]


class ProwlerSource(_Model):
    """Prowler, run per account through the same audit role, scoped by ``services`` or ``checks`` (not
    both: Prowler refuses it), minus ``excluded_checks``, skipping ``exclude_accounts``."""

    enabled: StrictBool = False
    services: Annotated[tuple[ProwlerService, ...], Unique] = ()
    checks: Annotated[tuple[ProwlerCheck, ...], Unique] = ()
    excluded_checks: Annotated[tuple[ProwlerCheck, ...], Unique] = ()
    exclude_accounts: Annotated[tuple[AccountId, ...], Unique] = ()
    timeout_minutes: Annotated[StrictInt, Field(ge=1, le=720)] = 120

    @model_validator(mode="after")
    def _one_scope(self) -> ProwlerSource:
        if self.services and self.checks:
            raise PydanticCustomError(
                "prowler_scope",
                "give services or checks, not both (Prowler refuses --services with --checks)",
                {},
            )
        return self


class SecurityHubSource(_Model):
    """AWS Security Hub's control findings: read in each account and region (``per_account``), or once
    from the delegated administrator's aggregation region (``aggregator``: ``aggregator_role_arn`` and
    ``aggregator_region``)."""

    enabled: StrictBool = False
    mode: Literal["per_account", "aggregator"] = "per_account"
    aggregator_role_arn: Annotated[StrictStr, AfterValidator(_role_arn)] | None = None
    aggregator_region: Region | None = None
    endpoint_url: EndpointUrl = ""

    @model_validator(mode="after")
    def _aggregator(self) -> SecurityHubSource:
        if self.mode == "aggregator" and not (self.aggregator_role_arn and self.aggregator_region):
            raise PydanticCustomError(
                "aggregator", "mode aggregator needs aggregator_role_arn and aggregator_region", {}
            )
        return self


class Sources(_Model):
    prowler: ProwlerSource = Field(default_factory=ProwlerSource)
    security_hub: SecurityHubSource = Field(default_factory=SecurityHubSource)


class AcceptedRisk(_Model):
    """A failure the organisation has decided to accept: which source check (``check``, a pattern on the
    evidence collector id such as ``prowler.s3_bucket_no_mfa_delete`` or ``securityhub.S3.*``), which
    resources (``resource`` pattern) in which ``accounts`` (all when empty), why, who approved it and
    until when. Until ``expires`` (inclusive) matching failures are recorded as accepted exceptions —
    listed in the reports, never dropped; from the next day on they are failures again."""

    check: Text
    resource: Text = "*"
    accounts: Annotated[tuple[AccountId, ...], Unique] = ()
    reason: Text
    approver: Text
    expires: date

    def covers(self, *, collector: str, resource: str, account: str) -> bool:
        return (
            fnmatch.fnmatchcase(collector, self.check)
            and fnmatch.fnmatchcase(resource, self.resource)
            and (not self.accounts or account in self.accounts)
        )


class AwsPolicy(_Model):
    """Root of ``aws.yaml``: the accounts assessed — listed (unique ids and names), from an
    ``organization``, or both — the regions left out everywhere, and the collector thresholds.
    String values may use ``${VAR}`` / ``${VAR:-default}``, resolved from the environment at load."""

    accounts: tuple[AwsAccount, ...] = ()
    organization: AwsOrganization | None = None
    exclude_regions: Annotated[tuple[Region, ...], Unique] = ()
    collection: AwsCollection = Field(default_factory=AwsCollection)
    sources: Sources = Field(default_factory=Sources)
    accepted_risks: tuple[AcceptedRisk, ...] = ()
    object_lock_required_buckets: Annotated[tuple[Text, ...], Unique] = ()
    admin_ports: Annotated[tuple[Port, ...], Unique] = ()
    database_ports: Annotated[tuple[Port, ...], Unique] = ()
    access_key_max_age_days: PosInt
    inactive_user_days: PosInt
    password_policy: PasswordPolicy
    rds_min_backup_retention_days: Annotated[StrictInt, Field(ge=1, le=35)]

    @model_validator(mode="after")
    def _some_accounts(self) -> AwsPolicy:
        if not self.accounts and self.organization is None:
            raise PydanticCustomError(
                "no_accounts",
                "aws.yaml assesses nothing: list accounts under 'accounts:', or give 'organization:'",
                {},
            )
        return self

    def requires_object_lock(self, bucket: str) -> bool:
        """Whether ``bucket`` matches an ``object_lock_required_buckets`` pattern (case-sensitive fnmatch)."""
        return any(fnmatch.fnmatchcase(bucket, pattern) for pattern in self.object_lock_required_buckets)

    def account(self, key: str) -> AwsAccount:
        """The account with this id or name; ``KeyError`` if there is none."""
        for acct in self.accounts:
            if key in (acct.id, acct.name):
                return acct
        raise KeyError(f"unknown AWS account {key!r}")


# --------------------------------------------------------------------------------------------------
# The whole policy


class Policy(_Model):
    """The validated policy. Build it with ``load_policy``; it is immutable.

    ``directory`` is where it was loaded from and ``fingerprint`` the SHA-256 over the four files'
    bytes (name-prefixed, sorted), so evidence and reports can record which policy they ran under.
    """

    directory: Path
    fingerprint: str
    frameworks: dict[Framework, FrameworkInfo]
    controls: dict[str, Control]
    manual_evidence: ManualEvidenceSettings
    retention: RetentionPolicy
    sources: SourcesPolicy
    aws: AwsPolicy

    def control(self, control_id: str) -> Control:
        """The control with this id; ``KeyError`` if there is none."""
        try:
            return self.controls[control_id]
        except KeyError:
            raise KeyError(f"unknown control {control_id!r}") from None

    def controls_for_collector(self, collector_id: str) -> list[str]:
        """Sorted ids of the controls a collector's evidence serves (the evidence item's ``controls``).

        ``KeyError`` for an id that is not a known collector (a typo in the caller); an empty list for a
        known collector no control uses.
        """
        if collector_id not in KNOWN_COLLECTORS:
            raise KeyError(f"unknown collector {collector_id!r}")
        return sorted(cid for cid, c in self.controls.items() if collector_id in c.collectors)

    def owners_for(self, collectors: Iterable[str]) -> list[str]:
        """Sorted owners of the controls the given collectors' evidence serves (who is told of a failure
        or a block)."""
        return sorted(
            {str(self.controls[cid].owner) for c in collectors for cid in self.controls_for_collector(c)}
        )

    def control_tags(self, collectors: Iterable[str]) -> list[str]:
        """``control:<framework>:<id>`` tags (sorted) for the controls the given collectors serve."""
        return sorted({f"control:{cid}" for c in collectors for cid in self.controls_for_collector(c)})

    def controls_for_framework(self, framework: str) -> list[Control]:
        """Controls of one framework, in file order."""
        return [c for c in self.controls.values() if c.framework == framework]

    def in_scope(self, control: Control) -> bool:
        """False for a SOC 2 criterion of a category the organisation has not put in scope."""
        category = control.category
        if category is None:
            return True
        info = self.frameworks.get("soc2")
        return info is None or category in info.categories_in_scope

    def cadences(self) -> dict[str, str]:
        """Each manual control's cadence (for the reports' evidence index)."""
        return {c.id: str(c.cadence) for c in self.controls.values() if c.manual and c.cadence}

    def manual_controls(self) -> list[Control]:
        """Controls in scope that need manual evidence on a cadence."""
        return [c for c in self.controls.values() if c.manual and self.in_scope(c)]

    def _source_coverage(self) -> dict[str, Any]:
        """What the enabled scanners can evidence against this policy (see scanners.mapping.coverage)."""
        from attestly.scanners.mapping import coverage

        prowler = self.aws.sources.prowler
        if not prowler.enabled:
            return {}
        return {"prowler": coverage(self.controls, services=prowler.services)}

    def summary(self) -> dict[str, Any]:
        """Counts for ``attestly policy check``: controls per framework, classes, sources, accounts."""
        per_framework = {f: len(self.controls_for_framework(f)) for f in FRAMEWORKS}
        return {
            "directory": str(self.directory),
            "fingerprint": self.fingerprint,
            "controls": {
                "total": len(self.controls),
                "by_framework": per_framework,
                "evidenced_by": {
                    f: {
                        k: sum(1 for c in self.controls_for_framework(f) if c.evidenced_by == k)
                        for k in ("automated", "manual", "both")
                    }
                    for f in FRAMEWORKS
                },
                "not_in_scope": sorted(c.id for c in self.controls.values() if not self.in_scope(c)),
                "soc2_categories_in_scope": list(self.frameworks["soc2"].categories_in_scope)
                if "soc2" in self.frameworks
                else [],
                "cross_framework_mappings": sum(len(c.maps_to) for c in self.controls.values()),
            },
            "retention_classes": [c.name for c in self.retention.classes],
            "sources": self.sources.source_names,
            "accounts": [{"id": a.id, "name": a.name, "regions": list(a.regions)} for a in self.aws.accounts],
            "scanners": self._source_coverage(),
            "organization": (
                {
                    "management_role_arn": self.aws.organization.management_role_arn,
                    "member_role_name": self.aws.organization.member_role_name,
                    "include_ous": list(self.aws.organization.include_ous),
                    "regions": list(self.aws.organization.regions),
                }
                if self.aws.organization
                else None
            ),
        }
