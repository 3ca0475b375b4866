"""Synthetic audit events for the demo, the tests and the benchmarks: ``attestly seed audit``.

Plays the application: it writes through the insert-only ``audit_writer`` connection, continues each
source's sequence and hash chain from what is already loaded (``audit.chain_heads()``), creates the
monthly partitions it needs and loads with COPY. Data follow a daily rhythm (busy office hours, quiet
nights), with realistic actors, actions, results and per-subject events for the PHI-bearing source.
Nothing generated looks like PHI or a secret unless a ``phi-leak`` fault is planted.

Faults (``--inject KIND:key=value,...``) land inside the days of the call and each is reported exactly
(ids, sources, seqs), so later checks can be held to the planted counts. Each fault alone makes exactly
one quality check fail:

- ``gap:source=S,start=TS,hours=H``: S is silent for H hours (no events; its sequence stays contiguous);
- ``seq-hole:source=S,count=N``: N events of S lost after numbering (N sequence numbers missing);
- ``duplicate:count=N``: N events written twice (same source and seq, new id);
- ``null:column=C,count=N``: a required column left NULL in N events;
- ``bad-enum:column=C,count=N``: a value outside the column's enumeration in N events;
- ``phi-leak:count=N``: a US SSN, a Luhn-valid card number or an e-mail address in clear in ``metadata``;
- ``chain-break:count=N``: N events altered after they were hashed (their hash no longer recomputes);
- ``future:count=N``: N events whose timestamp is after the time they were recorded.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from attestly.audit.chain import row_hash

if TYPE_CHECKING:
    from attestly.keys import PhiVault

FAULT_KINDS = ("gap", "seq-hole", "duplicate", "null", "bad-enum", "phi-leak", "chain-break", "future")
_FAULT_KEYS: dict[str, dict[str, type]] = {
    "gap": {"source": str, "start": str, "hours": int},
    "seq-hole": {"source": str, "count": int},
    "duplicate": {"count": int},
    "null": {"column": str, "count": int},
    "bad-enum": {"column": str, "count": int},
    "phi-leak": {"count": int},
    "chain-break": {"count": int},
    "future": {"count": int},
}
STRUCTURAL = ("id", "timestamp", "recorded_at", "source", "sequence")

# Hourly weights (UTC) for a daytime-heavy service.
RHYTHM = [2, 1, 1, 1, 1, 2, 4, 8, 12, 14, 14, 13, 12, 13, 14, 14, 12, 9, 6, 5, 4, 3, 3, 2]


class SeedError(ValueError):
    """The seed cannot be done as asked (overlapping days, unknown source...)."""


class InjectionError(SeedError):
    """A malformed ``--inject`` spec; the message names the spec, the key and the value."""


@dataclass(frozen=True)
class Injection:
    kind: str
    params: dict[str, Any]

    @property
    def count(self) -> int:
        return int(self.params.get("count", self.params.get("hours", 0)))


def parse_injection(spec: str) -> Injection:
    """Parse ``KIND:key=value,...``; every error names the spec and the offending part."""
    kind, sep, rest = spec.partition(":")
    kind = kind.strip()
    if kind not in FAULT_KINDS:
        raise InjectionError(f"--inject {spec!r}: unknown kind {kind!r} (one of {', '.join(FAULT_KINDS)})")
    if not sep or not rest.strip():
        raise InjectionError(f"--inject {spec!r}: expected {kind}:key=value,...")
    expected = _FAULT_KEYS[kind]
    params: dict[str, Any] = {}
    for part in rest.split(","):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq:
            raise InjectionError(f"--inject {spec!r}: {part!r} is not key=value")
        if key not in expected:
            raise InjectionError(
                f"--inject {spec!r}: unknown key {key!r} for {kind} (expected {', '.join(expected)})"
            )
        if expected[key] is int:
            try:
                n = int(value)
            except ValueError:
                raise InjectionError(f"--inject {spec!r}: {key}={value!r} is not a whole number") from None
            if n <= 0:
                raise InjectionError(f"--inject {spec!r}: {key}={n} must be positive")
            params[key] = n
        else:
            params[key] = value.strip()
    missing = [k for k in expected if k not in params]
    if missing:
        raise InjectionError(f"--inject {spec!r}: missing {', '.join(missing)}")
    if kind == "gap":
        try:
            ts = datetime.fromisoformat(params["start"].replace("Z", "+00:00"))
        except ValueError:
            raise InjectionError(
                f"--inject {spec!r}: start={params['start']!r} is not an ISO timestamp"
            ) from None
        ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
        if ts.minute or ts.second or ts.microsecond:
            raise InjectionError(f"--inject {spec!r}: start={params['start']!r} must be on the hour")
        params["start"] = ts.astimezone(UTC)
    return Injection(kind, params)


# --------------------------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class SourceProfile:
    standard: str
    weight: float
    events: tuple[tuple[str, str, str, float], ...]  # (event_type, action, resource prefix, weight)
    subject_events: bool = False


PROFILES: dict[str, SourceProfile] = {
    "auth-service": SourceProfile(
        "soc2",
        1.0,
        (
            ("authentication", "login", "session", 40),
            ("authentication", "logout", "session", 15),
            ("authentication", "mfa_challenge", "session", 10),
            ("authentication", "password_reset", "account", 2),
            ("authorization", "token_issue", "token", 20),
            ("authorization", "role_check", "role", 10),
            ("configuration", "role_grant", "role", 1),
            ("configuration", "mfa_enroll", "account", 2),
        ),
    ),
    "ehr-api": SourceProfile(
        "hipaa",
        1.2,
        (
            ("data_access", "read_record", "patient-record", 50),
            ("data_access", "search_records", "patient-index", 10),
            ("data_modify", "update_record", "patient-record", 15),
            ("data_access", "export_record", "patient-record", 2),
            ("authorization", "consent_check", "consent", 10),
            ("backup", "snapshot", "ehr-db", 0.2),
        ),
        subject_events=True,
    ),
    "billing": SourceProfile(
        "pci",
        0.8,
        (
            ("data_access", "view_payment", "payment", 30),
            ("data_modify", "charge_card", "payment", 30),
            ("data_modify", "refund", "payment", 5),
            ("authorization", "tokenize_card", "vault", 15),
            ("configuration", "rotate_key", "vault-key", 0.1),
        ),
    ),
    "admin-console": SourceProfile(
        "general",
        0.05,
        (
            ("system_access", "admin_login", "console", 30),
            ("configuration", "change_setting", "setting", 20),
            ("configuration", "deploy", "service", 10),
            ("restore", "restore_test", "backup", 1),
        ),
    ),
}
GENERIC = SourceProfile(
    "general", 0.5, (("system_access", "access", "resource", 10), ("configuration", "change", "setting", 1))
)
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15",
    "ehr-mobile/4.12.0 (iOS 17.5)",
    "billing-worker/2.3.1 python-requests/2.32",
    "curl/8.8.0",
)


# ------------------------------------------------------------------------------------------- generation


@dataclass
class Head:
    seq: int
    row_hash: bytes | None
    last_at: datetime | None


@dataclass
class Plan:
    rows: list[dict[str, Any]] = field(default_factory=list)
    injected: list[dict[str, Any]] = field(default_factory=list)


def _ip(rng: random.Random, internal: bool) -> str:
    if internal:
        return f"10.{rng.randrange(0, 16)}.{rng.randrange(0, 256)}.{rng.randrange(1, 255)}"
    return f"{rng.choice([34, 52, 73, 98, 151, 203])}.{rng.randrange(0, 256)}.{rng.randrange(0, 256)}.{rng.randrange(1, 255)}"


def _event(
    rng: random.Random,
    source: str,
    profile: SourceProfile,
    at: datetime,
    actors: list[str],
    subjects: list[str],
) -> dict[str, Any]:
    weights = [e[3] for e in profile.events]
    event_type, action, prefix, _ = rng.choices(profile.events, weights=weights)[0]
    roll = rng.random()
    if event_type == "authentication" and action == "login":
        result = "success" if roll > 0.06 else "failure"
    elif event_type == "authorization":
        result = "success" if roll > 0.03 else "denied"
    else:
        result = "success" if roll > 0.005 else "failure"
    severity = "info"
    if result != "success":
        severity = "medium" if event_type == "authentication" else "low"
    if event_type == "configuration":
        severity = "high" if result == "success" else "medium"
    actor = rng.choice(actors)
    subject = rng.choice(subjects) if profile.subject_events and prefix.startswith("patient") else None
    resource = f"{prefix}/{rng.randrange(1, 5000):05d}" if subject is None else f"{prefix}/{subject}"
    metadata: dict[str, Any] = {
        "request_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "method": "GET" if event_type in ("data_access", "authentication") else "POST",
        "latency_ms": rng.randrange(3, 900),
    }
    if result != "success":
        metadata["reason"] = rng.choice(["invalid_credentials", "policy", "expired_token", "not_permitted"])
    return {
        "id": uuid.UUID(int=rng.getrandbits(128), version=4),
        "timestamp": at,
        "recorded_at": at + timedelta(milliseconds=rng.randrange(20, 2000)),
        "source": source,
        "event_type": event_type,
        "actor": actor,
        "resource": resource,
        "action": action,
        "result": result,
        "ip": _ip(rng, internal=actor.startswith("svc-")),
        "user_agent": rng.choice(USER_AGENTS),
        "metadata": metadata,
        "severity": severity,
        "standard": profile.standard,
        "subject": subject,
        "phi_ciphertext": None,
        "subject_key_id": None,
    }


def _hour_counts(rng: random.Random, total: int, minimum: int) -> list[int]:
    counts = [minimum] * 24
    remaining = max(0, total - minimum * 24)
    for hour in rng.choices(range(24), weights=RHYTHM, k=remaining):
        counts[hour] += 1
    return counts


def plan_events(
    *,
    start: date,
    days: int,
    events_per_day: int,
    sources: Sequence[tuple[str, int, bool]],
    heads: dict[str, Head],
    injections: Sequence[Injection],
    rng: random.Random,
    required_columns: Sequence[str],
    enums: dict[str, Sequence[str]],
    phi: Callable[[list[dict[str, Any]]], None] | None = None,
) -> Plan:
    """Generate rows (logical column names) with chains and faults applied; no database access.

    ``sources`` is ``(name, min_events_per_hour, quiet_allowed)``. ``phi``, when given, is called once
    with every generated row before the chains are hashed, to fill ``phi_ciphertext`` and
    ``subject_key_id`` (the hash covers both). Raises :class:`SeedError` for faults that cannot land as
    asked.
    """
    begin = datetime(start.year, start.month, start.day, tzinfo=UTC)
    end = begin + timedelta(days=days)
    names = [s[0] for s in sources]
    profiles = {name: PROFILES.get(name, GENERIC) for name in names}
    total_weight = sum(profiles[n].weight for n in names)
    actors = [f"u-{i:04d}" for i in range(1, 241)] + [
        f"svc-{n}" for n in ("etl", "billing", "backup", "sync")
    ]
    subjects = [f"p-{i:06d}" for i in range(1, 801)]

    gaps: dict[str, list[tuple[datetime, datetime]]] = {}
    for inj in injections:
        if inj.kind in ("gap", "seq-hole") and inj.params["source"] not in names:
            raise SeedError(
                f"--inject {inj.kind}: source {inj.params['source']!r} is not seeded ({', '.join(names)})"
            )
        if inj.kind == "gap":
            g_start: datetime = inj.params["start"]
            g_end = g_start + timedelta(hours=inj.params["hours"])
            if g_start < begin or g_end > end:
                raise SeedError(
                    f"--inject gap: {g_start.isoformat()} + {inj.params['hours']}h is outside the seeded days "
                    f"{begin.date()} .. {(end - timedelta(days=1)).date()}"
                )
            gaps.setdefault(inj.params["source"], []).append((g_start, g_end))

    plan = Plan()
    by_source: dict[str, list[dict[str, Any]]] = {}
    for name, minimum, _quiet in sources:
        profile = profiles[name]
        per_day = round(events_per_day * profile.weight / total_weight)
        rows: list[dict[str, Any]] = []
        for d in range(days):
            day = begin + timedelta(days=d)
            for hour, n in enumerate(_hour_counts(rng, per_day, minimum)):
                base = day + timedelta(hours=hour)
                if any(a <= base < b for a, b in gaps.get(name, [])):
                    continue
                for _ in range(n):
                    at = base + timedelta(microseconds=rng.randrange(0, 3_600_000_000))
                    rows.append(_event(rng, name, profile, at, actors, subjects))
        rows.sort(key=lambda r: r["timestamp"])
        head = heads.get(name, Head(0, None, None))
        if head.last_at is not None and rows and rows[0]["timestamp"] <= head.last_at:
            raise SeedError(
                f"source {name!r} already has events up to {head.last_at.isoformat()}; seeding appends, so "
                f"--start must be after that day"
            )
        by_source[name] = rows

    for inj in injections:
        if inj.kind == "gap":
            plan.injected.append(
                {
                    "kind": "gap",
                    "source": inj.params["source"],
                    "start": inj.params["start"].isoformat(),
                    "hours": inj.params["hours"],
                    "count": inj.params["hours"],
                    "summary": f"{inj.params['source']} silent for {inj.params['hours']}h from "
                    f"{inj.params['start'].isoformat()}",
                }
            )

    # Rows that may receive a fault: never a chain head (first/last of a source in this call), each at most once.
    pool = [r for rows in by_source.values() for r in rows[1:-1]]
    rng.shuffle(pool)
    used: set[uuid.UUID] = set()

    def take(n: int, kind: str, source: str | None = None) -> list[dict[str, Any]]:
        picked: list[dict[str, Any]] = []
        for r in pool:
            if len(picked) == n:
                break
            if r["id"] in used or (source and r["source"] != source):
                continue
            picked.append(r)
            used.add(r["id"])
        if len(picked) < n:
            raise SeedError(f"--inject {kind}: only {len(picked)} events available for count={n}")
        return picked

    # Phase 1, before hashing: the application wrote a bad row and hashed it faithfully.
    for inj in injections:
        k, p = inj.kind, inj.params
        if k == "null":
            column = p["column"]
            allowed = [c for c in required_columns if c not in STRUCTURAL]
            if column not in allowed:
                raise InjectionError(
                    f"--inject null: column={column!r} is not a required non-key column ({', '.join(allowed)})"
                )
            victims = take(p["count"], k)
            for v in victims:
                v[column] = None
            plan.injected.append(
                {
                    "kind": k,
                    "column": column,
                    "count": p["count"],
                    "ids": [str(v["id"]) for v in victims],
                    "summary": f"{column} NULL in {p['count']} events",
                }
            )
        elif k == "bad-enum":
            column = p["column"]
            if column not in enums:
                raise InjectionError(
                    f"--inject bad-enum: column={column!r} has no enumeration ({', '.join(enums)})"
                )
            victims = take(p["count"], k)
            for v in victims:
                v[column] = f"bogus_{column}"
            plan.injected.append(
                {
                    "kind": k,
                    "column": column,
                    "count": p["count"],
                    "ids": [str(v["id"]) for v in victims],
                    "value": f"bogus_{column}",
                    "summary": f"{column} outside its enumeration in {p['count']} events",
                }
            )
        elif k == "phi-leak":
            victims = take(p["count"], k)
            kinds = []
            for i, v in enumerate(victims):
                leak_kind, text = _leak(i, rng)
                v["metadata"] = {**v["metadata"], "note": text}
                kinds.append({"id": str(v["id"]), "kind": leak_kind})
            plan.injected.append(
                {
                    "kind": k,
                    "count": p["count"],
                    "ids": [x["id"] for x in kinds],
                    "leaks": kinds,
                    "summary": f"PHI or card data in clear in {p['count']} events",
                }
            )
        elif k == "future":
            victims = take(p["count"], k)
            for v in victims:
                v["recorded_at"] = v["timestamp"] - timedelta(hours=1 + rng.randrange(0, 3))
            plan.injected.append(
                {
                    "kind": k,
                    "count": p["count"],
                    "ids": [str(v["id"]) for v in victims],
                    "summary": f"{p['count']} events timestamped after they were recorded",
                }
            )

    # PHI, encrypted per subject, before hashing.
    if phi is not None:
        phi([r for rows in by_source.values() for r in rows])

    # The chains.
    for name, rows in by_source.items():
        head = heads.get(name, Head(0, None, None))
        prev = head.row_hash
        for i, row in enumerate(rows, start=head.seq + 1):
            row["sequence"] = i
            row["prev_hash"] = prev
            row["row_hash"] = row_hash(row)
            prev = row["row_hash"]

    # Phase 2, after hashing: loss, duplication, tampering.
    removed: set[uuid.UUID] = set()
    extra: list[dict[str, Any]] = []
    for inj in injections:
        k, p = inj.kind, inj.params
        if k == "seq-hole":
            victims = take(p["count"], k, p["source"])
            removed.update(v["id"] for v in victims)
            plan.injected.append(
                {
                    "kind": k,
                    "source": p["source"],
                    "count": p["count"],
                    "seqs": sorted(v["sequence"] for v in victims),
                    "ids": [str(v["id"]) for v in victims],
                    "summary": f"{p['count']} events of {p['source']} lost",
                }
            )
        elif k == "duplicate":
            rows_out = []
            for v in take(p["count"], k):
                dup = dict(v)
                dup["id"] = uuid.UUID(int=rng.getrandbits(128), version=4)
                dup["recorded_at"] = v["recorded_at"] + timedelta(milliseconds=5)
                dup["row_hash"] = row_hash(dup)
                extra.append(dup)
                rows_out.append(
                    {
                        "id": str(dup["id"]),
                        "duplicate_of": str(v["id"]),
                        "source": v["source"],
                        "seq": v["sequence"],
                    }
                )
            plan.injected.append(
                {
                    "kind": k,
                    "count": p["count"],
                    "rows": rows_out,
                    "summary": f"{p['count']} events written twice",
                }
            )
        elif k == "chain-break":
            victims = take(p["count"], k)
            for v in victims:
                # Altered after hashing: the stored hash stays, the content changes.
                v["action"] = f"{v['action']}_altered"
            plan.injected.append(
                {
                    "kind": k,
                    "count": p["count"],
                    "ids": [str(v["id"]) for v in victims],
                    "seqs": [{"source": v["source"], "seq": v["sequence"]} for v in victims],
                    "summary": f"{p['count']} events altered after hashing",
                }
            )

    for rows in by_source.values():
        plan.rows.extend(r for r in rows if r["id"] not in removed)
    plan.rows.extend(extra)
    return plan


def _luhn_card(rng: random.Random) -> str:
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if i % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    return f"{s[0:4]} {s[4:8]} {s[8:12]} {s[12:16]}"


def _leak(i: int, rng: random.Random) -> tuple[str, str]:
    kind = ("ssn", "card", "email")[i % 3]
    if kind == "ssn":
        return (
            kind,
            f"caller gave SSN {rng.randrange(100, 665):03d}-{rng.randrange(10, 99):02d}-{rng.randrange(1000, 9999):04d}",
        )
    if kind == "card":
        return kind, f"card {_luhn_card(rng)} declined"
    return kind, f"contact jane.doe{rng.randrange(10, 99)}@example.com"


# ----------------------------------------------------------------------------------------------- load


def _db_columns(columns: dict[str, str]) -> list[tuple[str, str]]:
    order = (
        "id", "timestamp", "recorded_at", "source", "sequence", "event_type", "actor", "resource", "action",
        "result", "ip", "user_agent", "metadata", "severity", "standard", "subject", "phi_ciphertext",
        "subject_key_id", "prev_hash", "row_hash",
    )  # fmt: skip
    return [(logical, columns[logical]) for logical in order]


def seed_audit(
    *,
    start: date,
    days: int,
    events_per_day: int,
    sources: Sequence[str] | None = None,
    injections: Iterable[Injection] = (),
    random_seed: int | None = None,
    writer_conn_id: str = "audit_writer",
    phi: bool = True,
    keys_conn_id: str = "attestly_db",
) -> dict[str, Any]:
    """Generate and load events; return what was loaded and exactly what was planted.

    With ``phi`` (the default), events that have a subject carry synthetic PHI encrypted with that
    subject's data key (:class:`attestly.keys.PhiVault`, keys in the registry of ``keys_conn_id``):
    ``phi_ciphertext`` and ``subject_key_id`` are set before the row is hashed. Data keys are unwrapped
    once per subject per call.
    """
    import psycopg
    from psycopg import sql
    from psycopg.types.json import Jsonb

    from attestly.connections import pg_connect
    from attestly.policy import load_policy

    if days <= 0 or events_per_day <= 0:
        raise SeedError("--days and --events-per-day must be positive")
    policy = load_policy()
    src_policy = policy.sources
    declared = {s.name: s for s in src_policy.sources}
    chosen = list(sources) if sources else list(declared)
    unknown = [s for s in chosen if s not in declared]
    if unknown:
        raise SeedError(f"--sources: {', '.join(unknown)} not in sources.yaml ({', '.join(declared)})")
    table = src_policy.audit_table
    columns = dict(table.columns)
    injections = list(injections)
    rng = random.Random(random_seed if random_seed is not None else start.toordinal())

    t0 = time.perf_counter()
    vault: PhiVault | None = None
    if phi:
        from attestly.keys import PhiVault

        vault = PhiVault.connect(conn_id=keys_conn_id, created_by="attestly seed")
    with pg_connect(writer_conn_id) as conn, _closing_vault(vault):
        heads = {
            r[0]: Head(int(r[1]), bytes(r[2]) if r[2] is not None else None, r[3])
            for r in conn.execute(
                sql.SQL("SELECT source, seq, row_hash, occurred_at FROM {}.chain_heads()").format(
                    sql.Identifier(table.schema_name)
                )
            )
        }
        plan = plan_events(
            start=start,
            days=days,
            events_per_day=events_per_day,
            sources=[(n, declared[n].min_events_per_hour, declared[n].quiet_allowed) for n in chosen],
            heads=heads,
            injections=injections,
            rng=rng,
            required_columns=list(table.required),
            enums={k: list(v) for k, v in table.enums.items()},
            phi=_phi_filler(vault) if vault is not None else None,
        )
        months = sorted({date(r["timestamp"].year, r["timestamp"].month, 1) for r in plan.rows})
        for m in months:
            conn.execute(
                sql.SQL("SELECT {}.ensure_month_partition(%s)").format(sql.Identifier(table.schema_name)),
                (m,),
            )
        cols = _db_columns(columns)
        copy_sql = sql.SQL("COPY {}.{} ({}) FROM STDIN").format(
            sql.Identifier(table.schema_name),
            sql.Identifier(table.table),
            sql.SQL(", ").join(sql.Identifier(c) for _, c in cols),
        )
        with conn.cursor() as cur, cur.copy(copy_sql) as copy:
            for r in plan.rows:
                copy.write_row(
                    [
                        Jsonb(r[logical])
                        if logical == "metadata" and r[logical] is not None
                        else r.get(logical)
                        for logical, _ in cols
                    ]
                )
        conn.commit()
    seconds = time.perf_counter() - t0
    _ = psycopg  # imported for its side effect of failing early if missing
    begin = datetime(start.year, start.month, start.day, tzinfo=UTC)
    return {
        "rows": len(plan.rows),
        "sources": chosen,
        "start": begin.isoformat(),
        "end": (begin + timedelta(days=days)).isoformat(),
        "seconds": seconds,
        "rows_per_second": len(plan.rows) / seconds if seconds else 0.0,
        "injected": plan.injected,
    }


# ------------------------------------------------------------------------------------------------ PHI


def _phi_plaintext(row: dict[str, Any]) -> bytes:
    """Synthetic PHI for a row: deterministic from the row, nothing real."""
    body = {
        "subject": row["subject"],
        "record": row["resource"],
        "note": f"synthetic note, event {row['id']}",
    }
    return json.dumps(body, sort_keys=True).encode("utf-8")


def _phi_filler(vault: PhiVault) -> Callable[[list[dict[str, Any]]], None]:
    """Fill ``phi_ciphertext`` / ``subject_key_id`` of rows with a subject (keys fetched in one go)."""

    def fill(rows: list[dict[str, Any]]) -> None:
        vault.prefetch({r["subject"] for r in rows if r.get("subject")})
        for r in rows:
            if r.get("subject"):
                r["phi_ciphertext"], r["subject_key_id"] = vault.encrypt(
                    subject_id=r["subject"], plaintext=_phi_plaintext(r)
                )

    return fill


@contextmanager
def _closing_vault(vault: PhiVault | None) -> Iterator[None]:
    try:
        yield
    finally:
        if vault is not None:
            vault.close()
