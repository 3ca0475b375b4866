"""A small, strict migration runner: ordered SQL files, each applied once, in one transaction.

Files live in ``attestly/db/migrations/<database>/NNNN_name.sql``. The table
``public.attestly_schema_migrations`` in each database records version, name, SHA-256 and time; a file
whose content changed after it was applied is an error (migrations are append-only, like the data).

``migrate_url`` applies every database's migrations from one superuser URL (``ATTESTLY_DATABASE_URL``):
what the image's ``airflow-init`` runs; the local stack (``attestly_dev.stack``) calls ``migrate_all``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
LOCK_ID = 0x41747465  # "Atte": one migrator at a time per database
#: The databases Attestly migrates, in order: the audit log's reference schema, then Attestly's state.
DATABASES = ("audit", "attestly")


class MigrationError(RuntimeError):
    """A migration failed or was altered after being applied; the message names the file."""


@dataclass(frozen=True)
class Migration:
    database: str
    version: str
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def migrations(database: str) -> list[Migration]:
    found = []
    for path in sorted((MIGRATIONS_DIR / database).glob("*.sql")):
        version, _, name = path.stem.partition("_")
        if not version.isdigit():
            raise MigrationError(f"{path}: migration file names start with a number (NNNN_name.sql)")
        found.append(Migration(database, version, name, path))
    return found


def migrate(conninfo: str, database: str) -> list[str]:
    """Apply pending migrations for ``database`` over ``conninfo`` (a superuser). Returns applied names."""
    import psycopg

    applied: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS public.attestly_schema_migrations (
                       version text PRIMARY KEY, name text NOT NULL, sha256 text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            conn.execute("REVOKE ALL ON public.attestly_schema_migrations FROM PUBLIC")
            done = {
                row[0]: row[1]
                for row in conn.execute("SELECT version, sha256 FROM public.attestly_schema_migrations")
            }
            for m in migrations(database):
                if m.version in done:
                    if done[m.version] != m.checksum:
                        raise MigrationError(
                            f"{m.path}: changed after it was applied (recorded sha256 {done[m.version][:12]}…, "
                            f"file {m.checksum[:12]}…); add a new migration instead"
                        )
                    continue
                try:
                    with conn.transaction():
                        conn.execute(m.sql)  # type: ignore[call-overload]  # trusted SQL files shipped in the package
                        conn.execute("RESET ROLE")
                        conn.execute(
                            "INSERT INTO public.attestly_schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
                            (m.version, m.name, m.checksum),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(f"{m.path}: {exc}") from exc
                applied.append(f"{database}/{m.path.name}")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
    return applied


class AdminServer(Protocol):
    """A PostgreSQL server reached as a superuser (the local stack's ``Server`` is one)."""

    def admin_conninfo(self, dbname: str | None = None) -> str: ...


def migrate_all(srv: AdminServer) -> list[str]:
    applied = []
    for database in DATABASES:
        applied += migrate(srv.admin_conninfo(database), database)
    return applied


@dataclass(frozen=True)
class UrlServer:
    """The server of a superuser URL: ``postgresql://user:password@host:port/dbname?sslmode=…``."""

    url: str = field(repr=False)  # carries the password

    def admin_conninfo(self, dbname: str | None = None) -> str:
        from attestly.connections import Conn

        parts = urlsplit(self.url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise MigrationError(
                f"not a PostgreSQL URL (postgresql://user:password@host:port/db): {parts.scheme}://…"
            )
        sslmode = parse_qs(parts.query).get("sslmode", [None])[0]
        return Conn(
            conn_id="admin",
            conn_type="postgres",
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            login=unquote(parts.username or "postgres"),
            password=unquote(parts.password) if parts.password else None,
            schema=dbname or parts.path.lstrip("/") or "postgres",
            extra={"sslmode": sslmode} if sslmode else {},
        ).pg_conninfo()


def migrate_url(url: str | None = None) -> list[str]:
    """Apply every pending migration of every database (``DATABASES``) through a superuser URL.

    ``url`` defaults to ``ATTESTLY_DATABASE_URL``; the databases must exist (the image's PostgreSQL init
    script creates them and their roles). Returns the applied files, ``[]`` when up to date.
    """
    url = url or os.environ.get("ATTESTLY_DATABASE_URL")
    if not url:
        raise MigrationError("no database: give a superuser URL or set ATTESTLY_DATABASE_URL")
    return migrate_all(UrlServer(url))


def main(argv: list[str] | None = None) -> int:
    """``python -m attestly.db.migrate [URL]``: what a Kubernetes Job per release runs (URL defaults to
    ``ATTESTLY_DATABASE_URL``). Exit 0 applied or up to date, 1 a migration failed."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    try:
        applied = migrate_url(args[0] if args else None)
    except MigrationError as exc:
        print(f"attestly migrations: {exc}", file=sys.stderr)
        return 1
    print(f"attestly migrations applied: {', '.join(applied) or 'none (up to date)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
