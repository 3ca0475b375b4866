"""The per-source hash chain of the audit log: one definition, in Python and in SQL.

``row_hash = sha256(utf8(canonical_row))`` where ``canonical_row`` joins, with ``|``, every hashed field
rendered as ``<length>:<text>`` (or ``-`` for NULL), in the order of :data:`HASHED_FIELDS`. Length
prefixes make the encoding unambiguous whatever the text holds. ``prev_hash`` is the ``row_hash`` of the
same source's previous event (``seq - 1``); the first event of a source has none. ``recorded_at`` is not
hashed: the database sets it on insert, after the application has computed the hash.

Text forms (what PostgreSQL prints, so the SQL form can recompute the hash in place):
uuid lower-case hyphenated; timestamps ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC; integers in decimal;
inet as ``host()``; jsonb as PostgreSQL's canonical jsonb text (keys ordered by length then bytes,
``", "`` and ``": "`` separators); bytea as lower-case hex. :func:`jsonb_text` reproduces jsonb's text for
strings, integers, booleans, null, arrays and objects — metadata must stay within those types (floats are
refused, because their text form differs between Python and PostgreSQL).

The module imports nothing from Airflow: auditors can recompute a chain with it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

# Logical column names (as in sources.yaml), in hashing order.
HASHED_FIELDS: tuple[str, ...] = (
    "id",
    "timestamp",
    "source",
    "sequence",
    "event_type",
    "actor",
    "resource",
    "action",
    "result",
    "ip",
    "user_agent",
    "metadata",
    "severity",
    "standard",
    "subject",
    "phi_ciphertext",
    "subject_key_id",
    "prev_hash",
)

_KIND: dict[str, str] = {
    "id": "uuid",
    "timestamp": "timestamptz",
    "sequence": "int",
    "ip": "inet",
    "metadata": "jsonb",
    "phi_ciphertext": "bytea",
    "prev_hash": "bytea",
}


class ChainError(ValueError):
    """A value that cannot be hashed canonically (the message names the field and why)."""


def _json_escape(s: str) -> str:
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def jsonb_text(value: Any) -> str:
    """PostgreSQL's text output of ``value::jsonb`` (see module docstring for the supported types)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise ChainError(f"metadata value {value!r}: floats are not allowed in hashed metadata")
    if isinstance(value, str):
        if "\x00" in value:
            raise ChainError("metadata string contains NUL, which jsonb cannot store")
        return _json_escape(value)
    if isinstance(value, Mapping):
        keys = sorted(value.keys(), key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(f"{_json_escape(k)}: {jsonb_text(value[k])}" for k in keys) + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(jsonb_text(v) for v in value) + "]"
    raise ChainError(f"metadata value {value!r} of type {type(value).__name__} is not JSON")


def _text(field: str, value: Any) -> str | None:
    if value is None:
        return None
    kind = _KIND.get(field, "text")
    if kind == "uuid":
        return str(uuid.UUID(str(value)))
    if kind == "timestamptz":
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ChainError(f"{field}: {value!r} must be a timezone-aware datetime")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if kind == "int":
        return str(int(value))
    if kind == "inet":
        import ipaddress

        return str(ipaddress.ip_address(str(value)))
    if kind == "jsonb":
        return jsonb_text(value)
    if kind == "bytea":
        return bytes(value).hex()
    return str(value)


def canonical_row(row: Mapping[str, Any]) -> str:
    """The canonical text of a row given by logical column names (missing keys count as NULL)."""
    parts = []
    for field in HASHED_FIELDS:
        text = _text(field, row.get(field))
        parts.append("-" if text is None else f"{len(text)}:{text}")
    return "|".join(parts)


def row_hash(row: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(canonical_row(row).encode("utf-8")).digest()


def sql_row_hash(columns: Mapping[str, str], alias: str = "e") -> str:
    """A SQL expression computing ``row_hash`` of the row ``alias`` in PostgreSQL.

    ``columns`` maps logical names to the user's column names (``Policy.sources`` mapping). Column names
    are quoted as identifiers; nothing user-controlled is interpolated as a value.
    """

    def ident(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    pieces = []
    for field in HASHED_FIELDS:
        col = f"{alias}.{ident(columns[field])}"
        kind = _KIND.get(field, "text")
        if kind == "timestamptz":
            text = f"""to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
        elif kind == "inet":
            text = f"host({col})"
        elif kind == "bytea":
            text = f"encode({col}, 'hex')"
        else:
            text = f"{col}::text"
        pieces.append(f"coalesce(length({text})::text || ':' || {text}, '-')")
    return "sha256(convert_to(" + " || '|' || ".join(pieces) + ", 'UTF8'))"
