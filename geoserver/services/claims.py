"""Claim queue (数据认领) and pooled records (归集).

Rows whose grid is uncertain wait in the queue until a grid takes them on: base-data rows near
a grid boundary or outside every grid (``enqueue_boundary_rows``), and records gathered from
departments (``ingest_pooled``), many with only an address or a region code. Each item is held
by one region (its ``path``): the common parent of its candidate grids, the region a source
named, or where it was declined up or transferred to. The holder's users and, while the item
is unsettled, the candidate grids' users see it and may act.

Actions, each written to the append-only ``claim_action`` history in the same transaction:

- ``claim``: a grid inside the actor's scope and under the holder takes the item; the subject
  (pooled record or base-data row) takes that grid's path and region.
- ``decline`` (退回): the holder sends the item up to its parent region; a candidate grid that is
  not the holder only strikes itself off the candidates.
- ``transfer`` (转交): the target region must lie inside the actor's own scope. A grid that
  thinks an item belongs to a neighbour declines it instead, so the item goes to the region
  that covers both; the system never writes into a jurisdiction the actor does not hold.
- ``auto_claim``: set-based; items with a unique candidate are claimed.

Permissions: ``claim.read`` (list), ``claim.write`` (claim, decline, transfer), ``claim.manage``
(enqueue, auto-claim), ``pooled_record.write`` (ingest). Importing claimed pooled records into
their target tables is the ETL's job: it reads ``pooled_record`` rows with status ``claimed`` and
sets ``status = 'imported'``, ``imported_kind``, ``imported_id``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from geoserver.database.models.claims import ClaimReason, ClaimStatus
from geoserver.domain.principal import Principal
from geoserver.errors import (
    Conflict,
    FieldProblem,
    GridgovError,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from geoserver.geo import h3cells
from geoserver.geo.crs import parse_input_crs, to_storage
from geoserver.geo.validate import GeometryProblem, check_lonlat, parse_geojson_geometry
from geoserver.services.dberrors import sqlstate, translate
from geoserver.services.geocode import geocode

#: A point outside every grid takes the grids within this many metres as candidates.
OUTSIDE_GRID_M = 200.0
#: Boundary distances beyond this are a mistake (a whole grid would be "near the boundary").
MAX_BOUNDARY_M = 1000.0
#: A polygon goes to its largest-overlap grid automatically only if that grid holds this share.
DOMINANT_SHARE = 0.5
MAX_INGEST = 100_000
MAX_PAGE = 1000

#: Turns an address into a storage-CRS (lon, lat), or None when it cannot be placed.
Geocoder = Callable[[str], "tuple[float, float] | None"]


def no_geocoding(address: str) -> None:
    """Place no address (for callers that want address-only records left to people)."""
    return None


def standard_address_geocoder(session: Session) -> Geocoder:
    """Return a geocoder over the standard addresses (标准地址) the session's caller may see.

    It answers the best hit only when that hit scores strictly better than the runner-up: two
    equally good addresses (the same road name in two townships) leave the record to people.
    """
    def lookup(address: str) -> tuple[float, float] | None:
        hits = geocode(session, text=address, limit=2)
        if not hits or (len(hits) > 1 and hits[1].score >= hits[0].score):
            return None
        return hits[0].lon, hits[0].lat

    return lookup

_UNSETTLED = ("open", "declined", "transferred")
_SCOPE = "(SELECT gridgov_meta.scope())"


# --- inputs and results --------------------------------------------------------------------------


class PooledRecordIn(BaseModel):
    """One record pushed by a department (归集): a payload, and whatever locates it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    source_department: str = Field(min_length=1, max_length=100)
    source_record_id: str = Field(min_length=1, max_length=200)
    target_kind: str = Field(pattern=r"^[a-z][a-z_]{1,39}$")
    payload: dict[str, Any] = Field(default_factory=dict)
    address: str | None = Field(default=None, min_length=1, max_length=500)
    #: A GeoJSON Point, in ``crs``.
    geometry: dict[str, Any] | None = None
    crs: str | None = None
    #: The region the source says the record belongs to (统计用区划代码 or a grid code).
    region_code: str | None = Field(default=None, pattern=r"^[0-9A-Za-z]{2,24}$")


@dataclass(frozen=True)
class IngestReport:
    """What ingest_pooled stored: new records, skipped re-pushes, items by reason."""

    created: int
    duplicates: int
    item_ids: list[int]
    by_reason: dict[str, int]


@dataclass(frozen=True)
class EnqueueReport:
    """What enqueue_boundary_rows queued for one kind."""

    kind: str
    boundary: int
    outside_grids: int
    beyond_scope: int


@dataclass(frozen=True)
class AutoClaimReport:
    """Counts of one auto-claim run over the open items in the actor's scope."""

    examined: int
    geocoded: int
    located: int
    claimed: int
    ambiguous: int
    unlocated: int


@dataclass(frozen=True)
class ClaimOutcome:
    """Where an item stands after an action."""

    item_id: int
    status: ClaimStatus
    holder_path: str
    version: int
    claimed_code: str | None = None


@dataclass(frozen=True)
class CandidateView:
    """A candidate grid of an item."""

    region_code: str
    path: str
    overlap_share: float | None
    distance_m: float | None


@dataclass(frozen=True)
class ClaimItemView:
    """One queue entry as the list shows it."""

    id: int
    reason: ClaimReason
    origin_reason: ClaimReason
    status: ClaimStatus
    holder_path: str
    holder_code: str | None
    subject_kind: str | None
    subject_id: int | None
    pooled_record_id: int | None
    source_department: str | None
    source_record_id: str | None
    target_kind: str | None
    address: str | None
    lon: float | None
    lat: float | None
    claimed_code: str | None
    version: int
    created_at: datetime
    candidates: list[CandidateView] = field(default_factory=list)


@dataclass(frozen=True)
class ClaimItemsPage:
    """A page of the queue, the total matching, and counts by reason (before paging)."""

    items: list[ClaimItemView]
    total: int
    counts_by_reason: dict[str, int]


# --- shared helpers ------------------------------------------------------------------------------


def _require(actor: Principal, permission: str) -> None:
    """Raise PermissionDenied unless the actor holds the permission."""
    if not actor.can(permission):
        raise PermissionDenied(f"needs permission {permission}")


def _db_error(exc: DBAPIError) -> GridgovError:
    """Map a database error, including this module's 'GG404' (not found or not yours)."""
    if sqlstate(exc) == "GG404":
        return NotFound("no such claim item")
    return translate(exc)


def _under(path: str, ancestor: str) -> bool:
    """Return whether ``path`` equals or lies below ``ancestor`` (ltree ``<@``)."""
    return ancestor == "" or path == ancestor or path.startswith(ancestor + ".")


def _common_ancestor(paths: Sequence[str]) -> str:
    """Return the lowest common ancestor of region paths (a single path is its own)."""
    distinct = sorted(set(paths))
    if len(distinct) == 1:
        return distinct[0]
    split = [p.split(".") for p in distinct]
    common: list[str] = []
    for labels in zip(*split, strict=False):
        if len(set(labels)) != 1:
            break
        common.append(labels[0])
    # Candidates are grids; none is an ancestor of another, so the prefix is a proper parent.
    return ".".join(common)


def _last_label(path: str) -> str | None:
    """Return the code a region path ends with (labels are region codes)."""
    return path.rsplit(".", 1)[-1] if path else None


def _region(session: Session, code: str) -> Any:
    """Return the current region with this code visible in the caller's scope, or None."""
    return session.execute(
        text("SELECT id, code, path::text AS path, level::text AS level FROM region "
             "WHERE code = :c AND valid_to IS NULL"),
        {"c": code},
    ).one_or_none()


def _top_path(session: Session, actor: Principal) -> str:
    """Return the region path at the top of the actor's scope (the city for the system)."""
    if not actor.scope:
        raise PermissionDenied("an empty scope cannot hold records")
    top = min(actor.scope, key=lambda p: (p.count(".") if p else -1, p))
    if top:
        return top
    cities = session.execute(
        text("SELECT path::text FROM region WHERE level = 'city' AND valid_to IS NULL")
    ).scalars().all()
    return cities[0] if len(cities) == 1 else ""


# --- loading one item ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loaded:
    """An item as the actor may see it, and the region the actor acts from."""

    id: int
    path: str
    status: ClaimStatus
    version: int
    claimed_code: str | None
    candidates: list[str]
    acting: str


def _load_item(session: Session, actor: Principal, item_id: int) -> _Loaded:
    """Load an item and the region the actor acts from; NotFound if the actor cannot reach it."""
    row = session.execute(
        text("SELECT id, path::text AS path, status::text AS status, version, claimed_code "
             "FROM claim_item WHERE id = :id"),
        {"id": item_id},
    ).one_or_none()
    if row is None:
        raise NotFound("no such claim item")
    candidates = list(session.execute(
        text("SELECT path::text FROM claim_candidate WHERE claim_item_id = :id ORDER BY path"),
        {"id": item_id},
    ).scalars())
    status = ClaimStatus(row.status)
    acting = row.path if actor.covers(row.path) else next(
        (c for c in candidates if actor.covers(c) and status != ClaimStatus.CLAIMED), None)
    if acting is None:
        raise NotFound("no such claim item")
    return _Loaded(row.id, row.path, status, row.version, row.claimed_code, candidates, acting)


def _check_unsettled(item: _Loaded, version: int | None) -> None:
    """Raise Conflict if the item is already claimed or the caller saw another version."""
    if item.status == ClaimStatus.CLAIMED:
        raise Conflict("the item is already claimed", other=item.claimed_code)
    if version is not None and version != item.version:
        raise Conflict("the item changed since you read it", other="version")


def _sync(session: Session, item_ids: Sequence[int]) -> None:
    """Carry the items' state to their pooled records and subjects."""
    if item_ids:
        session.execute(text("SELECT gridgov_meta.claim_sync(CAST(:ids AS bigint[]))"),
                        {"ids": list(item_ids)})


# --- enqueue base-data rows ----------------------------------------------------------------------


def _subject_table(session: Session, kind: str) -> str:
    """Return the quoted table name of a claimable kind, or raise InvalidInput."""
    name = session.execute(
        text("SELECT table_name::text FROM gridgov_meta.claim_subject_kind WHERE kind = :k"),
        {"k": kind},
    ).scalar_one_or_none()
    if name is None:
        raise InvalidInput(f"{kind!r} is not a claimable kind", field="kind")
    return str(name)


# The table name comes from regclass::text (already quoted by PostgreSQL), never from input.
_ENQUEUE_SQL = """
WITH near AS (
    SELECT s.id AS subject_id, s.path AS own_path, c.region_id, c.code, c.path,
           c.distance_m, c.overlap_share
    FROM {table} s
    LEFT JOIN LATERAL gridgov_meta.claim_grids_near(s.geom, :d) c ON true
    WHERE s.geom IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM claim_item i
                      WHERE i.subject_kind = :kind AND i.subject_id = s.id)
),
per_subject AS (
    SELECT subject_id, count(region_id) AS n, coalesce(bool_or(distance_m = 0), false) AS inside,
           CASE WHEN count(region_id) = 0 THEN (array_agg(own_path))[1]
                WHEN count(region_id) = 1 THEN (array_agg(path))[1]
                ELSE lca(array_agg(path)) END AS holder
    FROM near GROUP BY subject_id
),
queued AS (
    SELECT subject_id, holder,
           CASE WHEN inside THEN 'boundary' ELSE 'outside_grids' END::claim_reason AS reason
    FROM per_subject WHERE n >= 2 OR NOT inside
),
ins AS (
    INSERT INTO claim_item (reason, origin_reason, subject_kind, subject_id, path)
    SELECT reason, reason, :kind, subject_id, holder FROM queued
    WHERE holder <@ ANY ({scope})
    ON CONFLICT (subject_kind, subject_id) WHERE status <> 'claimed' AND subject_kind IS NOT NULL
    DO NOTHING
    RETURNING id, subject_id, reason
),
cand AS (
    INSERT INTO claim_candidate (claim_item_id, region_code, region_id, path, overlap_share,
                                 distance_m)
    SELECT ins.id, near.code, near.region_id, near.path, near.overlap_share, near.distance_m
    FROM ins JOIN near ON near.subject_id = ins.subject_id
    WHERE near.region_id IS NOT NULL
)
SELECT count(*) FILTER (WHERE reason = 'boundary') AS boundary,
       count(*) FILTER (WHERE reason = 'outside_grids') AS outside_grids,
       (SELECT count(*) FROM queued WHERE NOT holder <@ ANY ({scope})) AS beyond_scope
FROM ins
"""


def enqueue_boundary_rows(
    session: Session, *, actor: Principal, kind: str, distance_m: float
) -> EnqueueReport:
    """Queue rows of a located kind that lie within distance_m of a grid boundary or outside
    every grid, with the grids within distance_m as candidates.

    The holder is the lowest common ancestor of the candidates (a row outside every grid with no
    grid near stays with its own region). Distances are measured on the spheroid (geography).
    Subjects that already have an item (unsettled or claimed) are skipped, so running it again
    adds nothing. Rows whose holder lies outside the actor's scope are counted, not queued.

    Raises:
        PermissionDenied: without ``claim.manage``.
        InvalidInput: unknown kind, or distance_m not in (0, 1000].
    """
    _require(actor, "claim.manage")
    if not 0 < distance_m <= MAX_BOUNDARY_M:
        raise InvalidInput(f"distance_m must be in (0, {MAX_BOUNDARY_M:g}]", field="distance_m")
    table = _subject_table(session, kind)
    try:
        row = session.execute(
            text(_ENQUEUE_SQL.format(table=table, scope=_SCOPE)), {"d": distance_m, "kind": kind}
        ).one()
    except DBAPIError as exc:
        raise _db_error(exc) from exc
    return EnqueueReport(kind, row.boundary, row.outside_grids, row.beyond_scope)


# --- ingest pooled records -----------------------------------------------------------------------


@dataclass
class _Prepared:
    """One validated input record on its way into the database."""

    record: PooledRecordIn
    lon: float | None = None
    lat: float | None = None
    location_source: str | None = None
    region_path: str | None = None
    located: str | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    reason: ClaimReason = ClaimReason.NO_LOCATION
    holder: str = ""


def _parse_records(
    records: Iterable[PooledRecordIn | Mapping[str, Any]],
) -> tuple[list[_Prepared], list[FieldProblem]]:
    """Validate input records and convert their points to storage lon/lat."""
    batch = list(records)
    if len(batch) > MAX_INGEST:
        raise InvalidInput(f"at most {MAX_INGEST} records per call", field="records")
    prepared: list[_Prepared] = []
    problems: list[FieldProblem] = []
    for i, raw in enumerate(batch):
        where = f"records[{i}]"
        try:
            rec = raw if isinstance(raw, PooledRecordIn) else PooledRecordIn.model_validate(raw)
        except ValidationError as exc:
            problems += [FieldProblem(f"{where}.{'.'.join(str(p) for p in e['loc'])}", e["msg"])
                         for e in exc.errors()]
            continue
        item = _Prepared(rec)
        if rec.geometry is not None:
            try:
                item.lon, item.lat = _storage_point(rec.geometry, rec.crs, f"{where}.geometry")
                item.location_source = "source"
            except GeometryProblem as exc:
                problems.append(FieldProblem(exc.field, exc.reason))
        prepared.append(item)
    return prepared, problems


def _storage_point(geometry: Mapping[str, Any], crs: str | None, where: str) -> tuple[float, float]:
    """Return a GeoJSON Point in a named input CRS as storage (CGCS2000) lon/lat."""
    if not crs:
        raise GeometryProblem(where, "crs is required with a geometry (WGS84, CGCS2000, GCJ02, "
                                     "BD09)")
    try:
        input_crs = parse_input_crs(crs)
    except ValueError as exc:
        raise GeometryProblem(where, str(exc)) from None
    point = parse_geojson_geometry(geometry, field=where)
    if point.geom_type != "Point":
        raise GeometryProblem(where, f"a Point is expected, got {point.geom_type}")
    check_lonlat(point.x, point.y, field=where)
    lon, lat = to_storage(point.x, point.y, input_crs)
    return float(lon), float(lat)


def _geocode_all(prepared: Sequence[_Prepared], geocoder: Geocoder) -> None:
    """Place address-only records with the geocoder."""
    for item in prepared:
        if item.lon is None and item.record.address:
            hit = geocoder(item.record.address)
            if hit is not None:
                item.lon, item.lat = hit
                item.location_source = "geocoded"


def _resolve_region_codes(
    session: Session, prepared: Sequence[_Prepared]
) -> list[FieldProblem]:
    """Look up the region codes sources named (inside the caller's scope)."""
    codes = sorted({p.record.region_code for p in prepared if p.record.region_code})
    found: dict[str, str] = dict(session.execute(
        text("SELECT code, path::text FROM region WHERE code = ANY(:c) AND valid_to IS NULL"),
        {"c": codes},
    ).all()) if codes else {}
    problems = []
    for i, item in enumerate(prepared):
        code = item.record.region_code
        if code and code not in found:
            problems.append(FieldProblem(f"records[{i}].region_code",
                                         f"no region {code} in your jurisdiction"))
        item.region_path = found.get(code) if code else None
    return problems


_PLACE_SQL = """
SELECT p.ord,
       (SELECT l.path::text FROM gridgov_meta.locate(p.g) l) AS located,
       coalesce(near.c, far.c) AS candidates
FROM (SELECT u.ord, ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4490) AS g
      FROM unnest(CAST(:ord AS integer[]), CAST(:lon AS float8[]), CAST(:lat AS float8[]))
           AS u(ord, lon, lat)) p
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_object('region_id', region_id, 'code', code, 'path', path::text,
                                      'distance_m', distance_m) ORDER BY code) AS c
    FROM gridgov_meta.claim_grids_near(p.g, :boundary_m)) near ON true
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_object('region_id', region_id, 'code', code, 'path', path::text,
                                      'distance_m', distance_m) ORDER BY code) AS c
    FROM gridgov_meta.claim_grids_near(p.g, :outside_m) WHERE near.c IS NULL) far ON true
"""


def _locate_points(session: Session, prepared: Sequence[_Prepared], boundary_m: float) -> None:
    """Find the containing region and the candidate grids of every record with a point."""
    located = [(i, p) for i, p in enumerate(prepared) if p.lon is not None]
    if not located:
        return
    rows = session.execute(text(_PLACE_SQL), {
        "ord": [i for i, _ in located], "lon": [p.lon for _, p in located],
        "lat": [p.lat for _, p in located], "boundary_m": boundary_m,
        "outside_m": OUTSIDE_GRID_M,
    })
    for row in rows:
        prepared[row.ord].located = row.located
        prepared[row.ord].candidates = row.candidates or []


def _place(item: _Prepared, top: str) -> None:
    """Choose the item's reason and holder from what locates the record (pure)."""
    fallback = item.region_path or item.located or top
    cands = item.candidates
    if item.lon is None:
        item.reason = ClaimReason.ADDRESS_ONLY if item.record.address else ClaimReason.NO_LOCATION
        item.holder = item.region_path or top
    elif not cands:
        item.reason, item.holder = ClaimReason.OUTSIDE_GRIDS, fallback
    elif not any(c["distance_m"] == 0 for c in cands):
        item.reason = ClaimReason.OUTSIDE_GRIDS
        item.holder = _common_ancestor([c["path"] for c in cands])
    else:
        item.reason = ClaimReason.IN_GRID if len(cands) == 1 else ClaimReason.BOUNDARY
        item.holder = _common_ancestor([c["path"] for c in cands])


def _scope_problems(actor: Principal, prepared: Sequence[_Prepared]) -> list[FieldProblem]:
    """Refuse records that would be held or located outside the actor's jurisdiction."""
    return [
        FieldProblem(f"records[{i}]", "lies outside your jurisdiction")
        for i, p in enumerate(prepared)
        if not actor.covers(p.holder) or (p.located is not None and not actor.covers(p.located))
    ]


_INSERT_RECORDS_SQL = """
INSERT INTO pooled_record (source_department, source_record_id, target_kind, payload, address,
                           source_region_code, geom, location_source, h3_r9, path, region_id,
                           ingested_by)
SELECT r.dept, r.rid, r.kind, r.payload, r.address, r.region_code,
       CASE WHEN r.lon IS NULL THEN NULL ELSE ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4490) END,
       r.loc_src, r.h3, CAST(r.path AS ltree),
       (SELECT g.id FROM region g WHERE g.path = CAST(r.path AS ltree) AND g.valid_to IS NULL),
       :uid
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(ord integer, dept text, rid text, kind text,
     payload jsonb, address text, region_code text, lon float8, lat float8, loc_src text,
     h3 bigint, path text)
ORDER BY r.ord
ON CONFLICT (source_department, source_record_id) DO NOTHING
RETURNING id, source_department, source_record_id
"""

_INSERT_ITEMS_SQL = """
INSERT INTO claim_item (reason, origin_reason, pooled_record_id, path)
SELECT CAST(r.reason AS claim_reason), CAST(r.reason AS claim_reason), r.record_id,
       CAST(r.holder AS ltree)
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(record_id bigint, reason text, holder text)
RETURNING id, pooled_record_id
"""

_INSERT_CANDIDATES_SQL = """
INSERT INTO claim_candidate (claim_item_id, region_code, region_id, path, distance_m)
SELECT r.item_id, r.code, r.region_id, CAST(r.path AS ltree), r.distance_m
FROM jsonb_to_recordset(CAST(:rows AS jsonb))
     AS r(item_id bigint, code text, region_id bigint, path text, distance_m float8)
"""


def _record_row(i: int, p: _Prepared) -> dict[str, Any]:
    """Return one record as a row for _INSERT_RECORDS_SQL."""
    rec = p.record
    h3 = h3cells.cell_int(p.lon, p.lat, 9) if p.lon is not None and p.lat is not None else None
    return {"ord": i, "dept": rec.source_department, "rid": rec.source_record_id,
            "kind": rec.target_kind, "payload": rec.payload, "address": rec.address,
            "region_code": rec.region_code, "lon": p.lon, "lat": p.lat,
            "loc_src": p.location_source, "h3": h3, "path": p.located or p.holder}


def _store(session: Session, actor: Principal, prepared: Sequence[_Prepared]) -> list[int]:
    """Insert new records, their items and candidates; return the new item ids."""
    inserted = session.execute(text(_INSERT_RECORDS_SQL), {
        "rows": json.dumps([_record_row(i, p) for i, p in enumerate(prepared)],
                           ensure_ascii=False),
        "uid": actor.user_id,
    }).all()
    by_key = {(p.record.source_department, p.record.source_record_id): p for p in prepared}
    new = {row.id: by_key[(row.source_department, row.source_record_id)] for row in inserted}
    if not new:
        return []
    items = session.execute(text(_INSERT_ITEMS_SQL), {"rows": json.dumps([
        {"record_id": rid, "reason": p.reason.value, "holder": p.holder} for rid, p in new.items()
    ])}).all()
    candidates = [
        {"item_id": row.id, "code": c["code"], "region_id": c["region_id"], "path": c["path"],
         "distance_m": c["distance_m"]}
        for row in items for c in new[row.pooled_record_id].candidates
    ]
    if candidates:
        session.execute(text(_INSERT_CANDIDATES_SQL), {"rows": json.dumps(candidates)})
    return sorted(row.id for row in items)


def ingest_pooled(
    session: Session,
    *,
    actor: Principal,
    records: Iterable[PooledRecordIn | Mapping[str, Any]],
    boundary_m: float = 0.0,
    geocoder: Geocoder | None = None,
) -> IngestReport:
    """Store pooled records (归集) and queue each one for claiming.

    A record with a point inside exactly one grid is queued as ``in_grid`` with that grid as its
    only candidate (auto_claim takes it); a point within ``boundary_m`` of other grids (or in
    overlapping grids) is ``boundary``, held by the candidates' common parent; a point outside
    every grid is ``outside_grids`` with the grids within 200 m. Without a point, the address
    is geocoded (by default against the standard addresses the actor sees; pass
    ``geocoder=no_geocoding`` to skip); a record still unplaced is ``address_only`` or
    ``no_location``, held by the region the source named, else by the top of the actor's
    scope. A record already pushed by the same department with the same id is skipped.

    Raises:
        PermissionDenied: without ``pooled_record.write``.
        InvalidInput: any bad record (every problem is listed, nothing is stored), including
            a region code or a location outside the actor's scope.
    """
    _require(actor, "pooled_record.write")
    if not 0 <= boundary_m <= MAX_BOUNDARY_M:
        raise InvalidInput(f"boundary_m must be in [0, {MAX_BOUNDARY_M:g}]", field="boundary_m")
    prepared, problems = _parse_records(records)
    _geocode_all(prepared, geocoder or standard_address_geocoder(session))
    problems += _resolve_region_codes(session, prepared)
    if problems:
        raise InvalidInput("some records are invalid", problems=problems)
    top = _top_path(session, actor)
    _locate_points(session, prepared, boundary_m)
    for item in prepared:
        _place(item, top)
    problems = _scope_problems(actor, prepared)
    if problems:
        raise InvalidInput("some records lie outside your jurisdiction", problems=problems)
    try:
        item_ids = _store(session, actor, prepared)
    except DBAPIError as exc:
        raise _db_error(exc) from exc
    reasons = Counter(p.reason.value for p in prepared)
    return IngestReport(len(item_ids), len(prepared) - len(item_ids), item_ids, dict(reasons))


# --- claim, decline, transfer --------------------------------------------------------------------


_CLAIM_SQL = """
WITH upd AS (
    UPDATE claim_item
    SET status = 'claimed', path = CAST(:to_path AS ltree), claimed_region_id = :region_id,
        claimed_code = :code, claimed_by = :uid, claimed_at = now(), version = version + 1,
        updated_at = now()
    WHERE id = :id AND version = :seen AND status <> 'claimed'
    RETURNING id, version
),
act AS (
    INSERT INTO claim_action (claim_item_id, action, from_path, to_path, region_code,
                              actor_user_id, note)
    SELECT id, 'claim', CAST(:from_path AS ltree), CAST(:to_path AS ltree), :code, :uid, :note
    FROM upd
)
SELECT version FROM upd
"""


def claim(
    session: Session,
    *,
    actor: Principal,
    item_id: int,
    grid_code: str,
    version: int | None = None,
    note: str | None = None,
) -> ClaimOutcome:
    """Claim an item (认领) for a grid in the actor's scope under the region holding it.

    Raises:
        PermissionDenied: without ``claim.write``.
        NotFound: no such item, or the actor neither holds it nor is one of its candidate grids.
        InvalidInput: grid_code is not a grid in the actor's scope under the holder.
        Conflict: already claimed, or changed since ``version`` / since it was loaded.
    """
    _require(actor, "claim.write")
    item = _load_item(session, actor, item_id)
    _check_unsettled(item, version)
    grid = _region(session, grid_code)
    if grid is None or grid.level not in ("grid", "micro_grid") or not actor.covers(grid.path):
        raise InvalidInput(f"no grid {grid_code} in your jurisdiction", field="grid_code")
    if not _under(grid.path, item.path):
        raise InvalidInput(f"grid {grid_code} is not under the region holding the item",
                           field="grid_code")
    new_version = session.execute(text(_CLAIM_SQL), {
        "id": item.id, "seen": item.version, "from_path": item.acting, "to_path": grid.path,
        "region_id": grid.id, "code": grid.code, "uid": actor.user_id, "note": note,
    }).scalar_one_or_none()
    if new_version is None:
        raise Conflict("the item changed since you read it", other="version")
    _sync(session, [item.id])
    return ClaimOutcome(item.id, ClaimStatus.CLAIMED, grid.path, new_version, grid.code)


def decline(
    session: Session,
    *,
    actor: Principal,
    item_id: int,
    note: str | None,
    version: int | None = None,
) -> ClaimOutcome:
    """Decline an item (退回): the holder sends it up to its parent region; a candidate grid
    that is not the holder strikes itself off and the item stays with its holder.

    Raises:
        PermissionDenied: without ``claim.write``.
        NotFound: no such item in reach.
        InvalidInput: the holder is the top of the tree.
        Conflict: already claimed, or changed since read.
    """
    _require(actor, "claim.write")
    item = _load_item(session, actor, item_id)
    _check_unsettled(item, version)
    try:
        with session.begin_nested():
            target = session.execute(
                text("SELECT gridgov_meta.claim_decline(:id, :seen, CAST(:acting AS ltree), "
                     ":uid, :note)::text"),
                {"id": item.id, "seen": item.version, "acting": item.acting,
                 "uid": actor.user_id, "note": note},
            ).scalar_one()
    except DBAPIError as exc:
        raise _db_error(exc) from exc
    _sync(session, [item.id])
    return ClaimOutcome(item.id, ClaimStatus.DECLINED, target, item.version + 1)


_TRANSFER_SQL = """
WITH upd AS (
    UPDATE claim_item
    SET status = 'transferred', path = CAST(:to_path AS ltree), version = version + 1,
        updated_at = now()
    WHERE id = :id AND version = :seen AND status <> 'claimed'
    RETURNING id, version
),
struck AS (
    DELETE FROM claim_candidate c USING upd
    WHERE c.claim_item_id = upd.id AND NOT c.path <@ CAST(:to_path AS ltree)
),
act AS (
    INSERT INTO claim_action (claim_item_id, action, from_path, to_path, region_code,
                              actor_user_id, note)
    SELECT id, 'transfer', CAST(:from_path AS ltree), CAST(:to_path AS ltree), :code, :uid,
           :note
    FROM upd
)
SELECT version FROM upd
"""


def transfer(
    session: Session,
    *,
    actor: Principal,
    item_id: int,
    to_region_code: str,
    note: str | None,
    version: int | None = None,
) -> ClaimOutcome:
    """Transfer an item (转交) to another region inside the actor's own scope.

    Candidates outside the target are struck off. To hand an item to a neighbour outside
    their scope, a grid declines it instead, so it goes to the region covering both.

    Raises:
        PermissionDenied: without ``claim.write``.
        NotFound: no such item in reach.
        InvalidInput: the target is not a region in the actor's scope, or already holds it.
        Conflict: already claimed, or changed since read.
    """
    _require(actor, "claim.write")
    item = _load_item(session, actor, item_id)
    _check_unsettled(item, version)
    target = _region(session, to_region_code)
    if target is None or not actor.covers(target.path):
        raise InvalidInput(f"no region {to_region_code} in your jurisdiction",
                           field="to_region_code")
    if target.path == item.path:
        raise InvalidInput("the item is already held there", field="to_region_code")
    new_version = session.execute(text(_TRANSFER_SQL), {
        "id": item.id, "seen": item.version, "from_path": item.acting, "to_path": target.path,
        "code": target.code, "uid": actor.user_id, "note": note,
    }).scalar_one_or_none()
    if new_version is None:
        raise Conflict("the item changed since you read it", other="version")
    _sync(session, [item.id])
    return ClaimOutcome(item.id, ClaimStatus.TRANSFERRED, target.path, new_version)


# --- auto-claim ----------------------------------------------------------------------------------

# The open items in the actor's own scope (not those seen only as a candidate), oldest first.
_TODO = f"""
todo AS (
    SELECT id, path, pooled_record_id, subject_kind, subject_id FROM claim_item
    WHERE status = 'open' AND path <@ ANY ({_SCOPE})
    ORDER BY id LIMIT :limit
)"""

_GEOCODE_TODO_SQL = f"""
WITH {_TODO}
SELECT p.id, p.address FROM todo t JOIN pooled_record p ON p.id = t.pooled_record_id
WHERE p.geom IS NULL AND p.address IS NOT NULL
"""

# A geocoded point located outside the actor's scope is left alone (RLS would refuse it).
_GEOCODE_UPDATE_SQL = f"""
UPDATE pooled_record p
SET geom = ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4490), location_source = 'geocoded',
    h3_r9 = r.h3, version = p.version + 1, updated_at = now()
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(id bigint, lon float8, lat float8, h3 bigint)
WHERE p.id = r.id AND p.geom IS NULL
  AND NOT EXISTS (SELECT 1 FROM gridgov_meta.locate(ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4490))
                  l WHERE NOT l.path <@ ANY ({_SCOPE}))
"""

# Decide and claim in one statement: a unique candidate, or a polygon's dominant grid.
_AUTO_CLAIM_SQL = f"""
WITH {_TODO},
ranked AS (
    SELECT c.claim_item_id AS id, c.region_code, c.path, c.overlap_share,
           count(*) OVER w AS n,
           row_number() OVER (w ORDER BY c.overlap_share DESC NULLS LAST,
                              c.distance_m NULLS LAST, c.region_code) AS rk,
           lead(c.overlap_share) OVER (w ORDER BY c.overlap_share DESC NULLS LAST,
                                       c.distance_m NULLS LAST, c.region_code) AS runner_up
    FROM claim_candidate c JOIN todo t ON t.id = c.claim_item_id
    WINDOW w AS (PARTITION BY c.claim_item_id)
),
pick AS (
    -- The grid by its code, then the scope test: as a plain join the planner, with no
    -- statistics yet on candidates written in this transaction, may scan region by path
    -- containment instead (~120 rows per item: 27 s rather than 2 s for 100k items).
    SELECT r.id, r.region_code, g.id AS region_id, g.path, t.path AS from_path
    FROM ranked r
    JOIN todo t ON t.id = r.id
    CROSS JOIN LATERAL (SELECT id, path FROM region
                        WHERE code = r.region_code AND valid_to IS NULL LIMIT 1) g
    WHERE r.rk = 1 AND g.path <@ t.path
      AND (r.n = 1 OR (r.overlap_share >= :min_share
                       AND r.overlap_share > coalesce(r.runner_up, 0)))
),
upd AS (
    UPDATE claim_item i
    SET status = 'claimed', path = p.path, claimed_region_id = p.region_id,
        claimed_code = p.region_code, claimed_by = :uid, claimed_at = now(),
        version = i.version + 1, updated_at = now()
    FROM pick p WHERE i.id = p.id AND i.status = 'open'
    RETURNING i.id, p.from_path, p.path, p.region_code
),
act AS (
    INSERT INTO claim_action (claim_item_id, action, from_path, to_path, region_code,
                              actor_user_id)
    SELECT id, 'auto_claim', from_path, path, region_code, :uid FROM upd
    RETURNING claim_item_id
)
SELECT (SELECT count(*) FROM todo) AS examined,
       (SELECT count(DISTINCT id) FROM ranked) AS with_candidates,
       ARRAY(SELECT claim_item_id FROM act) AS claimed
"""


def _geocode_open_items(session: Session, geocoder: Geocoder, limit: int | None) -> int:
    """Geocode address-only pooled records of open items; return how many were placed."""
    rows = session.execute(text(_GEOCODE_TODO_SQL), {"limit": limit}).all()
    hits = []
    for row in rows:
        hit = geocoder(row.address)
        if hit is not None:
            lon, lat = hit
            hits.append({"id": row.id, "lon": lon, "lat": lat,
                         "h3": h3cells.cell_int(lon, lat, 9)})
    if not hits:
        return 0
    result = session.execute(text(_GEOCODE_UPDATE_SQL), {"rows": json.dumps(hits)})
    return int(result.rowcount)  # type: ignore[attr-defined]


def _locate_open_items(session: Session, limit: int | None) -> int:
    """Add candidates to open items that have a geometry but none yet; return rows added."""
    # In SQL, as the owner: the spatial join needs the GiST indexes, which RLS keeps from the
    # app role (PostGIS operators are not LEAKPROOF). The function applies the scope itself.
    added = session.execute(text("SELECT gridgov_meta.claim_locate_open(:limit)"),
                            {"limit": limit}).scalar_one()
    return int(added)


def auto_claim(
    session: Session,
    *,
    actor: Principal,
    limit: int | None = None,
    geocoder: Geocoder | None = None,
    min_share: float = DOMINANT_SHARE,
) -> AutoClaimReport:
    """Claim open items automatically (自动认领), set-based, within the actor's own scope.

    Address-only records are geocoded first (as in ingest_pooled); items with a geometry
    but no candidates get them by point-in-polygon (points) or overlap (polygons). Then an item
    with a single candidate is claimed by it, and a polygon by the grid holding the largest
    share of it if that share is at least ``min_share`` and strictly the largest. Items the
    holder or a grid has declined or transferred are left to people.

    Raises:
        PermissionDenied: without ``claim.manage``.
        InvalidInput: limit below 1, or min_share outside (0, 1].
    """
    _require(actor, "claim.manage")
    if limit is not None and limit < 1:
        raise InvalidInput("limit must be at least 1", field="limit")
    if not 0 < min_share <= 1:
        raise InvalidInput("min_share must be in (0, 1]", field="min_share")
    try:
        geocoded = _geocode_open_items(session, geocoder or standard_address_geocoder(session),
                                       limit)
        located = _locate_open_items(session, limit)
        row = session.execute(text(_AUTO_CLAIM_SQL), {
            "limit": limit, "uid": actor.user_id, "min_share": min_share,
        }).one()
        _sync(session, row.claimed)
    except DBAPIError as exc:
        raise _db_error(exc) from exc
    claimed = len(row.claimed)
    return AutoClaimReport(
        examined=row.examined, geocoded=geocoded, located=located, claimed=claimed,
        ambiguous=row.with_candidates - claimed, unlocated=row.examined - row.with_candidates,
    )


# --- listing -------------------------------------------------------------------------------------


_LIST_SELECT = """
SELECT i.id, i.reason::text AS reason, i.origin_reason::text AS origin_reason,
       i.status::text AS status, i.path::text AS path, i.subject_kind, i.subject_id,
       i.pooled_record_id, i.claimed_code, i.version, i.created_at,
       p.source_department, p.source_record_id, p.target_kind, p.address,
       ST_X(p.geom) AS lon, ST_Y(p.geom) AS lat,
       (SELECT json_agg(json_build_object('code', c.region_code, 'path', c.path::text,
                                          'share', c.overlap_share, 'distance', c.distance_m)
                        ORDER BY c.region_code)
        FROM claim_candidate c WHERE c.claim_item_id = i.id) AS candidates
FROM claim_item i LEFT JOIN pooled_record p ON p.id = i.pooled_record_id
"""


def _list_filters(
    session: Session, status: ClaimStatus | None, region_code: str | None
) -> tuple[list[str], dict[str, Any]]:
    """Return SQL conditions (fixed text) and their bound values for list_items."""
    where = ["i.status = CAST(:status AS claim_status)" if status
             else "i.status <> 'claimed'"]
    params: dict[str, Any] = {"status": status.value if status else None}
    if region_code:
        region = _region(session, region_code)
        if region is None:
            raise InvalidInput(f"no region {region_code} in your jurisdiction",
                               field="region_code")
        where.append("(i.path <@ CAST(:rp AS ltree) OR EXISTS (SELECT 1 FROM claim_candidate c "
                     "WHERE c.claim_item_id = i.id AND c.path <@ CAST(:rp AS ltree)))")
        params["rp"] = region.path
    return where, params


def _view(row: Any) -> ClaimItemView:
    """Build the list view of one row of _LIST_SELECT."""
    return ClaimItemView(
        id=row.id, reason=ClaimReason(row.reason), origin_reason=ClaimReason(row.origin_reason),
        status=ClaimStatus(row.status), holder_path=row.path, holder_code=_last_label(row.path),
        subject_kind=row.subject_kind, subject_id=row.subject_id,
        pooled_record_id=row.pooled_record_id, source_department=row.source_department,
        source_record_id=row.source_record_id, target_kind=row.target_kind,
        address=row.address, lon=row.lon, lat=row.lat, claimed_code=row.claimed_code,
        version=row.version, created_at=row.created_at,
        candidates=[CandidateView(c["code"], c["path"], c["share"], c["distance"])
                    for c in row.candidates or []],
    )


def list_items(
    session: Session,
    *,
    actor: Principal,
    status: ClaimStatus | None = None,
    reason: ClaimReason | None = None,
    region_code: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> ClaimItemsPage:
    """List the queue the actor can see, with counts by reason.

    ``status`` None means every unsettled item (open, declined, transferred). ``region_code``
    keeps items held under that region or with a candidate grid under it. Counts by reason
    apply every filter but ``reason``.

    Raises:
        PermissionDenied: without ``claim.read``.
        InvalidInput: bad paging, or a region not in the actor's scope.
    """
    _require(actor, "claim.read")
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidInput(f"limit must be 1..{MAX_PAGE} and offset ≥ 0", field="limit")
    where, params = _list_filters(session, status, region_code)
    counts: dict[str, int] = dict(session.execute(
        text("SELECT i.reason::text, count(*) FROM claim_item i WHERE "
             + " AND ".join(where) + " GROUP BY 1"), params,
    ).all())
    if reason:
        where.append("i.reason = CAST(:reason AS claim_reason)")
        params["reason"] = reason.value
    rows = session.execute(
        text(_LIST_SELECT + " WHERE " + " AND ".join(where)
             + " ORDER BY i.id LIMIT :limit OFFSET :offset"),
        {**params, "limit": limit, "offset": offset},
    ).all()
    total = counts.get(reason.value, 0) if reason else sum(counts.values())
    return ClaimItemsPage([_view(r) for r in rows], total, counts)
