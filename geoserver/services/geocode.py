"""Geocoding free address text to standard addresses, and points back to addresses and regions.

12345 and 110 tickets and pooled records often carry only an address. ``geocode`` parses the
text with geoserver.domain.address (a gazetteer of division and road names, cached per process
and rebuilt when the database's copy changes), fetches candidates by road (fuzzy, so a one-
character typo still finds it) or by village and door number, and ranks them with
``score_match``. Candidates are read under the caller's scope (RLS): nobody geocodes to an
address they may not see. ``reverse_geocode`` finds the nearest addresses to a point and the
regions that contain it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.database.models.address import AddressLevel
from geoserver.domain.address import (
    ADMIN_LEVELS,
    Gazetteer,
    ParsedAddress,
    admin_stem,
    parse_address,
    road_similarity,
    score_match,
)
from geoserver.errors import InvalidInput
from geoserver.geo.measure import haversine_m
from geoserver.geo.validate import GeometryProblem, check_lonlat
from geoserver.services.addresses import AddressPublic, load_addresses, storage_point

__all__ = [
    "MIN_SCORE",
    "GeocodeHit",
    "RegionRef",
    "ReverseGeocodeHit",
    "ReverseGeocodeResult",
    "geocode",
    "region_chain",
    "reverse_geocode",
]

#: Hits scoring below this are not returned: a right road with a far-off door scores ~0.6.
MIN_SCORE = 0.5
MAX_HITS = 50
#: Road names at least this similar (padded-bigram Dice, see road_similarity) are fetched:
#: one wrong character in a three-character name gives 0.5, in a two-character name 0.33.
ROAD_CANDIDATE_SIMILARITY = 0.4
MAX_ROAD_CANDIDATES = 40
#: Doors this far from the asked number (same road) are fetched: score_match credits them.
NEAR_DOORS = 20
MAX_CANDIDATES = 600
MAX_RADIUS_M = 5000.0
_COMPONENTS = (*ADMIN_LEVELS, "road", "door_number", "building", "unit", "room")
_EXTRA_COMPONENTS = ("road", "building", "unit", "room")
# Metres per degree of latitude; a degree of longitude is this times cos(latitude).
_M_PER_DEG = 111_320.0


class GeocodeHit(BaseModel):
    """One standard address a text may mean, with how well and in what it matched.

    ``matched``: components equal to the text's; ``approximate``: a similar road or a nearby
    door; ``missing``: components the text has and the address lacks (a door for a room);
    ``conflicting``: components that disagree. ``distance_m`` is from ``near`` when given.
    """

    model_config = ConfigDict(frozen=True)

    score: float
    address: AddressPublic
    lon: float
    lat: float
    matched: tuple[str, ...]
    approximate: tuple[str, ...]
    missing: tuple[str, ...]
    conflicting: tuple[str, ...]
    distance_m: float | None = None


class RegionRef(BaseModel):
    """A region containing a point; dedicated grids (专属网格) have grid_type 'dedicated'."""

    model_config = ConfigDict(frozen=True)

    code: str
    name: str
    level: str
    path: str
    grid_type: str | None
    virtual: bool


class ReverseGeocodeHit(BaseModel):
    """A standard address near a point."""

    model_config = ConfigDict(frozen=True)

    address: AddressPublic
    distance_m: float


class ReverseGeocodeResult(BaseModel):
    """The nearest visible addresses (closest first) and the regions holding the point."""

    model_config = ConfigDict(frozen=True)

    lon: float
    lat: float
    addresses: list[ReverseGeocodeHit]
    regions: list[RegionRef]


# --- the cached gazetteer ------------------------------------------------------------------------


def _bigrams(name: str) -> set[str]:
    """Return the bigrams that index a road name: its start and its inner pairs, not its end.

    The end bigram (街$, 路$) is shared by thousands of roads and would fetch them all.
    """
    padded = f"^{name}"
    return {padded[i : i + 2] for i in range(len(padded) - 1)}


class RoadIndex:
    """Known road names by township, searchable by similarity."""

    def __init__(self, roads: Iterable[tuple[str, str]]) -> None:
        self._townships: dict[str, set[str]] = {}
        self._by_bigram: dict[str, set[str]] = {}
        for township_code, name in roads:
            self._townships.setdefault(name, set()).add(township_code)
        for name in self._townships:
            for gram in _bigrams(name):
                self._by_bigram.setdefault(gram, set()).add(name)

    def similar(self, name: str) -> list[tuple[str, str, float]]:
        """Return (township_code, road, similarity) of roads like ``name``, most similar first."""
        names = {n for gram in _bigrams(name) for n in self._by_bigram.get(gram, ())}
        scored = [(n, road_similarity(name, n)) for n in names]
        pairs = [
            (township, n, sim)
            for n, sim in scored
            if sim >= ROAD_CANDIDATE_SIMILARITY
            for township in self._townships[n]
        ]
        pairs.sort(key=lambda p: (-p[2], p[0], p[1]))
        return pairs


@dataclass(frozen=True)
class _Cached:
    version: str
    gazetteer: Gazetteer
    roads: RoadIndex


_cache: _Cached | None = None


def _gazetteer(session: Session) -> _Cached:
    """Return the process's gazetteer, rebuilt when the regions or roads changed."""
    global _cache
    version = session.execute(text("SELECT gridgov_meta.gazetteer_version()")).scalar_one()
    cached = _cache
    if cached is not None and cached.version == version:
        return cached
    divisions = session.execute(text(
        "SELECT code, name, level, parent_code FROM gridgov_meta.gazetteer_divisions()")).all()
    roads = session.execute(text(
        "SELECT township_code, name FROM gridgov_meta.gazetteer_roads()")).all()
    road_map: dict[str, list[str]] = {}
    for township_code, name in roads:
        road_map.setdefault(township_code, []).append(name)
    built = _Cached(
        version=version,
        gazetteer=Gazetteer([tuple(d) for d in divisions], roads=road_map),
        roads=RoadIndex((r[0], r[1]) for r in roads),
    )
    # Rebinding one module global is atomic: concurrent builders only waste a little work.
    _cache = built
    return built


# --- candidates ----------------------------------------------------------------------------------

_CANDIDATE_COLUMNS = """
SELECT a.id, a.county_code, a.township_code, a.village_code, a.road, a.door_number,
       a.building, a.unit, a.room, ST_X(a.geom) AS lon, ST_Y(a.geom) AS lat
FROM standard_address a
"""


def _door_filter(query: ParsedAddress) -> tuple[str, dict[str, Any]]:
    """Return the SQL condition picking rows near the asked door, and its bind values.

    Doors within NEAR_DOORS of the number are fetched (score_match credits near doors a
    little); rows below a door only at the exact number, and only as deep as the text goes.
    """
    base = (query.door_number or "").split("-")[0]
    if not base.isdigit():
        if query.door_number is None:
            return "a.level = 'door'", {}
        return "a.door_number = :door AND a.level = 'door'", {"door": query.door_number}
    params: dict[str, Any] = {"door": query.door_number, "lo": int(base) - NEAR_DOORS,
                              "hi": int(base) + NEAR_DOORS}
    near = "(a.level = 'door' AND a.door_base BETWEEN :lo AND :hi)"
    deeper = _deeper_filter(query, params)
    if deeper is None:
        return near, params
    return f"({near} OR (a.door_number = :door AND a.level <> 'door' AND {deeper}))", params


def _deeper_filter(query: ParsedAddress, params: dict[str, Any]) -> str | None:
    """Return the condition on building/unit/room for rows below the door, or None for none."""
    asked = [c for c in ("building", "unit", "room") if getattr(query, c)]
    if not asked:
        return None
    deepest = ("building", "unit", "room").index(asked[-1])
    clauses = []
    for i, component in enumerate(("building", "unit", "room")):
        value = getattr(query, component)
        if value is not None:
            params[component] = value
            clauses.append(f"(a.{component} IS NULL OR a.{component} = :{component})")
        elif i > deepest:
            clauses.append(f"a.{component} IS NULL")
    return " AND ".join(clauses)


def _by_roads(
    session: Session, pairs: Sequence[tuple[str, str, float]], query: ParsedAddress
) -> list[Any]:
    """Fetch candidates on the given (township, road) pairs near the asked door."""
    condition, params = _door_filter(query)
    sql = (_CANDIDATE_COLUMNS
           + "JOIN unnest(CAST(:towns AS text[]), CAST(:roads AS text[])) AS k(township_code, road)"
           " ON a.township_code = k.township_code AND a.road = k.road"
           f" WHERE {condition} ORDER BY a.id LIMIT {MAX_CANDIDATES}")
    params.update(towns=[p[0] for p in pairs], roads=[p[1] for p in pairs])
    return list(session.execute(text(sql), params).all())


def _by_village(session: Session, village_code: str, query: ParsedAddress) -> list[Any]:
    """Fetch candidates in a village near the asked door (rural addresses have no road)."""
    condition, params = _door_filter(query)
    sql = (_CANDIDATE_COLUMNS + f"WHERE a.village_code = :village AND {condition} "
           f"ORDER BY a.id LIMIT {MAX_CANDIDATES}")
    params["village"] = village_code
    return list(session.execute(text(sql), params).all())


def _road_pairs(cached: _Cached, query: ParsedAddress) -> list[tuple[str, str, float]]:
    """Return the known (township, road) pairs the text's road may mean, best first.

    Pairs in the text's township come first, then its county's, then the rest, so that a
    common name (人民路) in a hundred townships still keeps the one the text names.
    """
    assert query.road is not None
    gazetteer = cached.gazetteer

    def rank(pair: tuple[str, str, float]) -> tuple[int, float]:
        township = pair[0]
        if query.township_code is not None and township == query.township_code:
            return (0, -pair[2])
        if query.county_code is not None and gazetteer.is_within(township, query.county_code):
            return (1, -pair[2])
        return (2, -pair[2])

    return sorted(cached.roads.similar(query.road), key=rank)[:MAX_ROAD_CANDIDATES]


def _candidates(session: Session, cached: _Cached, query: ParsedAddress) -> list[Any]:
    """Fetch the rows the parsed text may mean: by road, else by village; none if neither."""
    rows: list[Any] = []
    if query.road is not None:
        pairs = _road_pairs(cached, query)
        if pairs:
            rows = _by_roads(session, pairs, query)
    if not rows and query.village_code is not None and query.door_number is not None:
        rows = _by_village(session, query.village_code, query)
    return rows


# --- ranking -------------------------------------------------------------------------------------


def _as_parsed(row: Any, gazetteer: Gazetteer) -> ParsedAddress:
    """Return a candidate row as a ParsedAddress with its division names, for score_match."""
    names = {}
    for level in ADMIN_LEVELS:
        entry = gazetteer.get(getattr(row, f"{level}_code"))
        names[level] = entry.address_name if entry is not None else None
    return ParsedAddress(
        county=names["county"], township=names["township"], village=names["village"],
        road=row.road, door_number=row.door_number, building=row.building, unit=row.unit,
        room=row.room, county_code=row.county_code, township_code=row.township_code,
        village_code=row.village_code,
    )


def _component_agreement(query: ParsedAddress, candidate: ParsedAddress, component: str) -> str:
    """Classify one component the text has: matched, approximate, missing or conflicting."""
    asked, have = getattr(query, component), getattr(candidate, component)
    if have is None:
        return "missing"
    if component in ADMIN_LEVELS:
        asked_code, have_code = getattr(query, f"{component}_code"), getattr(
            candidate, f"{component}_code")
        if asked_code is not None:
            return "matched" if asked_code == have_code else "conflicting"
        same = admin_stem(asked, component) == admin_stem(have, component)
        return "matched" if same else "conflicting"
    if asked == have:
        return "matched"
    if component == "road" and road_similarity(asked, have) > 0.25:
        return "approximate"
    if component == "door_number":
        a, b = asked.split("-")[0], have.split("-")[0]
        if a == b or (a.isdigit() and b.isdigit() and abs(int(a) - int(b)) <= NEAR_DOORS):
            return "approximate"
    return "conflicting"


def _agreements(query: ParsedAddress, candidate: ParsedAddress) -> dict[str, tuple[str, ...]]:
    """Group the text's components by how the candidate agrees with each."""
    groups: dict[str, list[str]] = {k: [] for k in ("matched", "approximate", "missing",
                                                    "conflicting")}
    for component in _COMPONENTS:
        if getattr(query, component):
            groups[_component_agreement(query, candidate, component)].append(component)
    return {k: tuple(v) for k, v in groups.items()}


@dataclass(frozen=True)
class _Scored:
    score: float
    row: Any
    candidate: ParsedAddress
    distance_m: float | None


def _rank(
    query: ParsedAddress,
    rows: Iterable[Any],
    gazetteer: Gazetteer,
    near: tuple[float, float] | None,
    min_score: float,
) -> list[_Scored]:
    """Score every candidate, drop the weak ones, and order best first.

    Equal scores go to the one nearer ``near``, then to the one adding fewer components the
    text does not name (油岙村9号 means the door without a road, not 紫薇路9号 in the same
    village), then by id for a stable order.
    """
    scored = []
    for row in rows:
        candidate = _as_parsed(row, gazetteer)
        score = score_match(query, candidate)
        if score < min_score:
            continue
        distance = None if near is None else float(haversine_m(near[0], near[1], row.lon,
                                                                row.lat))
        scored.append(_Scored(round(score, 4), row, candidate, distance))
    scored.sort(key=lambda s: (
        -s.score,
        s.distance_m if s.distance_m is not None else 0.0,
        sum(1 for c in _EXTRA_COMPONENTS if getattr(s.candidate, c) and not getattr(query, c)),
        s.row.id,
    ))
    return scored


def geocode(
    session: Session,
    *,
    text: str,
    limit: int = 5,
    near: tuple[float, float] | None = None,
    near_crs: str | None = None,
    min_score: float = MIN_SCORE,
) -> list[GeocodeHit]:
    """Return the standard addresses a free text most likely means, best first.

    Handles abbreviated and omitted divisions (五马解放街…), full-width digits, Chinese
    numerals, 栋/座/号楼 for 幢, trailing bare room numbers and one-character typos in road
    names. ``near`` (lon, lat in ``near_crs``) breaks ties between equal scores, e.g. the same
    road name in two townships. Text that matches nothing gives an empty list: the caller keeps
    the text for manual location. Only addresses in the caller's scope are considered.

    Raises:
        InvalidInput: limit outside 1..MAX_HITS, or ``near`` without a valid ``near_crs``.
    """
    if not 1 <= limit <= MAX_HITS:
        raise InvalidInput(f"limit must be 1..{MAX_HITS}", field="limit")
    near_point = None
    if near is not None:
        if near_crs is None:
            raise InvalidInput("near needs near_crs", field="near_crs")
        near_point = storage_point(near[0], near[1], near_crs, field="near")
    cached = _gazetteer(session)
    query = parse_address(text, gazetteer=cached.gazetteer)
    rows = _candidates(session, cached, query)
    ranked = _rank(query, rows, cached.gazetteer, near_point, min_score)[:limit]
    addresses = load_addresses(session, [s.row.id for s in ranked])
    return [
        GeocodeHit(score=s.score, address=addresses[s.row.id], lon=s.row.lon, lat=s.row.lat,
                   distance_m=s.distance_m, **_agreements(query, s.candidate))
        for s in ranked
        if s.row.id in addresses
    ]


# --- points to addresses and regions -------------------------------------------------------------


def region_chain(session: Session, lon: float, lat: float) -> list[RegionRef]:
    """Return the current regions holding a CGCS2000 lon/lat, city first, whatever the scope.

    The general hierarchy (city › county › township › village › grid) comes first; dedicated
    grids (专属网格) the point also lies in follow. Region names are public; rows in them are not.

    Raises:
        InvalidInput: implausible coordinates (field ``location``).
    """
    try:
        check_lonlat(lon, lat, field="location")
    except GeometryProblem as exc:
        raise InvalidInput(exc.reason, field=exc.field) from None
    rows = session.execute(
        text("SELECT code, name, level, path, grid_type, virtual FROM "
             "gridgov_meta.region_chain(ST_SetSRID(ST_Point(:lon, :lat), 4490))"),
        {"lon": float(lon), "lat": float(lat)},
    ).mappings().all()
    return [RegionRef.model_validate(dict(r)) for r in rows]


_NEAREST = """
SELECT id, distance_m FROM (
    SELECT c.id, ST_Distance(c.geom::geography, ST_SetSRID(ST_Point(:lon, :lat), 4490)::geography)
               AS distance_m
    FROM (
        SELECT a.id, a.geom FROM standard_address a
        WHERE a.level = ANY(CAST(:levels AS address_level[]))
          AND a.geom && ST_Expand(ST_SetSRID(ST_Point(:lon, :lat), 4490), :deg)
        ORDER BY a.geom <-> ST_SetSRID(ST_Point(:lon, :lat), 4490)
        LIMIT :knn
    ) c
) d
WHERE distance_m <= :radius
ORDER BY distance_m, id
LIMIT :limit
"""


def reverse_geocode(
    session: Session,
    *,
    lon: float,
    lat: float,
    crs: str,
    radius_m: float = 100.0,
    limit: int = 5,
    levels: Sequence[AddressLevel | str] = (AddressLevel.DOOR, AddressLevel.BUILDING),
) -> ReverseGeocodeResult:
    """Return the visible standard addresses nearest a point (within radius_m) and its regions.

    Distances are geodesic metres. By default only doors and buildings are returned: units and
    rooms share their building's point and would crowd them out.

    Raises:
        InvalidInput: missing or unknown crs, implausible coordinates, a radius outside
            (0, MAX_RADIUS_M], limit outside 1..MAX_HITS, or an unknown level.
    """
    x, y = storage_point(lon, lat, crs)
    if not (isinstance(radius_m, int | float) and 0 < radius_m <= MAX_RADIUS_M):
        raise InvalidInput(f"radius_m must be in (0, {MAX_RADIUS_M:.0f}]", field="radius_m")
    if not 1 <= limit <= MAX_HITS:
        raise InvalidInput(f"limit must be 1..{MAX_HITS}", field="limit")
    try:
        wanted = [AddressLevel(v).value for v in levels]
    except ValueError:
        raise InvalidInput(f"levels must be among {[v.value for v in AddressLevel]}",
                           field="levels") from None
    # The box prefilter in degrees must cover radius_m in every direction: a degree of longitude
    # is the shorter one, so divide by it.
    deg = radius_m / (_M_PER_DEG * math.cos(math.radians(y))) * 1.05
    rows = session.execute(text(_NEAREST), {
        "lon": x, "lat": y, "levels": wanted, "deg": deg, "radius": float(radius_m),
        # Planar KNN in degrees and geodesic order differ a little (cos(latitude)): fetch spare.
        "knn": 4 * limit + 20, "limit": limit,
    }).all()
    addresses = load_addresses(session, [r.id for r in rows])
    hits = [ReverseGeocodeHit(address=addresses[r.id], distance_m=float(r.distance_m))
            for r in rows if r.id in addresses]
    return ReverseGeocodeResult(lon=x, lat=y, addresses=hits,
                                regions=region_chain(session, x, y))
