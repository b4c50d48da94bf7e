"""The scope plumbing: the app role cannot bypass RLS, and a scope sees exactly its subtree."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg2
import pytest
from sqlalchemy import text

from geoserver.database.bootstrap import APP_ROLE, OWNER_ROLE
from geoserver.database.engine import scope_literal


def test_app_role_cannot_bypass_rls(app_engine) -> None:
    """Canary: if this fails, every policy in the schema is decoration."""
    with app_engine.connect() as conn:
        row = conn.execute(
            text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).one()
        assert conn.execute(text("SELECT current_user")).scalar() == APP_ROLE
    assert row.rolsuper is False
    assert row.rolbypassrls is False


def test_app_role_owns_no_table(app_engine) -> None:
    """Owners bypass their own policies, so the app role must own nothing."""
    with app_engine.connect() as conn:
        owned = conn.execute(
            text("SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
                 "WHERE r.rolname = :r AND c.relkind IN ('r', 'p', 'v', 'm')"),
            {"r": APP_ROLE},
        ).scalar()
    assert owned == 0


@pytest.fixture(scope="module")
def probe_table(pg, module_db) -> Iterator[str]:
    """A committed table with the standard scope policy and rows in two townships."""
    conn = psycopg2.connect(pg.url(OWNER_ROLE, module_db))
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE rls_probe (id int PRIMARY KEY, path ltree NOT NULL)")
        cur.execute("SELECT gridgov_meta.enable_scope_rls('rls_probe')")
        cur.execute(
            "INSERT INTO rls_probe VALUES (1, '330300.330302.330302006'), "
            "(2, '330300.330302.330302006.330302006001'), (3, '330300.330302.330302025'), "
            "(4, '330300.330303.330303001')"
        )
    conn.close()
    yield pg.url(APP_ROLE, module_db)


def _visible(url: str, scope: list[str] | None) -> list[int]:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            if scope is not None:
                cur.execute("SELECT set_config('gridgov.scope', %s, true)", (scope_literal(scope),))
            cur.execute("SELECT id FROM rls_probe ORDER BY id")
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


def test_no_scope_sees_nothing(probe_table: str) -> None:
    assert _visible(probe_table, None) == []
    assert _visible(probe_table, []) == []


def test_township_scope_sees_its_subtree_only(probe_table: str) -> None:
    assert _visible(probe_table, ["330300.330302.330302006"]) == [1, 2]
    assert _visible(probe_table, ["330300.330302"]) == [1, 2, 3]
    assert _visible(probe_table, ["330300.330302.330302006", "330300.330303"]) == [1, 2, 4]
    # A sibling with a shared code prefix is not a descendant.
    assert _visible(probe_table, ["330300.330302.33030200"]) == []


def test_scope_is_transaction_local(probe_table: str) -> None:
    conn = psycopg2.connect(probe_table)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('gridgov.scope', %s, true)",
                        (scope_literal(["330300"]),))
            cur.execute("SELECT count(*) FROM rls_probe")
            assert cur.fetchone()[0] == 4
            conn.commit()
            cur.execute("SELECT count(*) FROM rls_probe")
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()


def test_write_outside_scope_is_refused(probe_table: str) -> None:
    conn = psycopg2.connect(probe_table)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('gridgov.scope', %s, true)",
                        (scope_literal(["330300.330302.330302006"]),))
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("INSERT INTO rls_probe VALUES (9, '330300.330303.330303001')")
        conn.rollback()
    finally:
        conn.close()


def test_scope_literal_rejects_injection() -> None:
    with pytest.raises(ValueError):
        scope_literal(['330300"}, {"'])
    with pytest.raises(ValueError):
        scope_literal(["330300; DROP TABLE x"])
    assert scope_literal(["330300.330302", ""]) == '{"330300.330302",""}'


def test_app_role_bbox_and_path_filters_use_indexes(demo) -> None:
    """Under RLS only leakproof operators may drive an index scan: bootstrap marks them."""
    demo.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(demo.execute(text(
        "EXPLAIN SELECT count(*) FROM region WHERE "
        "geom && ST_MakeEnvelope(120.6, 28.0, 120.61, 28.01, 4490)")).scalars())
    assert "Index" in plan and "Seq Scan" not in plan, plan
    plan = "\n".join(demo.execute(text(
        "EXPLAIN SELECT count(*) FROM region WHERE path <@ '330300.330302'::ltree")).scalars())
    assert "Seq Scan" not in plan, plan
