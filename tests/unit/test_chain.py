"""The hash-chain encoding is unambiguous and matches PostgreSQL's text forms (checked live in integration)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from attestly.audit import chain

pytestmark = pytest.mark.unit


def _row(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": uuid.UUID("12345678-1234-4678-9234-567812345678"),
        "timestamp": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "source": "s",
        "sequence": 7,
        "action": "read",
        "metadata": {"b": 1, "aa": [True, None, "x"]},
    }
    base.update(kw)
    return base


def test_jsonb_text_orders_keys_like_postgres() -> None:
    assert chain.jsonb_text({"bb": 1, "a": 'q"\n', "ccc": {"z": False}}) == (
        '{"a": "q\\"\\n", "bb": 1, "ccc": {"z": false}}'
    )


def test_floats_are_refused_in_hashed_metadata() -> None:
    with pytest.raises(chain.ChainError, match="floats"):
        chain.row_hash(_row(metadata={"x": 1.5}))


def test_null_and_empty_string_hash_differently() -> None:
    assert chain.row_hash(_row(action=None)) != chain.row_hash(_row(action=""))


def test_field_boundaries_are_unambiguous() -> None:
    assert chain.row_hash(_row(source="a|1:b", action="c")) != chain.row_hash(
        _row(source="a", action="1:b|c")
    )


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(chain.ChainError, match="timezone-aware"):
        chain.row_hash(_row(timestamp=datetime(2026, 1, 1)))


def test_prev_hash_is_part_of_the_row() -> None:
    assert chain.row_hash(_row(prev_hash=b"\x00" * 32)) != chain.row_hash(_row(prev_hash=b"\x01" * 32))
