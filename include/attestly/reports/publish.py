"""Store a rendered bundle in the Object Lock bucket and record it in the ledger (kind ``report``).

Keys: ``reports/<framework>/<period>/<rendition id>/<path>`` for every file and
``.../<rendition id>/attestly-<framework>-<period>-packet.zip`` for the packet. Writes are create-only
(:meth:`EvidenceStore.put_bytes`): storing the same rendition again finds the same objects and the
ledger entry (``dedupe_key = report:<framework>:<period>:<rendition>``) is appended once; a different
rendition of the same period (e.g. evidence backfilled since) goes under its own id, never over the
old one. Retention: the evidence retention, counted from the end of the period.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from attestly.evidence import iso
from attestly.reports.bundle import Bundle, content_type

if TYPE_CHECKING:
    from attestly.ledger import Ledger
    from attestly.store import EvidenceStore, StoredObject

REPORT_KIND = "report"
#: ``event`` of the ledger entry of a stored rendition (the e-mail task ledgers ``"emailed"`` ones).
STORED_EVENT = "stored"


def dedupe_key(bundle: Bundle) -> str:
    return f"report:{bundle.framework}:{bundle.period.label}:{bundle.rendition}"


def publish(
    bundle: Bundle,
    *,
    store: EvidenceStore,
    ledger: Ledger,
    airflow: dict[str, Any] | None = None,
    concurrency: int = 8,
) -> dict[str, Any]:
    """Store every file and the packet, then ledger the ``report`` entry. Idempotent; returns
    ``{framework, period, rendition, prefix, packet{key, version_id, sha256, size}, objects[...],
    statuses, status_counts, ledger_seq, created, recorded_at}``."""
    existing = ledger.find(dedupe_key(bundle))
    if existing is not None:
        # Already stored and ledgered (a re-run, a retry after the e-mail failed): the ledger entry is
        # the record; nothing is listed or written again (every object is create-only and locked, and
        # `attestly verify` re-hashes the versions the entry names).
        return _result(existing, created=False, objects_created=0)
    retain = store.retain_until_for(bundle.period.end_dt)
    items = [(bundle.prefix + path, body, content_type(path), path) for path, body in bundle.files.items()]
    items.append(
        (bundle.prefix + bundle.packet_name, bundle.packet_zip(), "application/zip", bundle.packet_name)
    )

    def put(item: tuple[str, bytes, str, str]) -> StoredObject:
        key, body, ctype, _ = item
        return store.put_bytes(key, body, retain_until=retain, content_type=ctype)

    store.ensure_object_lock()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        stored = list(pool.map(put, items))
    objects = [
        {"path": item[3], "key": s.key, "version_id": s.version_id, "sha256": s.sha256, "size": s.size}
        for item, s in zip(items, stored, strict=True)
    ]
    packet = objects[-1]
    body = {
        "event": STORED_EVENT,
        "framework": bundle.framework,
        "period": bundle.period.to_dict(),
        "rendition": bundle.rendition,
        "prefix": bundle.prefix,
        "packet": {k: packet[k] for k in ("key", "version_id", "sha256", "size")},
        "objects": objects[:-1],
        "statuses": bundle.statuses,
        "status_counts": dict(bundle.index["status_counts"]),
        "evidence_count": bundle.index["evidence_count"],
        "policy_fingerprint": bundle.index["policy_fingerprint"],
        "retain_until": iso(retain),
        "airflow": airflow,
    }
    entry, created = ledger.append(REPORT_KIND, body, dedupe_key=dedupe_key(bundle))
    return _result(entry, created=created, objects_created=sum(1 for s in stored if s.created))


def _result(entry: Any, *, created: bool, objects_created: int) -> dict[str, Any]:
    return {
        **{k: entry.body[k] for k in ("framework", "period", "rendition", "prefix", "packet", "objects")},
        "statuses": entry.body["statuses"],
        "status_counts": entry.body["status_counts"],
        "ledger_seq": entry.seq,
        "created": created,
        "objects_created": objects_created,
        "recorded_at": iso(entry.recorded_at),
    }
