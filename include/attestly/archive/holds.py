"""Moved to :mod:`attestly.holds` (shared by the archive and key disposal); this name is kept for
existing imports."""

from __future__ import annotations

from attestly.holds import (
    Hold,
    HoldError,
    add_hold,
    audit_active_holds,
    covers,
    get_hold,
    held_condition,
    hold_range,
    list_holds,
    mirror_holds,
    reconcile_holds,
    release_hold,
)

__all__ = [
    "Hold",
    "HoldError",
    "add_hold",
    "audit_active_holds",
    "covers",
    "get_hold",
    "held_condition",
    "hold_range",
    "list_holds",
    "mirror_holds",
    "reconcile_holds",
    "release_hold",
]
