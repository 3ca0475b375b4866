"""Retention archive: audit rows past their online period -> encrypted, Object-Locked archives -> purge.

Modules (each documents its contract):

- :mod:`~attestly.archive.planning` — which rows are due, grouped into deterministic batches;
- :mod:`~attestly.archive.export` — COPY -> Parquet -> AES-256-GCM chunks -> S3 multipart upload;
- :mod:`~attestly.archive.crypto` — the chunked, authenticated object format;
- :mod:`~attestly.archive.upload` — create-only uploads, Object Lock, legal holds on objects;
- :mod:`~attestly.archive.verify` — read back and compare with the database;
- :mod:`~attestly.archive.purge` — delete exactly the verified rows (or drop whole partitions);
- :mod:`~attestly.archive.holds` — legal holds;
- :mod:`~attestly.archive.manifest` — manifest evidence and ``archive`` ledger entries;
- :mod:`~attestly.archive.restore` — decrypt an archive into a scratch table and reconcile it;
- :mod:`~attestly.archive.runner` — the steps in order (``run_all``), each idempotent;
- :mod:`~attestly.archive.journal` — batches and their state transitions in ``attestly_db``;
- :mod:`~attestly.archive.failpoints` — crash sites for the crash-safety tests;
- :mod:`~attestly.archive.cli` — ``attestly hold ...`` and ``attestly archive ...``.

Nothing here imports Airflow; the DAG (``dags/retention_archive.py``) calls
:mod:`attestly.workflows.retention`, which calls these.
"""

from __future__ import annotations
