"""The ledger: an append-only, hash-chained record of everything Attestly did, sealed into the bucket.

Entry hash: ``sha256(JCS({seq, kind, recorded_at, body, prev_hash, format: 2}))`` (RFC 8785) for
entries written since format 2; entries written before have no ``format`` and hash the v1 form
(sorted-keys JSON, :func:`attestly.evidence.canonical_json_v1`). ``prev_hash`` is the previous entry's
hash (64 zeros for the first). ``VERIFY.md`` in every auditor packet specifies both byte for byte. Appends are serialised by a transaction-level advisory
lock and are idempotent through ``dedupe_key``: appending what is already there returns the existing
entry, so re-running an interval changes nothing.

A *seal* writes a digest object ``digests/<first>-<last>.json`` covering the entries since the last
seal: the entries themselves, their RFC 6962 Merkle root, the time range, and the previous digest's key,
hash and signature, signed (Ed25519 or KMS). ``attestly.digest/v2`` digests are signed over their JCS
bytes (``attestly.digest/v1`` over the v1 form); each entry inside is hashed in its own format. Digests are deterministic for the same entries, so a seal
that crashed after the upload and is run again finds the same bytes and just records them.

The verifier (``attestly.verify``) needs only the bucket and the public key; this module is its
database side. Neither imports Airflow.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from attestly.evidence import canonical_for, canonical_json, iso
from attestly.merkle import merkle_root

if TYPE_CHECKING:
    import psycopg

    from attestly.signing import Signer
    from attestly.store import EvidenceStore, StoredObject

GENESIS = "0" * 64
DIGEST_SCHEMA = "attestly.digest/v2"
DIGEST_SCHEMAS = {"attestly.digest/v1": 1, DIGEST_SCHEMA: 2}
#: The entry format new entries are written in (2: RFC 8785); rows written before are 1.
ENTRY_FORMAT = 2
DIGEST_PREFIX = "digests/"
_APPEND_LOCK = 0x4C656467  # "Ledg"
#: A digest seals at most this many entries, and at most ``MAX_DIGEST_CANONICAL_BYTES`` of their canonical
#: form (a longer backlog is sealed as several chained digests), so a verifier holds one bounded digest at
#: a time, whatever the size of the ledger (verifiers refuse a digest over 64 MiB).
MAX_DIGEST_ENTRIES = 10_000
MAX_DIGEST_CANONICAL_BYTES = 16 * 1024 * 1024


class LedgerTampered(RuntimeError):
    """The ledger's own chain does not verify: nothing is sealed on top of it."""


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    kind: str
    recorded_at: datetime
    body: dict[str, Any]
    prev_hash: str
    entry_hash: str
    format: int = ENTRY_FORMAT

    def content(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq,
            "kind": self.kind,
            "recorded_at": iso(self.recorded_at),
            "body": self.body,
            "prev_hash": self.prev_hash,
        }
        if self.format != 1:
            out["format"] = self.format
        return out

    def canonical(self) -> bytes:
        """The bytes the entry hash and the digest's Merkle leaf are computed over."""
        return canonical_for(self.format, self.content())

    def recompute(self) -> str:
        return entry_hash(self.content())

    def to_digest_dict(self) -> dict[str, Any]:
        return {**self.content(), "entry_hash": self.entry_hash}


def entry_format(content: dict[str, Any]) -> int:
    """An entry content's format: its ``format`` field (2), or 1 when it has none (written before v2)."""
    value = content.get("format", 1)
    if value not in (1, 2) or isinstance(value, bool):
        raise ValueError(f"ledger entry format {str(value)[:20]!r} is not 1 or 2")
    return int(value)


def entry_canonical(content: dict[str, Any]) -> bytes:
    """The canonical bytes of an entry's content (``seq, kind, recorded_at, body, prev_hash[, format]``)."""
    return canonical_for(entry_format(content), content)


def entry_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(entry_canonical(content)).hexdigest()


def _chain_problems(entries: Iterable[LedgerEntry], *, after_seq: int, expected_prev: str) -> list[str]:
    """Problems in a run of entries that should follow entry ``after_seq`` (hash ``expected_prev``)."""
    problems: list[str] = []
    prev = expected_prev
    expected_seq = after_seq + 1
    for e in entries:
        if e.seq != expected_seq:
            problems.append(f"ledger entry {expected_seq} is missing (next is {e.seq})")
        if e.prev_hash != prev:
            problems.append(f"ledger entry {e.seq}: prev_hash does not link to entry {e.seq - 1}")
        if e.recompute() != e.entry_hash:
            problems.append(f"ledger entry {e.seq} altered: its content no longer matches its hash")
        prev = e.entry_hash
        expected_seq = e.seq + 1
    return problems


def digest_key(first_seq: int, last_seq: int) -> str:
    return f"{DIGEST_PREFIX}{first_seq:012d}-{last_seq:012d}.json"


def _row_to_entry(row: tuple[Any, ...]) -> LedgerEntry:
    seq, kind, recorded_at, body, prev_hash, ehash, fmt = row
    return LedgerEntry(int(seq), kind, recorded_at, body, prev_hash, ehash, int(fmt))


_COLUMNS = "seq, kind, recorded_at, body, prev_hash, entry_hash, format"


class Ledger:
    """The ledger in ``attestly_db``. Give it a psycopg connection (not in autocommit)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    @classmethod
    def connect(cls, conn_id: str = "attestly_db") -> Ledger:
        from attestly.connections import pg_connect

        return cls(pg_connect(conn_id))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ append

    def append(
        self,
        kind: str,
        body: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        recorded_at: datetime | None = None,
    ) -> tuple[LedgerEntry, bool]:
        """Append an entry; returns ``(entry, created)``. With ``dedupe_key``, appending again is a no-op."""
        from psycopg.types.json import Jsonb

        canonical_json(body)  # refuse what cannot be canonical (NaN, non-JSON) before taking the lock
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_APPEND_LOCK,))
            if dedupe_key is not None:
                row = self.conn.execute(
                    f"SELECT {_COLUMNS} FROM attestly.ledger WHERE dedupe_key = %s", (dedupe_key,)
                ).fetchone()
                if row is not None:
                    return _row_to_entry(row), False
            last = self.conn.execute(
                "SELECT seq, entry_hash FROM attestly.ledger ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, prev = (int(last[0]) + 1, last[1]) if last else (1, GENESIS)
            at = (recorded_at or datetime.now(UTC)).astimezone(UTC)
            # Round-trip through PostgreSQL's microsecond precision before hashing.
            at = at.replace(microsecond=at.microsecond)
            entry = LedgerEntry(seq, kind, at, body, prev, "", ENTRY_FORMAT)
            ehash = entry.recompute()
            self.conn.execute(
                "INSERT INTO attestly.ledger (seq, kind, recorded_at, body, dedupe_key, prev_hash, entry_hash, "
                "format) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (seq, kind, at, Jsonb(body), dedupe_key, prev, ehash, ENTRY_FORMAT),
            )
        return LedgerEntry(seq, kind, at, body, prev, ehash, ENTRY_FORMAT), True

    def append_many(
        self, entries: Sequence[tuple[str, dict[str, Any], str | None]]
    ) -> list[tuple[LedgerEntry, bool]]:
        """Append ``(kind, body, dedupe_key)`` entries in one transaction, under the same lock as
        :meth:`append`: the rows (seq, recorded_at, body, dedupe_key, prev_hash, entry_hash, format) are
        exactly those the same calls to :meth:`append` in a row would write, and a ``dedupe_key`` already
        in the ledger, or earlier in ``entries``, returns that entry with ``created`` False. Unlike
        repeated :meth:`append`, all or nothing: nothing is written if any entry fails. For bulk loads
        (the benchmarks); one transaction per call, so callers bound its size."""
        from psycopg.types.json import Jsonb

        for _, body, _ in entries:
            canonical_json(body)  # refuse what cannot be canonical before taking the lock
        out: list[tuple[LedgerEntry, bool]] = []
        rows: list[tuple[Any, ...]] = []
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_APPEND_LOCK,))
            keys = sorted({k for _, _, k in entries if k is not None})
            known: dict[str, LedgerEntry] = {}
            if keys:
                for row in self.conn.execute(
                    f"SELECT {_COLUMNS}, dedupe_key FROM attestly.ledger WHERE dedupe_key = ANY(%s)", (keys,)
                ):
                    known[row[-1]] = _row_to_entry(row[:-1])
            last = self.conn.execute(
                "SELECT seq, entry_hash FROM attestly.ledger ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, prev = (int(last[0]), last[1]) if last else (0, GENESIS)
            for kind, body, dedupe_key in entries:
                if dedupe_key is not None and dedupe_key in known:
                    out.append((known[dedupe_key], False))
                    continue
                seq += 1
                at = datetime.now(UTC)
                # Round-trip through PostgreSQL's microsecond precision before hashing (as in append).
                at = at.replace(microsecond=at.microsecond)
                ehash = LedgerEntry(seq, kind, at, body, prev, "", ENTRY_FORMAT).recompute()
                entry = LedgerEntry(seq, kind, at, body, prev, ehash, ENTRY_FORMAT)
                rows.append((seq, kind, at, Jsonb(body), dedupe_key, prev, ehash, ENTRY_FORMAT))
                if dedupe_key is not None:
                    known[dedupe_key] = entry
                out.append((entry, True))
                prev = ehash
            if rows:
                with self.conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO attestly.ledger (seq, kind, recorded_at, body, dedupe_key, prev_hash, "
                        "entry_hash, format) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        rows,
                    )
        return out

    @staticmethod
    def _evidence_entry(
        item_sha256: str, stored: StoredObject, summary: dict[str, Any], observation: str
    ) -> tuple[str, dict[str, Any], str]:
        body = {**summary, **stored.to_dict(), "sha256": item_sha256, "observation": observation}
        return "evidence", body, f"evidence:{observation}"

    def record_evidence(
        self, item_sha256: str, stored: StoredObject, summary: dict[str, Any], *, observation: str
    ) -> tuple[LedgerEntry, bool]:
        """Ledger an evidence object, once per observation (see ``EvidenceItem.observation_sha256``)."""
        kind, body, dedupe_key = self._evidence_entry(item_sha256, stored, summary, observation)
        return self.append(kind, body, dedupe_key=dedupe_key)

    def record_evidence_many(
        self, records: Iterable[tuple[str, StoredObject, dict[str, Any], str]]
    ) -> list[tuple[LedgerEntry, bool]]:
        """:meth:`record_evidence` for each ``(item_sha256, stored, summary, observation)``, in one
        transaction (:meth:`append_many`): the same entries, byte for byte, as calling it once per record."""
        return self.append_many([self._evidence_entry(*r) for r in records])

    def find(self, dedupe_key: str) -> LedgerEntry | None:
        """The entry appended with ``dedupe_key``, if any."""
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM attestly.ledger WHERE dedupe_key = %s", (dedupe_key,)
        ).fetchone()
        self.conn.commit()
        return _row_to_entry(row) if row else None

    def report_object(self, key: str) -> dict[str, Any] | None:
        """The stored report file or packet ``key`` as the first ``report`` entry recording it
        (key, version_id, sha256, size), or None: what must be served, whatever versions came later."""
        from psycopg.types.json import Jsonb

        row = self.conn.execute(
            "SELECT body FROM attestly.ledger WHERE kind = 'report' AND "
            "(body->'packet'->>'key' = %s OR body->'objects' @> %s) ORDER BY seq LIMIT 1",
            (key, Jsonb([{"key": key}])),
        ).fetchone()
        self.conn.commit()
        if row is None:
            return None
        body = row[0]
        if body.get("packet", {}).get("key") == key:
            return dict(body["packet"])
        return next((dict(o) for o in body.get("objects", []) if o.get("key") == key), None)

    # -------------------------------------------------------------------------------------------- read

    def entries(
        self, *, after_seq: int = 0, kind: str | None = None, limit: int | None = None
    ) -> Iterator[LedgerEntry]:
        query = f"SELECT {_COLUMNS} FROM attestly.ledger WHERE seq > %s"
        params: list[Any] = [after_seq]
        if kind:
            query += " AND kind = %s"
            params.append(kind)
        query += " ORDER BY seq"
        if limit is not None:
            query += " LIMIT %s"
            params.append(int(limit))
        with self.conn.cursor(name="ledger_entries") as cur:
            cur.itersize = 2000
            cur.execute(query, params)
            for row in cur:
                yield _row_to_entry(row)
        self.conn.commit()

    def head(self) -> tuple[int, str]:
        row = self.conn.execute(
            "SELECT seq, entry_hash FROM attestly.ledger ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        self.conn.commit()
        return (int(row[0]), row[1]) if row else (0, GENESIS)

    def digests(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT first_seq, last_seq, key, version_id, sha256, signature, merkle_root, sealed_at "
            "FROM attestly.digests ORDER BY first_seq"
        ).fetchall()
        self.conn.commit()
        keys = (
            "first_seq",
            "last_seq",
            "key",
            "version_id",
            "sha256",
            "signature",
            "merkle_root",
            "sealed_at",
        )
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def check_chain(self, *, after_seq: int = 0, expected_prev: str = GENESIS) -> list[str]:
        """Problems in the chain after ``after_seq`` (empty when intact)."""
        return _chain_problems(
            self.entries(after_seq=after_seq), after_seq=after_seq, expected_prev=expected_prev
        )

    # -------------------------------------------------------------------------------------------- seal

    def seal(self, *, store: EvidenceStore, signer: Signer) -> dict[str, Any] | None:
        """Seal the entries since the last digest, as one digest or, for a backlog over the bounds
        (:data:`MAX_DIGEST_ENTRIES`, :data:`MAX_DIGEST_CANONICAL_BYTES`), several chained ones; returns the
        last digest written (``digests``: how many this call wrote), None when there is nothing new.
        Crash-safe and idempotent: each digest is recorded before the next is built."""
        last: dict[str, Any] | None = None
        count = 0
        while True:
            sealed = self._seal_one(store=store, signer=signer)
            if sealed is None:
                return last
            count += 1
            last = {**sealed, "digests": count}

    def _seal_one(self, *, store: EvidenceStore, signer: Signer) -> dict[str, Any] | None:
        from attestly.signing import fingerprint

        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_APPEND_LOCK + 1,))
            last = self.conn.execute(
                "SELECT last_seq, key, sha256, signature FROM attestly.digests ORDER BY last_seq DESC LIMIT 1"
            ).fetchone()
        after = int(last[0]) if last else 0
        prev_entry_hash = GENESIS
        if after:
            row = self.conn.execute(
                "SELECT entry_hash FROM attestly.ledger WHERE seq = %s", (after,)
            ).fetchone()
            self.conn.commit()
            prev_entry_hash = row[0] if row else GENESIS
        fetched = list(self.entries(after_seq=after, limit=MAX_DIGEST_ENTRIES))
        if not fetched:
            return None
        # The chain is checked on exactly what is sealed, before it is signed.
        problems = _chain_problems(fetched, after_seq=after, expected_prev=prev_entry_hash)
        if problems:
            raise LedgerTampered("; ".join(problems[:5]))
        entries: list[LedgerEntry] = []
        leaves: list[bytes] = []
        size = 0
        for e in fetched:
            leaf = e.canonical()
            if entries and size + len(leaf) > MAX_DIGEST_CANONICAL_BYTES:
                break
            entries.append(e)
            leaves.append(leaf)
            size += len(leaf)
        public_pem = signer.public_key_pem()
        digest: dict[str, Any] = {
            "schema": DIGEST_SCHEMA,
            "first_seq": entries[0].seq,
            "last_seq": entries[-1].seq,
            "entry_count": len(entries),
            "entries": [e.to_digest_dict() for e in entries],
            "merkle_root": merkle_root(leaves).hex(),
            "last_entry_hash": entries[-1].entry_hash,
            "time_range": {
                "start": iso(min(e.recorded_at for e in entries)),
                "end": iso(max(e.recorded_at for e in entries)),
            },
            "previous": {"key": last[1], "sha256": last[2], "signature": last[3]} if last else None,
            "signature_algorithm": signer.algorithm,
            "public_key_fingerprint": fingerprint(public_pem),
        }
        signature = base64.b64encode(signer.sign(canonical_json(digest))).decode()
        body = canonical_json({"digest": digest, "signature": signature})
        key = digest_key(entries[0].seq, entries[-1].seq)
        retain = store.retain_until_for(max(e.recorded_at for e in entries))
        stored = store.put_bytes(key, body, retain_until=retain, content_type="application/json")
        with self.conn.transaction():
            self.conn.execute(
                "INSERT INTO attestly.digests (first_seq, last_seq, key, version_id, sha256, signature, merkle_root) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (first_seq) DO NOTHING",
                (
                    entries[0].seq,
                    entries[-1].seq,
                    key,
                    stored.version_id,
                    stored.sha256,
                    signature,
                    digest["merkle_root"],
                ),
            )
        return {
            "key": key,
            "version_id": stored.version_id,
            "sha256": stored.sha256,
            "first_seq": entries[0].seq,
            "last_seq": entries[-1].seq,
            "created": stored.created,
        }
