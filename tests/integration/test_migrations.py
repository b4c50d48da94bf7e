"""Migrations apply once, functions are re-applied, and a changed schema is noticed."""

from __future__ import annotations

from contextlib import closing

from geoserver.database import migrate as migrations
from geoserver.database.bootstrap import OWNER_ROLE


def test_migrate_is_idempotent(pg, module_db) -> None:
    url = pg.url(OWNER_ROLE, module_db)
    assert migrations.migrate(url) == []
    status = migrations.schema_status(url)
    assert status.current, status.explain()


def test_status_names_what_differs() -> None:
    files = migrations.migration_files()
    first = files[0].stem
    rows = [("migration", p.stem, "x" * 64) for p in files] + [("functions", "all", "old")]
    status = migrations.compare_status(rows)
    assert not status.current
    assert first in status.changed
    assert not status.functions_current
    assert "changed" in status.explain()

    pending = migrations.compare_status([("functions", "all", migrations.functions_hash())])
    assert pending.pending == sorted(p.stem for p in files)
    assert "gridgov db migrate" in pending.explain()

    unknown_rows = [("migration", "9999.from-the-future", "y")]
    assert "lacks" in migrations.compare_status(unknown_rows).explain()


def test_empty_database_is_reported_empty(pg) -> None:
    name = "gridgov_empty_probe"
    pg.drop(name)
    with closing(pg.superuser()) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}" OWNER {OWNER_ROLE}')
    try:
        status = migrations.schema_status(pg.url(OWNER_ROLE, name))
        assert status.empty and not status.current
        assert "empty" in status.explain()
    finally:
        pg.drop(name)
