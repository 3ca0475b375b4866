"""Text that people type into the permanent record (erasure requests, approvals, legal holds): checked
before anything is written, so the ledger never holds control characters, bidi overrides that make a
reason read differently than it is stored, or pages of text.

Every function returns the stripped value or raises :class:`TextInputError` naming the option, the
offending character (code point and position) or the length, and the limit.
"""

from __future__ import annotations

import re
import unicodedata

#: Free text (reasons): at most this many characters.
MAX_TEXT = 500
#: Names and ids (requester, approver, subject, source): at most this many characters.
MAX_NAME = 128


class TextInputError(ValueError):
    """Input refused; the message names the option and why."""


def _forbidden(ch: str) -> bool:
    # Cc: control characters (newlines, escapes); Cf: format characters (RTL/LTR overrides and isolates,
    # zero-width joiners, BOM); Zl/Zp: line and paragraph separators; Cs/Co/Cn: surrogates, private use,
    # unassigned.
    return unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}


def clean_text(value: str, *, option: str, max_len: int = MAX_TEXT) -> str:
    """One line of printable text, 1..``max_len`` characters after stripping."""
    text = (value or "").strip()
    if not text:
        raise TextInputError(f"{option}: must not be empty")
    if len(text) > max_len:
        raise TextInputError(f"{option}: {len(text):,} characters; at most {max_len:,}")
    for i, ch in enumerate(text):
        if _forbidden(ch):
            name = unicodedata.name(ch, "control character")
            raise TextInputError(
                f"{option}: character U+{ord(ch):04X} ({name}) at position {i + 1} is not allowed "
                "(control, format and bidi-override characters are refused)"
            )
    return text


def clean_name(value: str, *, option: str) -> str:
    """A person's or a source's name: :func:`clean_text` of at most :data:`MAX_NAME` characters."""
    return clean_text(value, option=option, max_len=MAX_NAME)


def clean_subject_id(value: str, *, option: str, pattern: str) -> str:
    """A data subject id that matches the configured ``pattern`` (``sources.yaml``
    ``audit_table.subject_id_pattern``) as a whole."""
    subject = clean_name(value, option=option)
    if re.fullmatch(pattern, subject) is None:
        shown = subject if len(subject) <= 40 else subject[:40] + "…"
        raise TextInputError(
            f"{option}: {shown!r} is not a subject id of this audit log (sources.yaml "
            f"audit_table.subject_id_pattern: {pattern})"
        )
    return subject
