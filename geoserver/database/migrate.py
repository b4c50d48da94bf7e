"""Apply the plain-SQL schema: yoyo migrations, then the SQL functions, checked by hash.

Migrations (``sql/postgis/migrations/NNNN.name.sql``) run once each, in order; functions
(``sql/postgis/functions/NNN_name.sql``, ``CREATE OR REPLACE``) are re-applied after every run.
The content hash of each applied file is recorded, so ``serve`` can refuse a database whose schema
differs from the code and say what to run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from yoyo import get_backend, read_migrations

SQL_ROOT = Path(__file__).resolve().parent.parent.parent / "sql" / "postgis"
MIGRATIONS_DIR = SQL_ROOT / "migrations"
FUNCTIONS_DIR = SQL_ROOT / "functions"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def migration_files() -> list[Path]:
    """Return the migration files in order."""
    return sorted(MIGRATIONS_DIR.glob("*.sql"))


def function_files() -> list[Path]:
    """Return the SQL function files in order."""
    return sorted(FUNCTIONS_DIR.glob("*.sql"))


def code_hash() -> str:
    """Return one hash over every file under ``sql/postgis`` (keys the test template database)."""
    h = hashlib.sha256()
    for p in migration_files() + function_files():
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def functions_hash() -> str:
    """Return the hash of all SQL function files together."""
    h = hashlib.sha256()
    for p in function_files():
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@dataclass
class SchemaStatus:
    """How the database's schema compares with the code."""

    empty: bool
    pending: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    functions_current: bool = True

    @property
    def current(self) -> bool:
        """Return whether the schema matches the code exactly."""
        return not (self.empty or self.pending or self.changed or self.unknown) and (
            self.functions_current
        )

    def explain(self) -> str:
        """Return one line saying what differs and what to run."""
        if self.current:
            return "schema is current"
        if self.empty:
            return "the database is empty: run `gridgov db migrate`"
        parts = []
        if self.pending:
            parts.append(f"{len(self.pending)} migration(s) not applied ({self.pending[0]} …)")
        if self.changed:
            parts.append(f"migration(s) changed after being applied: {', '.join(self.changed)}")
        if self.unknown:
            parts.append(f"the database has migrations this code lacks: {', '.join(self.unknown)}")
        if not self.functions_current:
            parts.append("SQL functions differ from the code")
        fix = (
            "upgrade the code" if self.unknown or self.changed else "run `gridgov db migrate`"
        )
        return "; ".join(parts) + f": {fix}"


def _yoyo_url(dsn: str) -> str:
    return dsn.replace("postgresql+psycopg2://", "postgresql://", 1)


def migrate(owner_dsn: str) -> list[str]:
    """Apply pending migrations and re-apply the SQL functions; return the ids applied."""
    backend = get_backend(_yoyo_url(owner_dsn))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    # yoyo prints the result of every SELECT in a migration; the CLI has its own output.
    with backend.lock(timeout=120), contextlib.redirect_stdout(io.StringIO()):
        todo = backend.to_apply(migrations)
        applied = [m.id for m in todo]
        backend.apply_migrations(todo)
    backend.connection.close()
    conn = psycopg2.connect(owner_dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('gridgov.functions'))")
            for path in function_files():
                cur.execute(path.read_text(encoding="utf-8"))
            for path in migration_files():
                cur.execute(
                    "INSERT INTO gridgov_meta.applied_sql (kind, name, sha256) "
                    "VALUES ('migration', %s, %s) ON CONFLICT (kind, name) DO NOTHING",
                    (path.stem, _sha(path)),
                )
            cur.execute(
                "INSERT INTO gridgov_meta.applied_sql (kind, name, sha256) "
                "VALUES ('functions', 'all', %s) ON CONFLICT (kind, name) "
                "DO UPDATE SET sha256 = EXCLUDED.sha256, applied_at = now()",
                (functions_hash(),),
            )
    finally:
        conn.close()
    _disk_state.cache_clear()
    return applied


def schema_status(dsn: str) -> SchemaStatus:
    """Compare the database's applied SQL with the code; works with the app role too."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('gridgov_meta.applied_sql') IS NOT NULL")
            row = cur.fetchone()
            if not row or not row[0]:
                return SchemaStatus(empty=True)
            cur.execute("SELECT kind, name, sha256 FROM gridgov_meta.applied_sql")
            rows = cur.fetchall()
    finally:
        conn.close()
    return compare_status(rows)


@functools.cache
def _disk_state() -> tuple[dict[str, str], str]:
    # The SQL files do not change under a running process; hash them once.
    return {p.stem: _sha(p) for p in migration_files()}, functions_hash()


def compare_status(rows: list[tuple[str, str, str]]) -> SchemaStatus:
    """Compare applied (kind, name, sha256) rows with the files on disk."""
    applied = {name: sha for kind, name, sha in rows if kind == "migration"}
    files, fhash = _disk_state()
    fn = next((sha for kind, _, sha in rows if kind == "functions"), None)
    return SchemaStatus(
        empty=False,
        pending=sorted(set(files) - set(applied)),
        changed=sorted(n for n in files if n in applied and applied[n] != files[n]),
        unknown=sorted(set(applied) - set(files)),
        functions_current=fn == fhash,
    )
