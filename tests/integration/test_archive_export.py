"""The export's two decoders — binary COPY decoded into Arrow by the ADBC driver (the default) and CSV COPY
parsed by Arrow — write the same archive: the same Parquet schema and metadata, the same rows, the same
figures, and those figures are the database's own (recomputed in SQL, as verification does). Rows with
awkward values are included: NULLs and empty strings, quotes, commas and newlines in text, unicode,
IPv6 networks, JSON, empty and NULL bytea."""

from __future__ import annotations

import dataclasses
import os
import uuid
from typing import Any

import pytest

from attestly.archive import runner
from attestly.archive.context import ArchiveContext
from attestly.archive.errors import ArchiveError
from attestly.archive.export import export_and_upload, scope_where
from attestly.archive.schema import database_figures
from attestly.archive.upload import read_lock
from attestly.archive.verify import open_archive
from tests.integration import test_archive_support as support
from tests.integration.test_archive_support import M_SEC, TODAY, admin, seed_backlog

pytestmark = pytest.mark.integration

archive_env = support.archive_env  # the fixture

_AWKWARD = """
INSERT INTO audit.events (id, occurred_at, recorded_at, source, seq, event_type, actor_id, resource_id,
                          action, result, ip, user_agent, metadata, severity, standard, subject_id,
                          phi_ciphertext, subject_key_id, prev_hash, row_hash)
VALUES
  (gen_random_uuid(), %(ts)s, %(ts)s, 'odd-source', 1, '', NULL, 'a,b', 'say "hi"', E'line1\\nline2',
   '2001:db8::/32', E'Mozilla "x", \\\\ y', '{"k": [1, 2.50, null], "é": "ü"}', NULL, 'pci', NULL,
   '\\x', NULL, NULL, '\\x00ff10'),
  (gen_random_uuid(), %(ts)s + interval '1 microsecond', %(ts)s, 'odd-source', 2, NULL, '', 'ü ✓', NULL,
   NULL, '10.1.2.3', '', 'null', '', 'pci', 'subj-1', NULL, NULL, '\\xdeadbeef', '\\xabcdef'),
  (gen_random_uuid(), %(ts)s + interval '2 hours', %(ts)s, 'odd-source', 3, 'x', 'y', 'z', 'w', 'v',
   NULL, NULL, NULL, NULL, 'pci', NULL, '\\x0001', NULL, NULL, '\\x01')
"""


def _export(ctx: ArchiveContext, batch: Any, decoder: str) -> dict[str, Any]:
    """Export ``batch`` with ``decoder`` to an object of its own; the upload details, and what the
    object holds read back (schema, key-value metadata, rows)."""
    target = dataclasses.replace(batch, object_key=f"{batch.object_key}.{decoder}")
    with ctx.registry.open(batch.key_id) as key:
        uploaded = export_and_upload(ctx, target, key, decoder=decoder)
        lock = read_lock(
            ctx.s3, bucket=target.bucket, key=target.object_key, version_id=uploaded["version_id"]
        )
        pf, meta = open_archive(ctx, target, version_id=uploaded["version_id"], data_key=key, size=lock.size)
        kv = dict(pf.metadata.metadata)
        return {
            "uploaded": uploaded,
            "meta": meta,
            "schema": pf.schema_arrow,
            "kv": kv,
            "table": pf.read(),
            "row_groups": pf.num_row_groups,
        }


def test_binary_and_csv_exports_write_the_same_archive(archive_env: str) -> None:
    from datetime import UTC, datetime, timedelta

    seed_backlog(recent=False)
    with admin("audit") as conn:
        conn.execute(
            _AWKWARD, {"ts": datetime.combine(M_SEC, datetime.min.time(), tzinfo=UTC) + timedelta(days=4)}
        )
    with ArchiveContext.open(run_id="test-export", row_group_rows=500) as ctx:
        batches = list(runner.plan_due(ctx, as_of=TODAY).batches)
        assert len(batches) >= 2
        layout = ctx.layout
        checked = 0
        for batch in batches:
            binary = _export(ctx, batch, "binary")
            csv = _export(ctx, batch, "csv")
            assert binary["uploaded"]["decoder"] == "binary" and csv["uploaded"]["decoder"] == "csv"
            assert binary["schema"].equals(csv["schema"], check_metadata=True)
            assert binary["kv"] == csv["kv"]  # the figures and the schema, as stored in the footer
            assert binary["row_groups"] == csv["row_groups"]
            assert binary["table"].equals(csv["table"])
            assert binary["uploaded"]["exported"] == csv["uploaded"]["exported"]
            where, params = scope_where(layout, batch)
            db = database_figures(ctx.reader(), layout, where, params)
            ctx.reader().commit()
            for name, value in db.items():
                assert binary["uploaded"]["exported"][name] == value, name
            assert binary["uploaded"]["exported"]["rows"] == binary["table"].num_rows > 0
            ids = binary["table"].column(layout.id_column).to_pylist()
            assert ids == sorted(ids, key=lambda i: uuid.UUID(i).bytes)  # uuid order, as PostgreSQL sorts
            if "pci" in batch.selector_values:
                rows = binary["table"].to_pylist()
                odd = sorted((r for r in rows if r["source"] == "odd-source"), key=lambda r: r["seq"])
                assert [r["ip"] for r in odd] == ["2001:db8::/32", "10.1.2.3", None]
                assert [r["user_agent"] for r in odd] == ['Mozilla "x", \\ y', "", None]
                assert [r["event_type"] for r in odd] == ["", None, "x"]
                assert [r["phi_ciphertext"] for r in odd] == ["", None, "0001"]
                assert odd[0]["metadata"] == '{"k": [1, 2.50, null], "é": "ü"}'
                assert odd[1]["metadata"] == "null" and odd[2]["metadata"] is None
                assert odd[0]["result"] == "line1\nline2" and odd[1]["resource_id"] == "ü ✓"
                assert odd[0]["row_hash"] == "00ff10" and odd[1]["prev_hash"] == "deadbeef"
                checked += 1
        assert checked == 1


def test_an_infinite_timestamp_is_refused_by_both_decoders(archive_env: str) -> None:
    from datetime import UTC, datetime, timedelta

    seed_backlog(recent=False, hipaa=False)
    ts = datetime.combine(M_SEC, datetime.min.time(), tzinfo=UTC) + timedelta(days=4)
    with admin("audit") as conn:
        conn.execute(
            "INSERT INTO audit.events (id, occurred_at, recorded_at, source, seq, standard, row_hash) "
            "VALUES (gen_random_uuid(), %s, 'infinity', 'odd-source', 1, 'pci', '\\x01')",
            (ts,),
        )
    with ArchiveContext.open(run_id="test-export") as ctx:
        batch = next(b for b in runner.plan_due(ctx, as_of=TODAY).batches if "pci" in b.selector_values)
        for decoder in ("binary", "csv"):
            target = dataclasses.replace(batch, object_key=f"{batch.object_key}.{decoder}")
            with ctx.registry.open(batch.key_id) as key, pytest.raises(Exception) as err:
                export_and_upload(ctx, target, key, decoder=decoder)
            if decoder == "binary":
                assert isinstance(err.value, ArchiveError) and "recorded_at" in str(err.value)
    assert os.environ.get("ATTESTLY_EVIDENCE_BUCKET") == archive_env
