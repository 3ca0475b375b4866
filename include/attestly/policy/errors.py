"""Policy errors: each names the file, the line, the key path and the offending value."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

Loc = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")


def format_key_path(loc: Iterable[str | int]) -> str:
    """Render a location as ``controls[3].collectors[1]`` (odd keys as ``["a.b"]``)."""
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(str(part)):
            out += f".{part}" if out else str(part)
        else:
            escaped = str(part).replace("\\", "\\\\").replace('"', '\\"')
            out += f'["{escaped}"]'
    return out


def jsonable(value: object) -> Any:
    """A JSON-serialisable rendering of an offending value (dates as ISO strings, tuples as lists)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return repr(value)


@dataclass(frozen=True)
class PolicyError:
    """One problem in one policy file.

    ``file`` is the file name relative to the policy directory (``controls.yaml``); ``line`` is 1-based,
    ``None`` when the problem has no position (missing file); ``key_path`` looks like
    ``controls[3].collectors[1]`` (empty for the whole file); ``value`` is the offending value as loaded
    (``None`` for a missing key). ``str()`` gives ``file:line: key_path: message``.
    """

    file: str
    line: int | None
    key_path: str
    value: object
    message: str

    def __str__(self) -> str:
        parts = [f"{self.file}:{self.line}" if self.line is not None else self.file]
        if self.key_path:
            parts.append(self.key_path)
        parts.append(self.message)
        return ": ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """``{file, line, key_path, value, message}`` with a JSON-serialisable value."""
        return {
            "file": self.file,
            "line": self.line,
            "key_path": self.key_path,
            "value": jsonable(self.value),
            "message": self.message,
        }


class PolicyErrors(ValueError):
    """Raised by ``load_policy`` with *every* problem found (across all files), never just the first.

    ``errors`` is the list of :class:`PolicyError`, ordered by file then line. ``str()`` is one error per
    line, so an Airflow import error in the UI shows them all.
    """

    def __init__(self, errors: Sequence[PolicyError]) -> None:
        self.errors: list[PolicyError] = list(errors)
        count = len(self.errors)
        header = f"invalid policy: {count} error{'s' if count != 1 else ''}"
        super().__init__("\n".join([header, *(str(e) for e in self.errors)]))
