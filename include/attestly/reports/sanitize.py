"""The only way text from evidence reaches a report or an e-mail: whitelisted fields, cleaned.

Evidence contains no PHI or secrets by design (the collectors' contract). Reports still never trust
that: they render only whitelisted fields (collector, scope values, result, and each finding's
``resource``, ``status`` and ``detail``; never ``data``), and every such string goes through
:func:`clean_text`, which removes control characters, masks what looks like a US SSN, a payment card
number (13-19 digits passing the Luhn check), an e-mail-style ``password=``/``secret:``/``token=``
value or an AWS secret access key, and truncates. Templates autoescape HTML on top of this.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MAX_TEXT = 300
REDACTED = "[redacted]"

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SSN = re.compile(r"(?<!\d)\d{3}[- ]\d{2}[- ]\d{4}(?!\d)")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_SECRET_KV = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key[_-]?secret)(\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|\S+)"
)
# 40 characters of base64 alphabet with at least one lower, upper and digit: an AWS secret access key.
_AWS_SECRET = re.compile(
    r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]*[a-z])(?=[A-Za-z0-9/+]*[A-Z])(?=[A-Za-z0-9/+]*\d)[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return REDACTED if 13 <= len(digits) <= 19 and _luhn_ok(digits) else match.group(0)


def clean_text(value: object, *, limit: int = MAX_TEXT) -> str:
    """A display-safe single string: masked, without control characters, at most ``limit`` characters."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    text = _CONTROL.sub(" ", text)
    text = _SECRET_KV.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _SSN.sub(REDACTED, text)
    text = _CARD.sub(_card, text)
    text = _AWS_SECRET.sub(REDACTED, text)
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def clean_scope(scope: Mapping[str, Any]) -> dict[str, str]:
    """Scope keys and values, cleaned and sorted."""
    return {clean_text(k, limit=60): clean_text(v, limit=120) for k, v in sorted(scope.items())}


def scope_label(scope: Mapping[str, Any]) -> str:
    """``account=111111111111 region=global`` (cleaned)."""
    return " ".join(f"{k}={v}" for k, v in clean_scope(scope).items())
