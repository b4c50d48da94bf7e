"""``etl import``: read a file in chunks, check and repair every row, write it through the
services (or the set-based merge for the big kinds), in one transaction.

All or nothing by default: any rejected row means nothing is written (every problem is still
reported, with file, row and column). ``--keep-going`` writes the good rows and lists the others
in a rejects file. ``--dry-run`` does everything, merge included, then rolls back.

Scaling: memory holds one chunk (``--chunk`` rows) at any time. The set-based path stages rows
with COPY into the UNLOGGED ``etl_stage`` and merges 50,000 rows per statement, all inside the
one transaction; PostgreSQL keeps a transaction's changes on disk, not in memory, so a 5M-row
file costs disk (the table's new rows and their WAL) and lock time on the rows it touches, not
RAM. The per-row targets hold one savepoint per row and are meant for the sizes such files
have (a city's regions, addresses and registers: up to a few hundred thousand rows).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from geoserver.errors import GridgovError, InvalidInput
from geoserver.services.audit import audit
from geoserver.services.claims import standard_address_geocoder
from geoserver.services.dberrors import translate
from spatial_etl import bulk
from spatial_etl.db import EtlEnv
from spatial_etl.mapping import Resolved, load_mapping, resolve
from spatial_etl.prepare import Rows, field_values, prepare_rows, validate_bulk
from spatial_etl.problems import EtlInputError, ProblemLog
from spatial_etl.sources import Chunk, SourceInfo, iter_chunks, open_source
from spatial_etl.targets import TRACKS, Target, target
from spatial_etl.writers import RowInput, WriteContext

Progress = Callable[[int], None]


@dataclass
class ImportOptions:
    """What ``etl import`` was asked to do."""

    target: str
    crs: str | None = None
    layer: str | None = None
    mapping: Path | None = None
    dry_run: bool = False
    keep_going: bool = False
    report: Path | None = None
    rejects: Path | None = None
    chunk: int = 10_000
    #: tracks: the worker whose GPS tracks these are (else the file name's prefix).
    worker: str | None = None
    #: regions/grids: sliver tolerance of the nesting and overlap checks.
    sliver_m2: float | None = None
    sliver_share: float | None = None


@dataclass
class ImportResult:
    """What an import did."""

    file: str
    target: str
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    repaired: int = 0
    rejected: int = 0
    seconds: float = 0.0
    committed: bool = False
    dry_run: bool = False
    keep_going: bool = False
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Return whether the import did what was asked (a dry run: what it would have done)."""
        return self.committed or (self.dry_run and (self.rejected == 0 or self.keep_going))


def _default_paths(path: Path, options: ImportOptions) -> tuple[Path, Path | None]:
    stem = path.stem if path.is_file() else path.name
    report = options.report or Path(f"{stem}.report.csv")
    rejects = options.rejects or (Path(f"{stem}.rejects.csv") if options.keep_going else None)
    return report, rejects


def open_input(path: Path, options: ImportOptions) -> tuple[SourceInfo, Target, Resolved]:
    """Inspect the file and match its columns to the target's fields (errors before any row)."""
    spec = target(options.target)
    source = open_source(path, layer=options.layer, crs_option=options.crs)
    resolved = resolve(load_mapping(options.mapping), source.columns, spec.fields,
                       file_label=source.label, implied=spec.implied)
    coordinates = {"lon", "wkt"} & set(resolved.roles)
    if not source.has_geometry and coordinates and source.crs.crs is None \
            and source.crs.offset is None:
        raise EtlInputError(f"{source.label} has coordinate columns but no CRS: give --crs "
                            "(EPSG:4326, EPSG:4490, EPSG:4549, GCJ-02 or BD-09)")
    if spec.geometry_required and not source.has_geometry and not coordinates \
            and "geocode" not in resolved.roles and spec.geocode_field not in resolved.fields:
        raise EtlInputError(f"{source.label} has no geometry for {spec.title}: give lon/lat or "
                            "wkt columns (or a geocode address column)")
    return source, spec, resolved


def _session_settings(session: Session, options: ImportOptions) -> None:
    for name, value in (("gridgov.sliver_m2", options.sliver_m2),
                        ("gridgov.sliver_share", options.sliver_share)):
        if value is not None:
            session.execute(text("SELECT set_config(:n, :v, true)"),
                            {"n": name, "v": str(value)})


def run_import(env: EtlEnv, path: Path, options: ImportOptions, *,
               progress: Progress | None = None, total: Callable[[int], None] | None = None,
               stage: Callable[..., int] | None = None) -> ImportResult:
    """Import one file (or a folder of GPX tracks) as ``options`` says.

    ``stage`` replaces the in-process staging of bulk targets (the Dask path passes one).
    """
    started = time.perf_counter()
    report, rejects = _default_paths(path, options)
    log = ProblemLog(report, rejects, always_report=options.report is not None)
    result = ImportResult(path.name, options.target, dry_run=options.dry_run,
                          keep_going=options.keep_going)
    try:
        if options.target == TRACKS:
            from spatial_etl.tracks import import_tracks

            import_tracks(env, path, options, log, result, progress=progress, total=total)
        else:
            source, spec, resolved = open_input(path, options)
            result.notes += source.notes
            if total is not None and source.rows is not None:
                total(source.rows * (len(spec.passes[1]) if spec.passes else 1))
            _import_table(env, source, spec, resolved, options, log, result, progress, stage)
    finally:
        log.close()
        result.seconds = time.perf_counter() - started
        result.repaired = log.counts["repair"]
        result.rejected = log.rejected
        result.problems = [str(p) for p in log.shown]
        result.files = log.files()
    return result


def _import_table(env: EtlEnv, source: SourceInfo, spec: Target, resolved: Resolved,
                  options: ImportOptions, log: ProblemLog, result: ImportResult,
                  progress: Progress | None, stage: Callable[..., int] | None) -> None:
    opened = env.bulk_session() if spec.bulk is not None else _plain(env)
    with opened as (session, trusted):
        _session_settings(session, options)
        if spec.bulk is not None:
            _bulk_import(session, env, source, spec, resolved, options, log, result, progress,
                         stage, trusted)
        else:
            _row_import(session, env, source, spec, resolved, options, log, result, progress)
        audit(session, actor=env.actor, action="etl.import", object_kind=spec.name,
              object_id=source.path.name[:200], detail={
                  "file": str(source.path), "layer": source.layer, "crs": source.crs.label,
                  "rows": result.read, "inserted": result.inserted, "updated": result.updated,
                  "unchanged": result.unchanged, "rejected": log.rejected,
                  "repaired": log.counts["repair"], "dry_run": options.dry_run,
                  "keep_going": options.keep_going})
        if options.dry_run or (log.rejected and not options.keep_going):
            session.rollback()
        else:
            session.commit()
            result.committed = True


@contextmanager
def _plain(env: EtlEnv) -> Iterator[tuple[Session, bool]]:
    with env.session() as session:
        yield session, False


# --- per-row targets -----------------------------------------------------------------------------


def _pass_masks(spec: Target, rows: list[dict[str, Any]]) -> list[tuple[str, list[bool]]]:
    """Return (pass value, mask) per pass; rows with another value go in the first pass."""
    if spec.passes is None:
        return [("", [True] * len(rows))]
    name, order = spec.passes
    values = [str(r.get(name)) for r in rows]
    first = [v not in order for v in values]
    return [(value, [v == value or (i == 0 and f) for v, f in zip(values, first, strict=True)])
            for i, value in enumerate(order)]


def _row_import(session: Session, env: EtlEnv, source: SourceInfo, spec: Target,
                resolved: Resolved, options: ImportOptions, log: ProblemLog,
                result: ImportResult, progress: Progress | None) -> None:
    assert spec.write is not None
    ctx = WriteContext(session, env.actor, env.crypto)
    geocoder = standard_address_geocoder(session)
    seen: set[str] = set()
    passes = len(spec.passes[1]) if spec.passes else 1
    for p in range(passes):
        for chunk in iter_chunks(source, options.chunk):
            masks = _pass_masks(spec, field_values(chunk, resolved, spec))
            rows = prepare_rows(chunk, source, resolved, spec, log, seen, only=masks[p][1])
            if p == 0:
                result.read += len(chunk.frame)
            _write_rows(ctx, rows, source, spec, resolved, log, result, geocoder)
            if progress is not None:
                progress(len(chunk.frame))


def _place(rows: Rows, k: int, geocoder: Any, source: SourceInfo, log: ProblemLog) -> Any:
    """Return the row's geometry, geocoding its address text when it has none."""
    geom = rows.geoms[k]
    text_ = rows.geocode[k]
    if geom is not None or not text_:
        return geom
    hit = geocoder(text_)
    if hit is None:
        return None
    log.note(source.label, rows.rows[k], "geocode", f"{text_!r} geocoded to {hit[0]:.6f}, "
             f"{hit[1]:.6f}")
    return shapely.Point(hit)


def _write_rows(ctx: WriteContext, rows: Rows, source: SourceInfo, spec: Target,
                resolved: Resolved, log: ProblemLog, result: ImportResult,
                geocoder: Any) -> None:
    assert spec.write is not None
    for k, row in enumerate(rows.rows):
        geom = _place(rows, k, geocoder, source, log)
        if geom is None and spec.geometry_required:
            column = resolved.roles.get("geocode") or resolved.fields.get(
                spec.geocode_field or "", "geocode")
            log.reject(source.label, row, column, f"address {rows.geocode[k]!r} not found "
                       "among the standard addresses you may see", values=rows.source(k))
            continue
        try:
            with ctx.session.begin_nested():
                outcome = spec.write(ctx, RowInput(row, rows.values[k], geom))
        except GridgovError as exc:
            _reject_error(log, source, resolved, row, exc, rows.source(k))
            continue
        except DBAPIError as exc:
            _reject_error(log, source, resolved, row, translate(exc), rows.source(k))
            continue
        setattr(result, outcome, getattr(result, outcome) + 1)


def _reject_error(log: ProblemLog, source: SourceInfo, resolved: Resolved, row: int,
                  exc: GridgovError, values: dict[str, Any]) -> None:
    """Report a service's refusal, naming the source column of the field it names."""
    problems = exc.problems if isinstance(exc, InvalidInput) and exc.problems else []
    if not problems:
        # A conflict names a field (a duplicate), or another object: for located rows that is
        # an overlap or nesting failure of the geometry.
        named = exc.extra.get("field")
        column = (resolved.fields.get(str(named), str(named)) if named else
                  resolved.roles.get("wkt", "geometry") if "other" in exc.extra else "-")
        log.reject(source.label, row, column, exc.detail, values=values)
        return
    for p in problems:
        name = p.field.split(".")[0]
        column = resolved.fields.get(name) or resolved.roles.get("wkt") or (
            "geometry" if name in ("geometry", "location") else name)
        log.reject(source.label, row, column, p.message, values=values)


# --- set-based targets ---------------------------------------------------------------------------


def stage_chunk(session: Session, load_id: str, chunk: Chunk, source: SourceInfo,
                spec: Target, resolved: Resolved, sink: Any, seen: set[str], *,
                direct: bool = False) -> int:
    """Check one chunk and COPY its good rows into the stage; return how many were staged."""
    rows = prepare_rows(chunk, source, resolved, spec, sink, seen)
    staged = validate_bulk(rows, source, resolved, spec, sink)
    return bulk.stage(session, load_id, staged.rows, staged.codes, staged.props, staged.geoms,
                      staged.cells, direct=direct)


def provided_fields(spec: Target, resolved: Resolved) -> set[str]:
    """Return the fields the file gives (only these change on an existing row)."""
    given = {*resolved.fields, *resolved.mapping.constants, *spec.defaults}
    return given | ({"attributes"} if resolved.attributes else set())


def _bulk_import(session: Session, env: EtlEnv, source: SourceInfo, spec: Target,
                 resolved: Resolved, options: ImportOptions, log: ProblemLog,
                 result: ImportResult, progress: Progress | None,
                 stage: Callable[..., int] | None, trusted: bool) -> None:
    assert spec.bulk is not None
    if not env.actor.can(spec.bulk.permission):
        raise EtlInputError(f"{env.actor.username} may not write {spec.title}: needs "
                            f"{spec.bulk.permission}")
    load_id = bulk.new_load_id()
    bulk.open_load(session, load_id)
    if stage is not None:
        result.read = stage(load_id, log)
    else:
        seen: set[str] = set()
        for chunk in iter_chunks(source, options.chunk):
            stage_chunk(session, load_id, chunk, source, spec, resolved, log, seen,
                        direct=trusted)
            result.read += len(chunk.frame)
            if progress is not None:
                progress(len(chunk.frame))
    _merge_load(session, load_id, source, spec, resolved, options, log, result, trusted)
    # In the same transaction: committed or rolled back, the stage is left empty.
    bulk.discard(session, load_id)


def _drop(session: Session, load_id: str, log: ProblemLog, source: SourceInfo,
          bad: list[tuple[int, str]], column: str) -> None:
    for row, reason in bad:
        log.reject(source.label, row, column, reason, **_staged_values(session, load_id, row))
    bulk.drop_rows(session, load_id, [row for row, _ in bad])


def _staged_values(session: Session, load_id: str, row: int) -> dict[str, Any]:
    found = session.execute(text("SELECT props, ST_AsText(geom) AS wkt FROM etl_stage "
                                 "WHERE load_id = :l AND row_no = :r"),
                            {"l": load_id, "r": row}).first()
    return {"values": found.props, "wkt": found.wkt} if found else {}


def _merge_load(session: Session, load_id: str, source: SourceInfo, spec: Target,
                resolved: Resolved, options: ImportOptions, log: ProblemLog,
                result: ImportResult, trusted: bool) -> None:
    """Check the staged rows as a whole, then merge them (unless something is already wrong)."""
    assert spec.bulk is not None
    code_column = resolved.fields.get("code", "code")
    geometry_column = resolved.roles.get("wkt", "geometry")
    dups = [(r, f"code {code} is also on row {rows[0]}")
            for code, rows in bulk.duplicate_codes(session, load_id) for r in rows[1:]]
    _drop(session, load_id, log, source, dups, code_column)
    if options.keep_going:
        _drop(session, load_id, log, source, bulk.unplaceable(session, load_id),
              geometry_column)
    elif log.rejected:
        # Nothing will be written; say what else is wrong rather than merging for nothing.
        _drop(session, load_id, log, source, bulk.unplaceable(session, load_id, limit=1000),
              geometry_column)
        return

    refused: list[int] = []

    def reject(row: int, reason: str) -> None:
        refused.append(row)
        log.reject(source.label, row, geometry_column, reason,
                   **_staged_values(session, load_id, row))

    staged = int(session.execute(text("SELECT count(*) FROM etl_stage WHERE load_id = :l"),
                                 {"l": load_id}).scalar_one())
    try:
        counts = bulk.merge(session, spec.bulk, load_id, kind=spec.bulk.table,
                            provided=provided_fields(spec, resolved), locate=trusted,
                            on_reject=reject if options.keep_going else None)
    except bulk.RowRefused as exc:
        reject(exc.row, exc.reason)
        # Nothing is written; list the other rows that lie nowhere or outside the scope too.
        more = [(r, why) for r, why in bulk.unplaceable(session, load_id, limit=1000)
                if r != exc.row]
        _drop(session, load_id, log, source, more, geometry_column)
        return
    result.inserted, result.updated = counts.inserted, counts.updated
    result.unchanged = staged - counts.inserted - counts.updated - len(refused)
