"""Set-based loading for the big kinds (buildings, city components): COPY into ``etl_stage``,
then one ``INSERT … SELECT … ON CONFLICT (code) DO UPDATE`` per batch.

Rows reach the stage already validated by the service's input model and with geometries
checked and repaired; the merge then leaves the rest to the database as every write does:
the location trigger derives path and region from the geometry, and row-level security refuses
a row outside the caller's jurisdiction. A batch that fails is split in halves until the bad
row is found, so ``--keep-going`` loses only that row and the all-or-nothing mode can name it.
An unchanged row (same fields, same geometry) is not rewritten and keeps its version: each
batch first drops such rows from the stage in one join on the code, so a re-import of a
mostly unchanged file never pays the INSERT's per-row work (generated columns, constraints,
the location lookup) for them.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from geoserver.geo.crs import STORAGE_SRID
from geoserver.services.dberrors import sqlstate

#: Rows per merge statement: large enough for set-based speed, small enough that a failing
#: batch is bisected quickly.
MERGE_BATCH = 50_000
#: Geometries closer than this (degrees, ~1 cm) are the same shape: a file reprojected and back
#: differs from what is stored by float noise only, and is not an update.
SAME_SHAPE_DEG = 1e-7
_STAGE_COLUMNS = ("load_id", "row_no", "code", "props", "geom", "h3_r7", "h3_r8", "h3_r9")


@dataclass(frozen=True)
class BulkSpec:
    """How staged rows of one kind merge into their table."""

    table: str
    permission: str
    #: Plain columns and their SQL types (identifiers from code, never from input).
    columns: Mapping[str, str]
    #: Store geometries as their Multi- form (ST_Multi).
    multi: bool
    resolutions: tuple[int, ...]


@dataclass
class MergeCounts:
    """What a merge did."""

    inserted: int = 0
    updated: int = 0


def new_load_id() -> str:
    """Return a fresh load id."""
    return str(uuid.uuid4())


def open_load(session: Session, load_id: str) -> None:
    """Make the load's staged rows visible to this transaction (the staging table's policy)."""
    session.execute(text("SELECT set_config('gridgov.etl_load', :l, true)"), {"l": load_id})


def stage(session: Session, load_id: str, rows: Sequence[int], codes: Sequence[str],
          props: Sequence[Mapping[str, Any]], geoms: npt.NDArray[np.object_],
          cells: Mapping[int, npt.NDArray[np.int64]], *, direct: bool = False) -> int:
    """COPY validated rows into the stage; return how many.

    ``direct``: the session is the table owner's, to whom row-level security does not apply,
    so COPY goes straight into the stage.
    """
    if not len(rows):
        return 0
    wkb = shapely.to_wkb(shapely.set_srid(geoms, STORAGE_SRID), hex=True, include_srid=True)
    h3 = [cells.get(r) for r in (7, 8, 9)]
    buf = io.StringIO()
    writer = csv.writer(buf)
    for i, row in enumerate(rows):
        writer.writerow([load_id, row, codes[i], json.dumps(props[i], ensure_ascii=False),
                         wkb[i], *("" if c is None else int(c[i]) for c in h3)])
    buf.seek(0)
    # COPY cannot write into a table under row-level security: for the app role, rows go
    # through a temporary table, then INSERT, which the stage's policy checks like any write.
    into = "etl_stage" if direct else "etl_copy"
    if not direct:
        session.execute(text("CREATE TEMP TABLE IF NOT EXISTS etl_copy "
                             "(LIKE etl_stage INCLUDING DEFAULTS) ON COMMIT DROP"))
    raw: Any = session.connection().connection.dbapi_connection
    with raw.cursor() as cur:  # psycopg2's COPY FROM STDIN
        cur.copy_expert(f"COPY {into} ({', '.join(_STAGE_COLUMNS)}) FROM STDIN "
                        "WITH (FORMAT csv)", buf)
    if not direct:
        session.execute(text("INSERT INTO etl_stage SELECT * FROM etl_copy"))
        session.execute(text("TRUNCATE etl_copy"))
    return len(rows)


def duplicate_codes(session: Session, load_id: str, limit: int = 1000) -> list[tuple[str,
                                                                                   list[int]]]:
    """Return codes that appear on more than one staged row, with their rows."""
    rows = session.execute(text(
        "SELECT code, array_agg(row_no ORDER BY row_no) AS rows FROM etl_stage "
        "WHERE load_id = :l GROUP BY code HAVING count(*) > 1 ORDER BY min(row_no) LIMIT :n"),
        {"l": load_id, "n": limit}).all()
    return [(r.code, list(r.rows)) for r in rows]


def drop_rows(session: Session, load_id: str, row_nos: Sequence[int]) -> None:
    """Remove staged rows (rejected before the merge)."""
    if row_nos:
        session.execute(text("DELETE FROM etl_stage WHERE load_id = :l "
                             "AND row_no = ANY(CAST(:r AS bigint[]))"),
                        {"l": load_id, "r": list(row_nos)})


def unplaceable(session: Session, load_id: str, limit: int | None = None) -> list[tuple[int,
                                                                                      str]]:
    """Return staged rows outside every region or outside the caller's scope, with why."""
    # The location trigger's rule, set-based over one batch of rows at a time
    # (gridgov_meta.locate_staged, migration 0110).
    found: list[tuple[int, str]] = []
    bounds = staged_range(session, load_id)
    lo, last = bounds if bounds is not None else (1, 0)
    while lo <= last and (limit is None or len(found) < limit):
        hi = min(lo + MERGE_BATCH - 1, last)
        rows = session.execute(text(
            "SELECT s.row_no, l.path IS NULL AS nowhere FROM etl_stage s "
            "LEFT JOIN gridgov_meta.locate_staged(:lo, :hi) l ON l.row_no = s.row_no "
            "WHERE s.load_id = :l AND s.row_no BETWEEN :lo AND :hi "
            "AND (l.path IS NULL OR NOT l.path <@ ANY ((SELECT gridgov_meta.scope()))) "
            "ORDER BY s.row_no LIMIT :n"),
            {"l": load_id, "lo": lo, "hi": hi,
             "n": None if limit is None else limit - len(found)}).all()
        found += [(r.row_no, "lies outside the city (in no region)" if r.nowhere
                   else "lies outside your jurisdiction") for r in rows]
        lo = hi + 1
    return found


def staged_range(session: Session, load_id: str) -> tuple[int, int] | None:
    """Return the first and last staged row numbers."""
    row = session.execute(text("SELECT min(row_no), max(row_no) FROM etl_stage "
                               "WHERE load_id = :l"), {"l": load_id}).one()
    return None if row[0] is None else (int(row[0]), int(row[1]))


def discard(session: Session, load_id: str) -> int:
    """Delete a load's staged rows; return how many."""
    result = session.execute(text("DELETE FROM etl_stage WHERE load_id = :l"), {"l": load_id})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _values(spec: BulkSpec) -> dict[str, str]:
    """Return each written column (but path and region) with its value from staged row ``s``."""
    return {"code": "s.code",
            **{c: f"CAST(s.props ->> '{c}' AS {t})" for c, t in spec.columns.items()},
            "attributes": "coalesce(s.props -> 'attributes', '{}'::jsonb)",
            "geom": "ST_Multi(s.geom)" if spec.multi else "s.geom",
            **{f"h3_r{r}": f"s.h3_r{r}" for r in spec.resolutions}}


def _changed(spec: BulkSpec, provided: Collection[str]) -> list[str]:
    """Return the plain columns an existing row takes from the file."""
    # A column the file does not have must not blank the stored value on update.
    return [c for c in [*spec.columns, "attributes"] if c in provided]


def _differs(changed: Sequence[str], new: Mapping[str, str]) -> str:
    """Return the condition under which stored row ``t`` differs from the values ``new``."""
    # The same shape within SAME_SHAPE_DEG is unchanged (a file reprojected and back); the
    # Hausdorff distance is only computed for rows whose bytes differ.
    differs = [f"({', '.join(f't.{c}' for c in changed)}) IS DISTINCT FROM "
               f"({', '.join(new[c] for c in changed)})"] if changed else []
    differs.append(f"NOT (ST_OrderingEquals(t.geom, {new['geom']}) OR "
                   f"ST_HausdorffDistance(t.geom, {new['geom']}) < {SAME_SHAPE_DEG!r})")
    return " OR ".join(differs)


def _unchanged_sql(spec: BulkSpec, provided: Collection[str]) -> str:
    """Return the statement that drops a batch's staged rows equal to their stored row.

    Exactly the rows the merge's ``ON CONFLICT … WHERE`` would leave alone; for the app role
    only rows it may see count (row-level security on the table), as in the merge.
    """
    return (
        "DELETE FROM etl_stage s WHERE s.load_id = :l AND s.row_no BETWEEN :lo AND :hi "
        f"AND EXISTS (SELECT FROM {spec.table} t WHERE t.code = s.code "
        f"AND NOT ({_differs(_changed(spec, provided), _values(spec))}))")


def _merge_sql(spec: BulkSpec, provided: Collection[str], locate: bool) -> str:
    """Return the merge statement; an existing row changes only in the fields the file gives.

    With ``locate``, path and region come from one set-based ``gridgov_meta.locate_staged``
    join over the batch (a trusted bulk load by the owner, where the location trigger stands
    aside); otherwise the trigger derives them row by row.
    """
    values = _values(spec)
    h3 = [f"h3_r{r}" for r in spec.resolutions]
    located = ["path", "region_id"] if locate else []
    source = ("FROM etl_stage s LEFT JOIN gridgov_meta.locate_staged(:lo, :hi) loc "
              "ON loc.row_no = s.row_no " if locate else "FROM etl_stage s ")
    changed = _changed(spec, provided)
    sets = ", ".join(f"{c} = excluded.{c}" for c in [*changed, "geom", *h3, *located])
    return (
        f"WITH up AS (INSERT INTO {spec.table} AS t ({', '.join([*values, *located])}) "
        f"SELECT {', '.join([*values.values(), *(f'loc.{c}' for c in located)])} {source}"
        "WHERE s.load_id = :l AND s.row_no BETWEEN :lo AND :hi ORDER BY s.row_no "
        f"ON CONFLICT (code) DO UPDATE SET {sets}, version = t.version + 1, updated_at = now() "
        f"WHERE {_differs(changed, {c: f'excluded.{c}' for c in values})} "
        "RETURNING (t.xmax = 0) AS inserted) "
        "SELECT count(*) FILTER (WHERE inserted) AS inserted, "
        "count(*) FILTER (WHERE NOT inserted) AS updated FROM up")


def explain_failure(exc: DBAPIError, kind: str) -> str:
    """Say in an analyst's words why the database refused a row."""
    state = sqlstate(exc)
    message = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    if state == "42501":
        return (f"lies outside your jurisdiction, or its code belongs to a {kind} outside it "
                "(refused by row-level security)")
    if state == "GG422" or (state == "23502" and "path" in message):
        return "lies outside the city (in no region)"
    return message


Reject = Callable[[int, str], None]


def merge(session: Session, spec: BulkSpec, load_id: str, *, kind: str,
          provided: Collection[str], on_reject: Reject | None, locate: bool = False,
          batch: int = MERGE_BATCH,
          progress: Callable[[int], None] | None = None) -> MergeCounts:
    """Merge a load's staged rows into the table, batch by batch, each in a savepoint.

    With ``on_reject`` (keep going), a failing batch is bisected and each bad row reported and
    skipped. Without it, the first bad row is found the same way and raised as
    ``RowRefused(row, reason)``.
    """
    counts = MergeCounts()
    bounds = staged_range(session, load_id)
    if bounds is None:
        return counts
    sql = (text(_unchanged_sql(spec, provided)), text(_merge_sql(spec, provided, locate)))
    lo, last = bounds
    while lo <= last:
        hi = min(lo + batch - 1, last)
        _merge_range(session, sql, load_id, lo, hi, counts, kind, on_reject)
        if progress is not None:
            progress(hi - lo + 1)
        lo = hi + 1
    return counts


class RowRefused(Exception):
    """The database refused a staged row (all-or-nothing mode)."""

    def __init__(self, row: int, reason: str) -> None:
        super().__init__(f"row {row}: {reason}")
        self.row = row
        self.reason = reason


def _merge_range(session: Session, sql: tuple[Any, Any], load_id: str, lo: int, hi: int,
                 counts: MergeCounts, kind: str, on_reject: Reject | None) -> None:
    unchanged, merge_sql = sql
    bounds = {"l": load_id, "lo": lo, "hi": hi}
    try:
        with session.begin_nested():
            session.execute(unchanged, bounds)
            r = session.execute(merge_sql, bounds).one()
    except DBAPIError as exc:
        if lo == hi:
            reason = explain_failure(exc, kind)
            if on_reject is None:
                raise RowRefused(lo, reason) from None
            on_reject(lo, reason)
            return
        mid = (lo + hi) // 2
        _merge_range(session, sql, load_id, lo, mid, counts, kind, on_reject)
        _merge_range(session, sql, load_id, mid + 1, hi, counts, kind, on_reject)
        return
    counts.inserted += int(r.inserted)
    counts.updated += int(r.updated)
