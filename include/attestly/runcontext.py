"""The run context every workflow step shares (archive, key disposal, holds, the CLI around them),
opened once: the policy, an explicit ``attestly_db`` connection (:attr:`RunContext.db`, which the
journal, the disposal steps and the holds use), the evidence store, the key registry, the ledger, the run
id and the Airflow task (if any).

Connections (Airflow connection ids): ``audit_db`` (reader: export and verification), ``audit_archiver``
(the only one that purges, and restores into ``archive_restore``), ``attestly_db`` (journal, key
registry, holds, ledger), ``aws_default`` (S3, KMS). Nothing secret is kept here but the connections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from attestly.archive.crypto import DEFAULT_CHUNK_SIZE
from attestly.archive.upload import DEFAULT_PART_SIZE

if TYPE_CHECKING:
    import psycopg

    from attestly.archive.journal import Journal
    from attestly.archive.schema import TableLayout
    from attestly.evidence import AirflowContext
    from attestly.keys import KeyRegistry
    from attestly.ledger import Ledger
    from attestly.policy import Policy
    from attestly.store import EvidenceStore

#: The session settings of every audit-database connection (the text forms the archive stores depend on
#: them): the psycopg connections of :func:`connect_audit` and the export's binary COPY connection.
AUDIT_SESSION_SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET bytea_output = 'hex'",
    "SET extra_float_digits = 3",
)

#: Rows per Parquet row group (the unit of memory when writing and reading an archive).
DEFAULT_ROW_GROUP_ROWS = 65_536


@dataclass
class RunContext:
    """Open with :meth:`open`; close with :meth:`close` (or use as a context manager)."""

    policy: Policy
    store: EvidenceStore
    journal: Journal
    registry: KeyRegistry
    ledger: Ledger
    run_id: str = "manual"
    airflow: AirflowContext | None = None
    reader_conn_id: str = "audit_db"
    archiver_conn_id: str = "audit_archiver"
    custodian_conn_id: str = "audit_custodian"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    part_size: int = DEFAULT_PART_SIZE
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS
    attestly_conn_id: str = "attestly_db"
    aws_conn_id: str = "aws_default"
    _reader: psycopg.Connection[Any] | None = field(default=None, repr=False)
    _layout: TableLayout | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls,
        *,
        run_id: str = "manual",
        airflow: AirflowContext | None = None,
        bucket: str | None = None,
        attestly_conn_id: str = "attestly_db",
        aws_conn_id: str = "aws_default",
        reader_conn_id: str = "audit_db",
        archiver_conn_id: str = "audit_archiver",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        part_size: int = DEFAULT_PART_SIZE,
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    ) -> RunContext:
        from attestly.archive.journal import Journal
        from attestly.keys import KeyRegistry
        from attestly.ledger import Ledger
        from attestly.policy import load_policy
        from attestly.store import EvidenceStore

        policy = load_policy()
        journal = Journal.connect(attestly_conn_id)
        try:
            registry = KeyRegistry.connect(
                conn_id=attestly_conn_id, aws_conn_id=aws_conn_id, created_by=run_id
            )
            ledger = Ledger.connect(attestly_conn_id)
        except BaseException:
            journal.close()
            raise
        return cls(
            policy=policy,
            store=EvidenceStore.from_connection(bucket=bucket, aws_conn_id=aws_conn_id),
            journal=journal,
            registry=registry,
            ledger=ledger,
            run_id=run_id,
            airflow=airflow,
            reader_conn_id=reader_conn_id,
            archiver_conn_id=archiver_conn_id,
            chunk_size=chunk_size,
            part_size=part_size,
            row_group_rows=row_group_rows,
            attestly_conn_id=attestly_conn_id,
            aws_conn_id=aws_conn_id,
        )

    def sibling(self) -> RunContext:
        """A second context of the same run, with connections of its own (for a batch worker thread:
        a psycopg connection carries one transaction at a time)."""
        return RunContext.open(
            run_id=self.run_id,
            airflow=self.airflow,
            bucket=self.store.bucket,
            attestly_conn_id=self.attestly_conn_id,
            aws_conn_id=self.aws_conn_id,
            reader_conn_id=self.reader_conn_id,
            archiver_conn_id=self.archiver_conn_id,
            chunk_size=self.chunk_size,
            part_size=self.part_size,
            row_group_rows=self.row_group_rows,
        )

    def close(self) -> None:
        for closer in (self.journal.close, self.registry.close, self.ledger.close):
            closer()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> RunContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def db(self) -> psycopg.Connection[Any]:
        """The ``attestly_db`` connection (journal, disposal steps and certificates, holds, erasure)."""
        return self.journal.conn

    @property
    def s3(self) -> Any:
        return self.store.s3

    def reader(self) -> psycopg.Connection[Any]:
        """The read-only audit connection (UTC session), opened on first use."""
        if self._reader is None or self._reader.closed:
            self._reader = connect_audit(self.reader_conn_id)
        return self._reader

    def archiver(self) -> psycopg.Connection[Any]:
        """A new archiver connection (UTC session); the caller closes it."""
        return connect_audit(self.archiver_conn_id)

    def custodian(self) -> psycopg.Connection[Any]:
        """A new connection of the legal-hold custodian, the only role that releases holds in the audit
        database (UTC session); the caller closes it."""
        return connect_audit(self.custodian_conn_id)

    @property
    def layout(self) -> TableLayout:
        from attestly.archive.schema import describe_table

        if self._layout is None:
            self._layout = describe_table(self.reader(), self.policy)
        return self._layout


def connect_audit(conn_id: str) -> psycopg.Connection[Any]:
    """An audit-database connection whose session prints what the archive format expects."""
    from attestly.connections import pg_connect

    conn = pg_connect(conn_id)
    for statement in AUDIT_SESSION_SETTINGS:
        conn.execute(statement)
    conn.commit()
    return conn
