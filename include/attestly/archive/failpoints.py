"""Moved to :mod:`attestly.failpoints` (shared by the archive, disposal and manual-evidence workflows);
this name is kept for existing imports."""

from __future__ import annotations

from attestly.failpoints import (
    ARCHIVE_FAILPOINTS,
    DISPOSAL_FAILPOINTS,
    ENV,
    EXIT_CODE,
    KNOWN_FAILPOINTS,
    MANUAL_FAILPOINTS,
    UnknownFailpoint,
    enabled,
    hit,
)

__all__ = [
    "ARCHIVE_FAILPOINTS",
    "DISPOSAL_FAILPOINTS",
    "ENV",
    "EXIT_CODE",
    "KNOWN_FAILPOINTS",
    "MANUAL_FAILPOINTS",
    "UnknownFailpoint",
    "enabled",
    "hit",
]
