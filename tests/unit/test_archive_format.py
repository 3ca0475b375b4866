"""The archive's pure parts: the chunked AES-GCM format (truncation, reordering, tampering detected;
random access), the content hash, retention scopes and batch naming, failpoints."""

from __future__ import annotations

import hashlib
import io
import os
import struct
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attestly.archive import crypto, failpoints, planning
from attestly.archive.schema import Figures
from attestly.policy import load_policy

pytestmark = pytest.mark.unit

KEY = bytes(range(32))
CS = 1024  # small chunks, many of them


def seal(data: bytes, *, chunk_size: int = CS, writes: int = 7) -> bytes:
    out = bytearray()
    w = crypto.EncryptingWriter(
        data_key=KEY, batch_id="b.1", key_id="archive/x/2026-01", sink=out.extend, chunk_size=chunk_size
    )
    step = max(1, len(data) // writes)
    for i in range(0, len(data), step):
        w.write(data[i : i + step])
    w.close()
    assert w.sha256 == hashlib.sha256(out).hexdigest() and w.object_bytes == len(out)
    return bytes(out)


def open_all(blob: bytes, key: bytes = KEY) -> bytes:
    return b"".join(
        crypto.decrypt_stream([blob[i : i + 333] for i in range(0, len(blob), 333)], data_key=key)
    )


def layout(blob: bytes) -> tuple[int, int]:
    """(offset of the first chunk, sealed chunk size)."""
    _, offset = crypto.parse_header(blob)
    return offset, CS + crypto.TAG_BYTES


@pytest.mark.parametrize("size", [0, 1, CS - 1, CS, CS + 1, 5 * CS, 5 * CS + 17])
def test_round_trip_for_every_boundary(size: int) -> None:
    data = os.urandom(size)
    blob = seal(data)
    assert open_all(blob) == data
    offset, _ = layout(blob)
    assert (
        len(blob) - offset == max(1, -(-size // CS)) * crypto.TAG_BYTES + size
    )  # one tag per chunk, >= 1 chunk


def test_each_object_gets_a_fresh_key_so_equal_plaintexts_differ() -> None:
    data = b"same" * 1000
    assert seal(data) != seal(data)


@pytest.mark.parametrize("chunks_kept", [0, 1, 2])
def test_truncation_at_a_chunk_boundary_is_detected(chunks_kept: int) -> None:
    blob = seal(os.urandom(3 * CS + 10))
    offset, sealed = layout(blob)
    with pytest.raises(crypto.ArchiveFormatError, match=f"chunk {max(0, chunks_kept - 1)}|truncated"):
        open_all(blob[: offset + chunks_kept * sealed])


def test_reordered_extended_or_altered_chunks_are_detected() -> None:
    blob = seal(os.urandom(3 * CS + 10))
    offset, sealed = layout(blob)
    c = [blob[offset + i * sealed : offset + (i + 1) * sealed] for i in range(4)]
    head = blob[:offset]
    with pytest.raises(crypto.ArchiveFormatError, match="chunk 0"):
        open_all(head + c[1] + c[0] + c[2] + c[3])
    with pytest.raises(crypto.ArchiveFormatError, match="chunk 3"):
        open_all(head + c[0] + c[1] + c[2] + c[3] + c[3])  # a chunk sealed final is not final any more
    flipped = bytearray(blob)
    flipped[offset + sealed + 5] ^= 1
    with pytest.raises(crypto.ArchiveFormatError, match="chunk 1"):
        open_all(bytes(flipped))
    with pytest.raises(crypto.ArchiveFormatError, match="chunk 0"):
        open_all(blob, key=bytes(32))


def test_a_swapped_header_fails_every_chunk() -> None:
    blob = seal(os.urandom(2 * CS))
    header, offset = crypto.parse_header(blob)
    other = crypto.Header(
        batch_id="b.2", key_id=header.key_id, salt=header.salt, chunk_size=header.chunk_size
    )
    with pytest.raises(crypto.ArchiveFormatError):
        open_all(other.to_bytes() + blob[offset:])
    with pytest.raises(crypto.ArchiveFormatError, match="magic"):
        crypto.parse_header(b"PK\x03\x04" + blob[4:])
    bad_len = blob[:8] + struct.pack(">I", 10**6) + blob[12:]
    with pytest.raises(crypto.ArchiveFormatError, match="implausible"):
        crypto.parse_header(bad_len)


def test_random_access_reads_parquet_without_decrypting_everything() -> None:
    table = pa.table({"id": [f"{i:08d}" for i in range(20_000)], "h": [f"{i:064x}" for i in range(20_000)]})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=4096, compression="zstd")
    blob = seal(buf.getvalue(), chunk_size=8192)
    fetched: list[tuple[int, int]] = []

    def fetch(start: int, end: int) -> bytes:
        fetched.append((start, end))
        return blob[start:end]

    reader = crypto.RandomAccessDecryptor(fetch=fetch, size=len(blob), data_key=KEY, expect_batch_id="b.1")
    assert reader.size == len(buf.getvalue())
    assert pq.ParquetFile(reader).read(columns=["id"]).column(0).to_pylist() == table.column("id").to_pylist()
    reader.seek(0)
    assert reader.read() == buf.getvalue()
    with pytest.raises(crypto.ArchiveFormatError, match="belongs to batch"):
        crypto.RandomAccessDecryptor(fetch=fetch, size=len(blob), data_key=KEY, expect_batch_id="b.9")
    _, offset = crypto.parse_header(blob)
    truncated = blob[: offset + 3 * (8192 + 16)]
    r = crypto.RandomAccessDecryptor(fetch=lambda s, e: truncated[s:e], size=len(truncated), data_key=KEY)
    with pytest.raises(crypto.ArchiveFormatError, match="chunk 2"):
        r.read()


def test_content_hash_is_sha256_of_id_and_row_hash_lines_in_order() -> None:
    ids = [
        "00000000-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
        "f0000000-0000-4000-8000-000000000003",
    ]
    hashes = ["aa" * 32, None, "bb" * 32]
    ts = [datetime(2026, 1, d, tzinfo=UTC) for d in (3, 1, 2)]
    batch = pa.record_batch(
        {
            "id": ids,
            "row_hash": hashes,
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "src": ["a", "b", "a"],
            "subj": ["p1", None, "p1"],
        }
    )
    f = Figures(
        id_column="id",
        row_hash_column="row_hash",
        timestamp_column="ts",
        source_column="src",
        subject_column="subj",
    )
    f.update(batch.slice(0, 2))
    f.update(batch.slice(2))
    expected = hashlib.sha256(
        b"".join(f"{i}:{h or ''}\n".encode() for i, h in zip(ids, hashes, strict=True))
    ).hexdigest()
    assert f.content_hash == expected
    assert (f.rows, f.min_id, f.max_id) == (3, ids[0], ids[2])
    assert f.min_ts == "2026-01-01T00:00:00+00:00" and f.max_ts == "2026-01-03T00:00:00+00:00"
    assert dict(f.sources) == {"a": 2, "b": 1} and f.subjects == {"p1"}
    assert f.summary()["subjects"] == 1  # counts only: subject ids never leave in a summary


def test_scopes_combine_classes_and_name_batches_deterministically() -> None:
    retention = load_policy().retention
    scopes = {s.class_name: s for s in planning.scopes(retention)}
    assert set(scopes) == {"hipaa-audit", "pci-audit", "security-audit"}
    assert scopes["security-audit"].values == ("general", "soc2")
    pci = scopes["pci-audit"]
    # Due when the online period after the end of the month has passed: May is due from 2026-09-01.
    assert pci.first_online_month(date(2026, 8, 31)) == date(2026, 5, 1)
    assert pci.first_online_month(date(2026, 9, 1)) == date(2026, 6, 1)
    assert planning.retain_until(pci, date(2026, 5, 1)) == datetime(2027, 6, 1, tzinfo=UTC)
    assert planning.batch_id(source_table="audit.events", class_name="pci-audit", month=date(2026, 5, 1)) == (
        "audit.events.pci-audit.2026-05"
    )
    assert planning.object_key(
        source_table="audit.events", class_name="pci-audit", month=date(2026, 5, 1)
    ) == ("archive/audit.events/pci-audit/2026-05/audit.events.pci-audit.2026-05.parquet.aesgcm")


def test_a_row_in_several_classes_takes_the_longest_periods() -> None:
    from attestly.policy.models import RetentionPolicy

    base = load_policy().retention.model_dump(by_alias=True)
    base["classes"][1]["select"]["values"] = ["pci", "hipaa"]  # hipaa rows are now also pci rows
    retention = RetentionPolicy.model_validate(base)
    scopes = {s.class_name: s for s in planning.scopes(retention)}
    both = scopes["hipaa-audit+pci-audit"]
    assert both.values == ("hipaa",)
    assert (both.retention.online_months, both.retention.retention_months) == (12, 72)
    assert scopes["pci-audit"].values == ("pci",)


def test_failpoints_are_off_unless_named_and_typos_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(failpoints.ENV, raising=False)
    failpoints.hit("archive.after_plan")  # off: returns
    monkeypatch.setenv(failpoints.ENV, "archive.after_plna")
    with pytest.raises(failpoints.UnknownFailpoint, match="after_plna"):
        failpoints.enabled()
    with pytest.raises(failpoints.UnknownFailpoint):
        failpoints.hit("archive.nowhere")
    monkeypatch.setenv(failpoints.ENV, " archive.after_verify , archive.mid_upload")
    assert failpoints.enabled() == {"archive.after_verify", "archive.mid_upload"}


def test_binary_export_sorts_by_the_id_column_and_keeps_text_forms() -> None:
    """The binary export's SELECT: typed columns and bytea as they are, other types through their
    output function (NULL kept); sorted by the table's id column, not the output column of that name
    (which for a uuid id is its text form)."""
    from psycopg import sql

    from attestly.archive.export import binary_export_query
    from attestly.archive.schema import Column, TableLayout

    cols = (
        Column("id", "uuid", "text", False),
        Column("at", "timestamp with time zone", "timestamptz", False),
        Column("n", "bigint", "int64", False),
        Column("who", "text", "text", True),
        Column("code", "character varying(8)", "text", True),
        Column("ip", "inet", "text", True),
        Column("h", "bytea", "bytea", False),
    )
    lay = TableLayout("audit", "events", cols, "id", "at", "h", "who", "who", None)
    text = binary_export_query(lay, sql.SQL("true")).as_string(None)
    assert text.endswith('ORDER BY "audit"."events"."id"')
    assert text.startswith(
        'SELECT CASE WHEN "id" IS NULL THEN NULL ELSE format(\'%s\', "id") END AS "id", '
        '"at" AS "at", "n" AS "n", "who" AS "who", "code" AS "code", '
        'CASE WHEN "ip" IS NULL THEN NULL ELSE format(\'%s\', "ip") END AS "ip", '
        '"h" AS "h" FROM "audit"."events" WHERE true'
    )


def test_hex_text_is_postgresql_hex_encoding_in_bulk() -> None:
    from attestly.archive.schema import hex_text

    values = [os.urandom(i % 40) if i % 7 else None for i in range(5000)]
    values[1] = b""
    arr = pa.array(values, pa.binary())
    for part in (arr, arr.slice(3), arr.slice(10, 0), pa.array([None, None], pa.binary())):
        out = hex_text(part)
        out.validate(full=True)
        assert out.type == pa.string()
        assert out.to_pylist() == [v.hex() if v is not None else None for v in part.to_pylist()]
