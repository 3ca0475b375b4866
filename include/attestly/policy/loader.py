"""Load and check the policy directory: every error in every file, each at its file, line and key.

``load_policy`` reads ``controls.yaml``, ``retention.yaml``, ``sources.yaml`` and ``aws.yaml`` from the
policy directory, parses them with line tracking (``yamlsource``), checks cross-record rules on the raw
data (unique ids and names), validates each file against its model (``models``) with the other files
as validation context, and raises :class:`PolicyErrors` with *all* problems, or returns a
:class:`Policy`. It never reads the clock, the network or anything outside the directory and the
environment (for ``${VAR}`` in ``aws.yaml``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from attestly.policy.errors import Loc, PolicyError, PolicyErrors, format_key_path
from attestly.policy.models import (
    POLICY_ERROR_TYPE,
    AwsPolicy,
    ControlsFile,
    Issue,
    Policy,
    RetentionPolicy,
    SourcesPolicy,
)
from attestly.policy.yamlsource import ParsedFile, parse_policy_yaml

#: The files of a policy directory, in the order errors are reported.
POLICY_FILES: tuple[str, ...] = ("controls.yaml", "retention.yaml", "sources.yaml", "aws.yaml")
#: Files whose string values undergo ``${VAR}`` interpolation.
INTERPOLATED_FILES: frozenset[str] = frozenset({"aws.yaml"})
#: A policy file larger than this is refused before it is parsed (the policy is read at DAG-parse time).
MAX_POLICY_FILE_BYTES = 4 * 1024 * 1024
#: Environment variable naming another policy directory.
POLICY_DIR_ENV = "ATTESTLY_POLICY_DIR"

#: Lists whose items must be unique by a key: (file, list key, item key).
_UNIQUE_ITEMS: tuple[tuple[str, str, str], ...] = (
    ("controls.yaml", "controls", "id"),
    ("retention.yaml", "classes", "name"),
    ("sources.yaml", "sources", "name"),
    ("aws.yaml", "accounts", "id"),
    ("aws.yaml", "accounts", "name"),
)

M = TypeVar("M", bound=BaseModel)


def policy_dir() -> Path:
    """The policy directory: ``$ATTESTLY_POLICY_DIR`` if set and non-empty, else ``<repo>/include/policy``
    (found relative to this package, so it works from any working directory)."""
    configured = os.environ.get(POLICY_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path(__file__).resolve().parent.parent.parent / "policy"


def load_policy(directory: Path | str | None = None, *, environ: Mapping[str, str] | None = None) -> Policy:
    """Load and validate the policy in ``directory`` (default :func:`policy_dir`).

    ``environ`` (default ``os.environ``) resolves ``${VAR}`` references in ``aws.yaml``. Raises
    :class:`PolicyErrors` listing every problem found in every file (sorted by file, then line).
    """
    root = Path(directory) if directory is not None else policy_dir()
    env: Mapping[str, str] = os.environ if environ is None else environ
    errors: list[PolicyError] = []
    parsed: dict[str, ParsedFile] = {}
    digest = hashlib.sha256()
    for name in POLICY_FILES:
        path = root / name
        try:
            size = path.stat().st_size
            if size > MAX_POLICY_FILE_BYTES:
                errors.append(
                    PolicyError(
                        name,
                        None,
                        "",
                        size,
                        f"file is {size:,} bytes; a policy file may hold at most {MAX_POLICY_FILE_BYTES:,}",
                    )
                )
                continue
            raw = path.read_bytes()[: MAX_POLICY_FILE_BYTES + 1]
        except FileNotFoundError:
            errors.append(
                PolicyError(name, None, "", str(path), f"file not found in policy directory {root}")
            )
            continue
        except OSError as exc:
            errors.append(PolicyError(name, None, "", str(path), f"cannot read file: {exc}"))
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
            errors.append(
                PolicyError(
                    name,
                    line,
                    "",
                    f"0x{raw[exc.start]:02x}",
                    f"not UTF-8: byte 0x{raw[exc.start]:02x} at line {line}, column {column} ({exc.reason})",
                )
            )
            continue
        digest.update(name.encode() + b"\0" + raw + b"\0")
        result = parse_policy_yaml(name, text, interpolate=name in INTERPOLATED_FILES, environ=env)
        errors.extend(result.errors)
        if result.data is not None:
            parsed[name] = result
            errors.extend(_unique_item_errors(result))

    sources = _validate(parsed.get("sources.yaml"), SourcesPolicy, {}, errors)

    controls_raw = parsed["controls.yaml"].data if "controls.yaml" in parsed else None
    control_ids = _raw_values(controls_raw, "controls", "id")
    # Undeclared frameworks are checked only when `frameworks:` is a mapping (else it has its own error).
    raw_frameworks = controls_raw.get("frameworks") if isinstance(controls_raw, dict) else None
    declared = set(raw_frameworks) if isinstance(raw_frameworks, dict) else None
    controls = _validate(
        parsed.get("controls.yaml"),
        ControlsFile,
        {"control_ids": control_ids, "declared_frameworks": declared},
        errors,
    )
    in_use = (
        {c.framework for c in controls.controls}
        if controls is not None
        else _raw_values(controls_raw, "controls", "framework")
    )
    retention = _validate(
        parsed.get("retention.yaml"),
        RetentionPolicy,
        {"sources": sources, "frameworks_in_use": in_use},
        errors,
    )
    aws = _validate(parsed.get("aws.yaml"), AwsPolicy, {}, errors)

    if errors or controls is None or retention is None or sources is None or aws is None:
        raise PolicyErrors(_sorted_unique(errors))
    return Policy(
        directory=root,
        fingerprint=digest.hexdigest(),
        frameworks=controls.frameworks,
        controls={c.id: c for c in controls.controls},
        manual_evidence=controls.manual_evidence,
        retention=retention,
        sources=sources,
        aws=aws,
    )


def check_policy_cli(directory: Path | str | None = None, as_json: bool = False) -> int:
    """``attestly policy check``: load the policy and report. Returns 0 when valid, 2 otherwise.

    Valid: prints a summary (controls per framework, retention classes, sources, accounts) — with
    ``as_json`` a JSON object ``{"ok": true, ...summary}``. Invalid: prints every error, one per line
    (``file:line: key_path: message``) on stdout and a count on stderr — with ``as_json`` a JSON list of
    ``{file, line, key_path, value, message}`` objects on stdout.
    """
    root = Path(directory) if directory is not None else policy_dir()
    try:
        policy = load_policy(root)
    except PolicyErrors as exc:
        if as_json:
            print(json.dumps([e.to_dict() for e in exc.errors], indent=2, ensure_ascii=False))
        else:
            for error in exc.errors:
                print(error)
            count = len(exc.errors)
            print(f"policy check failed: {count} error{'s' if count != 1 else ''} in {root}", file=sys.stderr)
        return 2
    summary = policy.summary()
    if as_json:
        print(json.dumps({"ok": True, **summary}, indent=2, ensure_ascii=False))
        return 0
    by_framework = summary["controls"]["by_framework"]
    print(f"policy OK: {summary['directory']}")
    print(
        f"  controls: {summary['controls']['total']} ("
        + ", ".join(
            f"{policy.frameworks[f].name if f in policy.frameworks else f}: {n}"
            for f, n in by_framework.items()
        )
        + ")"
    )
    ev = summary["controls"]["evidenced_by"]
    print(
        "  evidenced by: "
        + "; ".join(
            f"{f} {v['automated']} automated, {v['manual']} manual, {v['both']} both" for f, v in ev.items()
        )
    )
    print(
        f"  SOC 2 categories in scope: {', '.join(summary['controls']['soc2_categories_in_scope'])} "
        f"({len(summary['controls']['not_in_scope'])} criteria not in scope); "
        f"{summary['controls']['cross_framework_mappings']} cross-framework mappings"
    )
    classes = summary["retention_classes"]
    print(f"  retention classes: {len(classes)} ({', '.join(classes)})")
    print(f"  sources: {len(summary['sources'])} ({', '.join(summary['sources'])})")
    accounts = ", ".join(f"{a['id']} {a['name']}" for a in summary["accounts"])
    print(f"  aws accounts: {len(summary['accounts'])} ({accounts})")
    if summary.get("organization"):
        org = summary["organization"]
        print(
            f"  aws organization: every ACTIVE account via {org['management_role_arn']} "
            f"(role {org['member_role_name']}; OUs {', '.join(org['include_ous']) or 'all'}; "
            f"regions {', '.join(org['regions'])})"
        )
    cov = summary.get("scanners", {}).get("prowler")
    if cov:
        lacking = cov["controls_mapped_but_not_in_policy"]
        unmapped = cov["checks_mapping_to_no_control"]
        print(
            f"  prowler {cov['prowler_version']}: {cov['checks']} checks in scope, "
            f"{cov['checks_mapped_to_policy_controls']} evidence policy controls; Prowler maps checks to "
            f"{len(lacking)} control(s) the policy lacks"
            + (f" ({', '.join(lacking[:8])}{', ...' if len(lacking) > 8 else ''})" if lacking else "")
            + f"; {len(unmapped)} check(s) map to no control"
            + (f" ({', '.join(unmapped[:5])}{', ...' if len(unmapped) > 5 else ''})" if unmapped else "")
        )
    print(f"  fingerprint: {summary['fingerprint']}")
    return 0


# --------------------------------------------------------------------------------------------------
# internals


def _raw_values(data: object, list_key: str, item_key: str) -> set[str]:
    if not isinstance(data, dict) or not isinstance(data.get(list_key), list):
        return set()
    return {
        item[item_key]
        for item in data[list_key]
        if isinstance(item, dict) and isinstance(item.get(item_key), str)
    }


def _unique_item_errors(parsed: ParsedFile) -> list[PolicyError]:
    errors: list[PolicyError] = []
    data = parsed.data
    for file, list_key, item_key in _UNIQUE_ITEMS:
        if file != parsed.name or not isinstance(data, dict) or not isinstance(data.get(list_key), list):
            continue
        first: dict[object, int] = {}
        for index, item in enumerate(data[list_key]):
            if not isinstance(item, dict) or item_key not in item:
                continue
            value = item[item_key]
            try:
                seen = first.setdefault(value, index)
            except TypeError:  # unhashable; its type error is reported by validation
                continue
            if seen != index:
                loc: Loc = (list_key, index, item_key)
                errors.append(
                    parsed.error(loc, value, f"duplicate {item_key} {value!r} (also {list_key}[{seen}])")
                )
    return errors


def _validate(
    parsed: ParsedFile | None, model: type[M], context: dict[str, Any], errors: list[PolicyError]
) -> M | None:
    if parsed is None:
        return None
    try:
        return model.model_validate(parsed.data, context=context)
    except ValidationError as exc:
        errors.extend(_translate(exc, parsed, model))
        return None


def _translate(exc: ValidationError, parsed: ParsedFile, model: type[BaseModel]) -> list[PolicyError]:
    out: list[PolicyError] = []
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(err["loc"])
        value: object = err.get("input")
        ctx = err.get("ctx") or {}
        kind = err["type"]
        if kind == POLICY_ERROR_TYPE and ctx.get("issues"):
            base = loc[:-1] if loc and loc[-1] == "[key]" else loc
            for issue in ctx["issues"]:
                if isinstance(issue, Issue):
                    out.append(parsed.error((*base, *issue.at), issue.value, issue.message))
            continue
        is_key = bool(loc) and loc[-1] == "[key]"
        if is_key:
            loc = loc[:-1]
        if kind == "extra_forbidden":
            message = _unknown_key_message(model, loc)
        elif kind == "missing":
            message = f"missing required key {loc[-1]!r}" if loc else "missing value"
            value = None
        else:
            text = _FRIENDLY.get(kind) or str(err["msg"]).removeprefix("Value error, ")
            message = f"{text} (got {_brief(value, 'key' if is_key else 'value')})"
        out.append(parsed.error(loc, value, message))
    return out


#: Clearer wording for pydantic error types whose own message names internal classes.
_FRIENDLY: dict[str, str] = {
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
    "dict_type": "expected a mapping (key: value)",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
}


def _brief(value: object, subject: str) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return f"{subject} {text if len(text) <= 80 else text[:77] + '...'}"


def _unknown_key_message(model: type[BaseModel], loc: Loc) -> str:
    key = str(loc[-1]) if loc else ""
    allowed = _allowed_keys(model, loc[:-1])
    message = f"unknown key {key!r}"
    if allowed:
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        message += f"; allowed keys: {', '.join(allowed)}"
    return message


def _allowed_keys(model: type[BaseModel], loc: Loc) -> list[str]:
    """Keys a mapping at ``loc`` may hold, found by walking the model's field annotations."""
    current: object = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {(f.alias or n): f for n, f in current.model_fields.items()}
            if not isinstance(part, str) or part not in fields:
                return []
            current = fields[part].annotation
            continue
        origin, args = get_origin(current), get_args(current)
        if origin in (list, tuple) and args:
            current = args[0]
        elif origin is dict and len(args) == 2:
            current = args[1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _unwrap(tp: object) -> object:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _sorted_unique(errors: list[PolicyError]) -> list[PolicyError]:
    order = {name: i for i, name in enumerate(POLICY_FILES)}
    unique: dict[tuple[str, int | None, str, str], PolicyError] = {}
    for error in errors:
        unique.setdefault((error.file, error.line, error.key_path, error.message), error)
    return sorted(
        unique.values(),
        key=lambda e: (order.get(e.file, len(order)), e.line is None, e.line or 0, e.key_path),
    )


__all__ = [
    "INTERPOLATED_FILES",
    "POLICY_DIR_ENV",
    "POLICY_FILES",
    "check_policy_cli",
    "format_key_path",
    "load_policy",
    "policy_dir",
]
