"""One-time superuser set-up of a database: extensions, the owner role and the app role.

PostGIS is not a trusted extension, so a superuser creates the extensions once. The owner role
owns every table (migrations run as it); the app role is not the owner and has NOBYPASSRLS, so
row-level security applies to every request.
"""

from __future__ import annotations

import psycopg2
from psycopg2 import sql
from sqlalchemy.engine import make_url

EXTENSIONS = ("postgis", "ltree", "pg_trgm", "btree_gist")
#: Index-support operators marked LEAKPROOF (superuser only). Under row-level security the
#: planner may use a user's condition in an index scan only when its function is leakproof; the
#: PostGIS bounding-box operators, the ltree containment operators, LIKE, trigram similarity and
#: array containment are not marked so by default, which turns every spatial or text filter of
#: the app role into a sequential scan. None of these raises an error that reveals a row's
#: value. Exact predicates (ST_Intersects …) stay as they are: GEOS errors can quote coordinates.
LEAKPROOF_FUNCTIONS = (
    "geometry_overlaps(geometry, geometry)", "geometry_contains(geometry, geometry)",
    "geometry_within(geometry, geometry)", "geography_overlaps(geography, geography)",
    "overlaps_geog(geography, gidx)", "overlaps_2d(geometry, box2df)",
    "contains_2d(geometry, box2df)", "is_contained_2d(geometry, box2df)",
    "geometry_distance_centroid(geometry, geometry)", "lt_q_regex(ltree, lquery[])",
    "ltq_regex(ltree, lquery)",
    "ltree_isparent(ltree, ltree)", "ltree_risparent(ltree, ltree)",
    "_ltree_isparent(ltree[], ltree)", "_ltree_r_isparent(ltree, ltree[])",
    "_ltree_risparent(ltree[], ltree)", "_ltree_r_risparent(ltree, ltree[])",
    "textlike(text, text)", "similarity_op(text, text)",
    "arraycontains(anyarray, anyarray)", "arrayoverlap(anyarray, anyarray)",
)
#: Role names are fixed: migrations grant to them by name.
OWNER_ROLE = "gridgov_owner"
APP_ROLE = "gridgov_app"


def _role_exists(cur: psycopg2.extensions.cursor, role: str) -> bool:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    return cur.fetchone() is not None


def ensure_role(cur: psycopg2.extensions.cursor, role: str, password: str | None) -> None:
    """Create or update a login role that can never bypass RLS."""
    verb = "ALTER" if _role_exists(cur, role) else "CREATE"
    opts = sql.SQL("LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS")
    if password is not None:
        opts = opts + sql.SQL(" PASSWORD {}").format(sql.Literal(password))
    cur.execute(sql.SQL(verb + " ROLE {} WITH ").format(sql.Identifier(role)) + opts)


def bootstrap(
    superuser_dsn: str,
    *,
    database: str,
    owner_role: str,
    app_role: str,
    owner_password: str | None,
    app_password: str | None,
) -> None:
    """Create roles, the database and its extensions; safe to run again."""
    conn = psycopg2.connect(_with_database(superuser_dsn, "postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            ensure_role(cur, owner_role, owner_password)
            ensure_role(cur, app_role, app_password)
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is None:
                create = sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0")
                cur.execute(create.format(sql.Identifier(database), sql.Identifier(owner_role)))
    finally:
        conn.close()
    prepare_database(
        superuser_dsn, database=database, owner_role=owner_role, app_role=app_role
    )


def prepare_database(superuser_dsn: str, *, database: str, owner_role: str, app_role: str) -> None:
    """Create the extensions in ``database`` and grant the app role what it needs."""
    conn = psycopg2.connect(_with_database(superuser_dsn, database))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for ext in EXTENSIONS:
                create_ext = sql.SQL("CREATE EXTENSION IF NOT EXISTS {}")
                cur.execute(create_ext.format(sql.Identifier(ext)))
            for fn in LEAKPROOF_FUNCTIONS:
                cur.execute("SELECT to_regprocedure(%s) IS NOT NULL", (fn,))
                if cur.fetchone()[0]:
                    cur.execute(sql.SQL("ALTER FUNCTION {} LEAKPROOF").format(sql.SQL(fn)))
            cur.execute(
                sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                    sql.Identifier(database), sql.Identifier(app_role)
                )
            )
            cur.execute(
                sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner_role))
            )
            cur.execute(
                sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(app_role))
            )
            # Tables the owner creates are readable and writable by the app; migrations revoke
            # UPDATE/DELETE on history and audit tables explicitly.
            cur.execute(
                sql.SQL(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {o} GRANT SELECT, INSERT, UPDATE, DELETE "
                    "ON TABLES TO {a}"
                ).format(o=sql.Identifier(owner_role), a=sql.Identifier(app_role))
            )
            cur.execute(
                sql.SQL(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {o} GRANT USAGE, SELECT ON SEQUENCES TO {a}"
                ).format(o=sql.Identifier(owner_role), a=sql.Identifier(app_role))
            )
            cur.execute(
                sql.SQL("ALTER ROLE {} SET timezone = 'Asia/Shanghai'").format(
                    sql.Identifier(app_role)
                )
            )
    finally:
        conn.close()


def _with_database(dsn: str, database: str) -> str:
    """Return ``dsn`` pointing at another database."""
    return make_url(dsn).set(database=database).render_as_string(hide_password=False)
