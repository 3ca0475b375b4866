"""YAML loading that remembers where every key and value came from.

``parse_policy_yaml`` composes the document into PyYAML nodes (safe tags only), builds plain Python
data from them and records the 1-based line of every key path, so later validation errors (pydantic's
``loc`` or our own rules) can be reported at the right line. It also reports what plain ``yaml.safe_load``
silently accepts: duplicate keys in a mapping (the first occurrence wins), merge keys and recursive
aliases. With ``interpolate=True`` string values (not keys) may contain ``${VAR}`` or ``${VAR:-default}``
resolved from ``environ`` (the default applies when VAR is unset or empty); ``$$`` is a literal ``$``.

Loading is bounded, because the policy is read at DAG-parse time: aliases may expand to at most
:data:`MAX_ALIAS_VALUES` values in all (a few hundred bytes of nested aliases — a "billion laughs" —
would otherwise expand to billions), a document may nest at most :data:`MAX_DEPTH` levels, and a
document that PyYAML cannot compose for its depth is an error, not a crash.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from attestly.policy.errors import Loc, PolicyError, format_key_path

#: Values that aliases (``*name``) may expand to, over the whole document.
MAX_ALIAS_VALUES = 10_000
#: Nesting levels of mappings and sequences.
MAX_DEPTH = 64
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_TOKEN = re.compile(r"\$\$|\$\{[^}]*\}|\$\{")
#: libyaml's composer when PyYAML was built with it (about 8x faster: the policy is read at DAG-parse
#: time, and the full catalogs are ~6,000 lines), else the pure-Python one. Both give the same nodes.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_REFERENCE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)


@dataclass
class ParsedFile:
    """A policy file as plain data plus the line of every key path.

    ``data`` is ``None`` when the file could not be parsed at all (syntax error, empty file); ``errors``
    holds the problems found while parsing (the data, if any, is still usable for further checks).
    """

    name: str
    data: object
    lines: dict[Loc, int] = field(default_factory=dict)
    errors: list[PolicyError] = field(default_factory=list)

    def line_for(self, loc: Loc) -> int | None:
        """Line of ``loc``, or of its longest prefix that exists in the file (a missing key's parent)."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return None

    def error(self, loc: Loc, value: object, message: str) -> PolicyError:
        """A :class:`PolicyError` for ``loc`` in this file, at the line of ``loc``."""
        return PolicyError(self.name, self.line_for(loc), format_key_path(loc), value, message)


def parse_policy_yaml(
    name: str, text: str, *, interpolate: bool = False, environ: Mapping[str, str] | None = None
) -> ParsedFile:
    """Parse one YAML document (safe tags only) into a :class:`ParsedFile`; never raises for bad input."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        context = exc.context
        if context and exc.context_mark is not None and exc.problem_mark is not None:
            context += f" (started on line {exc.context_mark.line + 1})"
        detail = "; ".join(p for p in (context, exc.problem) if p) or "invalid YAML"
        return ParsedFile(
            name, None, errors=[PolicyError(name, line, "", None, f"YAML syntax error: {detail}")]
        )
    except yaml.YAMLError as exc:
        return ParsedFile(name, None, errors=[PolicyError(name, None, "", None, f"YAML syntax error: {exc}")])
    except RecursionError:
        return ParsedFile(
            name,
            None,
            errors=[
                PolicyError(
                    name, None, "", None, f"nested too deeply to read (the limit is {MAX_DEPTH} levels)"
                )
            ],
        )
    if root is None:
        return ParsedFile(name, None, errors=[PolicyError(name, None, "", None, "file is empty")])
    builder = _Builder(name, interpolate=interpolate, environ=environ or {})
    try:
        data = builder.build(root, ())
    except _LimitExceeded as exc:
        return ParsedFile(name, None, builder.lines, [*builder.errors, exc.error])
    return ParsedFile(name, data, builder.lines, builder.errors)


class _LimitExceeded(Exception):
    def __init__(self, error: PolicyError) -> None:
        super().__init__(str(error))
        self.error = error


class _Builder:
    def __init__(self, name: str, *, interpolate: bool, environ: Mapping[str, str]) -> None:
        self.name = name
        self.interpolate = interpolate
        self.environ = environ
        self.lines: dict[Loc, int] = {}
        self.errors: list[PolicyError] = []
        self._constructor = SafeConstructor()
        self._active: set[int] = set()
        self._seen: set[int] = set()
        self._in_alias = 0
        self._alias_values = 0

    def _error(self, loc: Loc, line: int, value: object, message: str) -> None:
        self.errors.append(PolicyError(self.name, line, format_key_path(loc), value, message))

    def build(self, node: Node, loc: Loc) -> object:
        line = node.start_mark.line + 1
        self.lines.setdefault(loc, line)
        if id(node) in self._active:
            self._error(loc, line, None, "recursive YAML alias")
            return None
        if len(loc) > MAX_DEPTH:
            raise _LimitExceeded(
                PolicyError(
                    self.name,
                    line,
                    format_key_path(loc[:MAX_DEPTH]),
                    None,
                    f"nested more than {MAX_DEPTH} levels deep",
                )
            )
        alias = id(node) in self._seen  # a node built before is reached again through an alias
        self._seen.add(id(node))
        self._in_alias += alias
        if self._in_alias:
            self._alias_values += 1
            if self._alias_values > MAX_ALIAS_VALUES:
                raise _LimitExceeded(
                    PolicyError(
                        self.name,
                        line,
                        format_key_path(loc),
                        None,
                        f"YAML aliases expand to more than {MAX_ALIAS_VALUES:,} values (nested "
                        "aliases, as in a 'billion laughs' document); write the values out",
                    )
                )
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, loc)
            if isinstance(node, SequenceNode):
                return [self.build(child, (*loc, i)) for i, child in enumerate(node.value)]
            return self._scalar(node, loc)
        finally:
            self._active.discard(id(node))
            self._in_alias -= alias

    def _scalar(self, node: Node, loc: Loc) -> object:
        line = node.start_mark.line + 1
        try:
            value = self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self._error(loc, line, getattr(node, "value", None), f"cannot load value: {exc}")
            return None
        if self.interpolate and isinstance(value, str) and node.tag == _STR_TAG:
            return self._interpolate(value, loc, line)
        return value

    def _mapping(self, node: MappingNode, loc: Loc) -> dict[object, object]:
        out: dict[object, object] = {}
        first_line: dict[object, int] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                self._error(loc, key_line, "<<", "YAML merge keys ('<<') are not supported; write keys out")
                continue
            if not isinstance(key_node, ScalarNode):
                self._error(loc, key_line, None, "a mapping key must be a plain scalar")
                continue
            try:
                key = self._constructor.construct_object(key_node, deep=True)
            except yaml.YAMLError as exc:
                self._error(loc, key_line, key_node.value, f"cannot load key: {exc}")
                continue
            if not isinstance(key, str | int | bool | float) and key is not None:
                key = str(key)
            child_loc: Loc = (*loc, key if isinstance(key, str | int) else str(key))
            if key in first_line:
                self._error(
                    child_loc,
                    key_line,
                    key,
                    f"duplicate key {key!r} (first defined on line {first_line[key]}; the first one is used)",
                )
                continue
            first_line[key] = key_line
            self.lines[child_loc] = key_line
            out[key] = self.build(value_node, child_loc)
        return out

    def _interpolate(self, text: str, loc: Loc, line: int) -> str:
        pieces: list[str] = []
        pos = 0
        for match in _TOKEN.finditer(text):
            pieces.append(text[pos : match.start()])
            pos = match.end()
            token = match.group(0)
            if token == "$$":  # noqa: S105 - an escaped dollar, not a password
                pieces.append("$")
                continue
            ref = _REFERENCE.match(token[2:-1]) if token.endswith("}") else None
            if ref is None:
                self._error(
                    loc, line, text, f"malformed reference {token!r}: write ${{VAR}} or ${{VAR:-default}}"
                )
                continue
            var, default = ref.group(1), ref.group(2)
            current = self.environ.get(var)
            if default is not None and not current:
                pieces.append(default)
            elif current is not None:
                pieces.append(current)
            else:
                self._error(
                    loc,
                    line,
                    text,
                    f"environment variable {var!r} is not set and has no default "
                    f"(set it, or write ${{{var}:-default}})",
                )
        pieces.append(text[pos:])
        return "".join(pieces)
