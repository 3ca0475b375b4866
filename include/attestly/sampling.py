"""Reproducible samples for a Type II period: ``attestly sample --control C --from D --to D --size N --seed S``.

Populations, from the ledgered evidence of the control whose period overlaps ``[from, to]`` (UTC days,
both inclusive):

- ``days`` — every calendar day of the period, key ``YYYY-MM-DD`` (each member also says how many
  ledgered items of the control cover it: a day without evidence can be drawn, and shows as such);
- ``items`` — every ledgered evidence item of the control (an observation: one collector, scope and
  period), key its SHA-256 (64 lowercase hex digits);
- ``resources`` — every distinct resource named by a finding of those items, key
  ``<collector>|<scope>|<resource>`` where ``<scope>`` is ``k=v`` pairs sorted by key and joined by a
  space (e.g. ``aws.s3.encryption|account=111111111111 region=us-east-1|arn:aws:s3:::logs``).

Algorithm ``attestly.sample/v1`` (specified so it can be re-drawn without Python):

1. Take the population's keys, without duplicates, sorted by their UTF-8 bytes.
2. For each key, ``score = SHA-256(UTF-8(seed) || 0x00 || UTF-8(population name) || 0x00 || UTF-8(key))``,
   written as 64 lowercase hex digits.
3. Order the keys by score (then by key); the sample is the first ``min(size, population size)``.

The population's fingerprint is SHA-256 of the sorted keys, each followed by ``\\n`` (so ``sha256sum`` of
the ``members`` written one per line). A member's score does not depend on the other members, so a
population that gained or lost members keeps the rest of its order. The draw is written as JSON (with the
full populations) and CSV (the sample), and ledgered as kind ``sample`` (once per identical draw).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attestly.evidence import canonical_json

if TYPE_CHECKING:
    from attestly.ledger import Ledger
    from attestly.reports.model import EvidenceRecord
    from attestly.store import EvidenceStore

ALGORITHM = "attestly.sample/v1"
SCHEMA = "attestly.sample/v1"
POPULATIONS = ("days", "items", "resources")
MAX_SIZE = 10_000
EXIT_OK, EXIT_USAGE = 0, 2


class SampleError(ValueError):
    """Bad input (exit 2): the message names the option and why."""


def score(seed: str, population: str, key: str) -> str:
    """``SHA-256(seed || 0x00 || population || 0x00 || key)`` in hex (UTF-8 throughout)."""
    return hashlib.sha256(b"\x00".join(s.encode("utf-8") for s in (seed, population, key))).hexdigest()


def fingerprint(keys: Sequence[str]) -> str:
    """SHA-256 of the sorted keys, each followed by a newline."""
    return hashlib.sha256("".join(f"{k}\n" for k in keys).encode("utf-8")).hexdigest()


def canonical_keys(keys: Sequence[str]) -> list[str]:
    return sorted(set(keys), key=lambda k: k.encode("utf-8"))


def draw(seed: str, population: str, keys: Sequence[str], size: int) -> list[tuple[str, str]]:
    """``[(key, score)]`` of the sample, in draw order (see the module's algorithm)."""
    scored = sorted(((score(seed, population, k), k) for k in canonical_keys(keys)), key=lambda sk: sk)
    return [(k, s) for s, k in scored[:size]]


# ------------------------------------------------------------------------------------------ populations


@dataclass
class Population:
    name: str
    enumerated: str
    members: dict[str, dict[str, Any]]  # key -> detail (for the sample rows)


def _scope_text(scope: Any) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(dict(scope).items()))


def populations(
    *,
    records: Sequence[EvidenceRecord],
    start: date,
    end: date,
    store: EvidenceStore | None,
    names: Sequence[str],
) -> list[Population]:
    """The populations ``names`` from ``records`` (already the control's items overlapping the period)."""
    from attestly.reports.model import Period

    period = Period(start, end)
    out: list[Population] = []
    if "days" in names:
        per_day: dict[str, int] = {d.isoformat(): 0 for d in period.days}
        for r in records:
            for d in r.overlapped_days(period):
                per_day[d.isoformat()] += 1
        out.append(
            Population(
                "days",
                f"every UTC day from {start.isoformat()} to {end.isoformat()}, with the number of ledgered "
                "evidence items of the control covering it",
                {k: {"items": n} for k, n in per_day.items()},
            )
        )
    if "items" in names:
        out.append(
            Population(
                "items",
                "every evidence item in the ledger (kind evidence) that serves the control and whose period "
                "overlaps the sample period",
                {
                    r.sha256: {
                        "ledger_seq": r.seq,
                        "collector": r.collector,
                        "scope": _scope_text(r.scope),
                        "period_start": r.period_start.isoformat(),
                        "period_end": r.period_end.isoformat(),
                        "result": r.result,
                    }
                    for r in records
                },
            )
        )
    if "resources" in names:
        if store is None:
            raise SampleError("the evidence bucket is needed to enumerate resources")
        from attestly.reports.source import ObjectReader

        found = ObjectReader(store).findings(list(records))
        members: dict[str, dict[str, Any]] = {}
        for r in sorted(records, key=lambda r: r.seq):
            for f in found.get(r.seq, []):
                if not f.resource:
                    continue
                key = f"{r.collector}|{_scope_text(r.scope)}|{f.resource}"
                m = members.setdefault(
                    key, {"collector": r.collector, "scope": _scope_text(r.scope), "resource": f.resource,
                          "observations": 0, "failing": 0, "items": []}
                )  # fmt: skip
                m["observations"] += 1
                m["failing"] += f.status in ("fail", "error")
                m["items"].append(r.sha256)
        out.append(
            Population(
                "resources",
                "every distinct (collector, scope, resource) named by a finding of those evidence items, read "
                "from the objects in the bucket (checked against their ledgered SHA-256)",
                members,
            )
        )
    return out


# -------------------------------------------------------------------------------------------------- run


def sample(
    *,
    ledger: Ledger,
    store: EvidenceStore | None,
    control: str,
    start: date,
    end: date,
    size: int,
    seed: str,
    names: Sequence[str] = POPULATIONS,
    known_controls: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The draw document (deterministic for the same ledger, control, period, size, seed)."""
    from attestly.reports.model import EvidenceRecord, Period, ReportInputError

    if known_controls is not None and control not in known_controls:
        raise SampleError(f"--control {control!r} is not a control of the policy")
    if not 1 <= size <= MAX_SIZE:
        raise SampleError(f"--size {size}: give 1 to {MAX_SIZE}")
    try:
        period = Period(start, end)
    except ReportInputError as exc:
        raise SampleError(f"--from/--to: {exc}") from None
    records = []
    for e in ledger.entries(kind="evidence"):
        rec = EvidenceRecord.from_body(seq=e.seq, recorded_at=e.recorded_at, body=e.body)
        if control in rec.controls and rec.overlapped_days(period):
            records.append(rec)
    pops = populations(records=records, start=start, end=end, store=store, names=names)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "control": control,
        "period": {"from": start.isoformat(), "to": end.isoformat()},
        "seed": seed,
        "size": size,
        "algorithm": {
            "id": ALGORITHM,
            "order": "population keys deduplicated and sorted by UTF-8 bytes",
            "score": "SHA-256(UTF-8(seed) || 0x00 || UTF-8(population) || 0x00 || UTF-8(key)), lowercase hex",
            "selection": "the first min(size, population size) keys ordered by (score, key)",
            "fingerprint": "SHA-256 of the sorted keys, each followed by a newline",
        },
        "populations": {},
    }
    for p in pops:
        keys = canonical_keys(list(p.members))
        drawn = draw(seed, p.name, keys, size)
        doc["populations"][p.name] = {
            "enumerated": p.enumerated,
            "size": len(keys),
            "sha256": fingerprint(keys),
            "members": keys,
            "sample": [
                {"rank": i + 1, "key": k, "score": s, **p.members[k]} for i, (k, s) in enumerate(drawn)
            ],
        }
    return doc


def to_csv(doc: dict[str, Any]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["population", "rank", "key", "score", "detail"])
    for name, p in doc["populations"].items():
        for row in p["sample"]:
            detail = {k: v for k, v in row.items() if k not in ("rank", "key", "score")}
            w.writerow([name, row["rank"], row["key"], row["score"], json.dumps(detail, sort_keys=True)])
    return out.getvalue()


def record(
    *, ledger: Ledger, doc: dict[str, Any], json_bytes: bytes, csv_bytes: bytes, drawn_by: str
) -> tuple[int, bool]:
    """Ledger the draw (kind ``sample``), once per identical draw. Returns (seq, created)."""
    from datetime import UTC, datetime

    core = {
        "schema": doc["schema"],
        "control": doc["control"],
        "period": doc["period"],
        "seed": doc["seed"],
        "size": doc["size"],
        "algorithm": doc["algorithm"]["id"],
        "populations": {
            n: {"size": p["size"], "sha256": p["sha256"], "sample": [r["key"] for r in p["sample"]]}
            for n, p in doc["populations"].items()
        },
        "json_sha256": hashlib.sha256(json_bytes).hexdigest(),
        "csv_sha256": hashlib.sha256(csv_bytes).hexdigest(),
    }
    key = "sample:" + hashlib.sha256(canonical_json(core)).hexdigest()
    body = {**core, "drawn_by": drawn_by, "drawn_at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
    entry, created = ledger.append("sample", body, dedupe_key=key)
    return entry.seq, created


# -------------------------------------------------------------------------------------------------- CLI


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc


def cmd_sample(args: argparse.Namespace) -> int:
    from attestly.cli import stack_env
    from attestly.identity import cli_identity
    from attestly.ledger import Ledger
    from attestly.policy import load_policy
    from attestly.textinput import TextInputError, clean_name

    def fail(message: str) -> int:
        print(f"attestly: error: {message}", file=sys.stderr)
        return EXIT_USAGE

    try:
        seed = clean_name(args.seed, option="--seed")
    except TextInputError as exc:
        return fail(str(exc))
    names = args.population or list(POPULATIONS)
    policy = load_policy()
    stack_env()
    store = None
    if "resources" in names:
        from attestly.store import EvidenceStore

        store = EvidenceStore.from_connection()
    with Ledger.connect() as ledger:
        try:
            doc = sample(
                ledger=ledger,
                store=store,
                control=args.control,
                start=args.from_date,
                end=args.to_date,
                size=args.size,
                seed=seed,
                names=names,
                known_controls=list(policy.controls),
            )
        except SampleError as exc:
            return fail(str(exc))
        json_bytes = (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
        csv_bytes = to_csv(doc).encode("utf-8")
        stem = "sample_" + re.sub(
            r"[^A-Za-z0-9._-]+", "-", f"{args.control}_{args.from_date}_{args.to_date}_{seed}"
        )
        out_dir: Path = args.out
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{stem}.json").write_bytes(json_bytes)
        (out_dir / f"{stem}.csv").write_bytes(csv_bytes)
        seq, created = record(
            ledger=ledger, doc=doc, json_bytes=json_bytes, csv_bytes=csv_bytes, drawn_by=cli_identity()
        )
    summary = {
        "json": str(out_dir / f"{stem}.json"),
        "csv": str(out_dir / f"{stem}.csv"),
        "json_sha256": hashlib.sha256(json_bytes).hexdigest(),
        "ledger_seq": seq,
        "created": created,
        "populations": {
            n: {"size": p["size"], "sha256": p["sha256"], "sample": [r["key"] for r in p["sample"]]}
            for n, p in doc["populations"].items()
        },
    }
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        state = "ledgered" if created else "already ledgered (the same draw)"
        print(
            f"{state}: sample of {args.control} {args.from_date}..{args.to_date}, seed {seed!r} (ledger seq {seq})"
        )
        for n, p in doc["populations"].items():
            print(f"  {n}: {len(p['sample'])} of {p['size']} (population sha256 {p['sha256']})")
        print(f"  wrote {summary['json']} and {summary['csv']}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``sample`` command to the main parser's sub-commands."""
    p = sub.add_parser(
        "sample",
        help="draw a reproducible sample (days, items, resources) of a control's evidence for a period",
        description=f"Draw a reproducible sample with algorithm {ALGORITHM}: keys sorted by UTF-8 bytes, "
        "ordered by SHA-256(seed 0x00 population 0x00 key), the first SIZE taken (see README, Sampling). "
        "Writes JSON (the populations and the sample) and CSV (the sample), and ledgers the draw.",
    )
    p.add_argument("--control", required=True, help="e.g. soc2:CC6.1")
    p.add_argument("--from", dest="from_date", type=_date, required=True, help="first day (UTC)")
    p.add_argument("--to", dest="to_date", type=_date, required=True, help="last day (UTC), inclusive")
    p.add_argument("--size", type=int, required=True, help="sample size per population")
    p.add_argument("--seed", required=True, help="the seed (text; record it in the workpapers)")
    p.add_argument("--population", action="append", choices=POPULATIONS, default=None, help="default: all")
    p.add_argument("--out", type=Path, default=Path("."), help="directory for the JSON and CSV (default .)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sample)
