"""Unified search (统一搜索) across kinds, and "nearby" (everything within r metres, by kind).

How a query runs:

- The query is cleaned (NFKC, trimmed) and checked: empty, or fewer than two letters or digits
  (a single Chinese character included) is InvalidInput; more than 64 characters is too.
  A single character matches a large share of all names, so instead of a slow scan or a
  meaningless page it is refused: the web client waits for the second character.
- Text: the database cuts the query into character bigrams (``search_bigrams``, the function
  behind the ``search_grams`` columns) and each kind's branch keeps the rows whose bigrams
  contain them (GIN). Only the rare bigrams go into the index condition (index_grams, from
  ANALYZE's element statistics); the common ones are checked on the rows those find, which
  spares reading posting lists as long as the table. Identifiers also go to exact lookups: an
  18-digit (or 15-digit) ID number to the person blind index, a USCC to enterprises and
  organizations, anything code-shaped to the code columns. When all that finds nothing, a
  query of three or more characters is tried for trigram-similar names (``%``, pg_trgm's
  GIN) — typo tolerance, given FUZZY_BUDGET_MS at most.
- Pinyin: a query of Latin letters only (spaces ignored, 2+ letters) also matches the
  ``search_pinyin`` columns (initials and full spelling of every reading, written by the
  database: 0095.search_pinyin.sql) of regions, grids, buildings, places, enterprises and
  organizations: "wmjd" and "wumajiedao" find 五马街道. Two letters match the start of a
  variant only ("wm"), three or more anywhere in it (pg_trgm's GIN).
- Every branch is index-backed and LIMITed (``POOL`` candidates per kind; the nearest first
  when a map centre is given), the branches run as one UNION ALL, and the candidates are
  ranked here: text match first (exact 1.0 > prefix 0.8–0.95 > contains 0.55–0.75 > bigram
  overlap share or trigram similarity, at most 0.5; pinyin: a whole variant 0.9 > its start
  0.7–0.85 > inside it 0.5–0.65), then closeness to the map centre
  (``1 / (1 + d / 1 km)``, weighted 0.2 against 0.8 for the text when a centre is given).
- Scope is RLS plus ``actor.covers(path)`` on every hit; each kind needs its read permission
  (kinds the actor may not read are left out, silently); persons need their special-population
  permission and are shown masked (name 张*丰, ID 330302********1234) whatever the role.
- A bbox that meets no region the caller can see (outside the city, or outside their
  jurisdiction) answers an empty result without querying the kinds.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from geoserver.domain.documents import (
    DocumentInvalid,
    DocumentType,
    mask_id_number,
    mask_name,
    normalize_document,
    validate_uscc,
)
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput
from geoserver.geo.crs import InputCRS, parse_input_crs, to_storage
from geoserver.geo.validate import GeometryProblem, check_lonlat
from geoserver.security.crypto import PersonalDataCrypto
from geoserver.services import regions
from geoserver.services.persons import blind_key

MAX_QUERY_LENGTH = 64
MAX_LIMIT = 50
#: Candidates fetched per kind before ranking. A query that matches more objects of a kind
#: than this ranks the first POOL the index gives (the nearest ones when a centre is given).
POOL = 100
#: Typo tolerance (trigram similarity) runs only when the exact and bigram branches found fewer
#: candidates than this, for queries of at least FUZZY_MIN_LENGTH characters, and only if it
#: answers within FUZZY_BUDGET_MS ("where cheap"). Only when they found nothing: a query whose
#: own characters found a few names typed them right, and a third of 8-character queries
#: would otherwise pay for the pass (up to the budget) to add near misses below them.
FUZZY_BELOW = 1
FUZZY_MIN_LENGTH = 3
FUZZY_BUDGET_MS = 50
#: A bigram found in at most this share of a table's rows is "rare": it joins the rarest one in
#: the GIN condition (at most MAX_INDEX_GRAMS of them); commoner ones are checked on the rows.
RARE_GRAM = 0.02
MAX_INDEX_GRAMS = 3
#: How long the bigram statistics are kept in memory (ANALYZE changes them slowly).
GRAM_STATS_TTL_S = 600.0
_PINYIN = re.compile(r"^[a-z]{2,64}$")
#: Document types an ID-number-shaped query is tried as (passports are not searched: almost
#: any short string has a passport's shape).
_ID_TYPES = (DocumentType.RESIDENT_ID, DocumentType.HMT_RESIDENCE_PERMIT,
             DocumentType.FOREIGN_PERMANENT_RESIDENCE, DocumentType.LEGACY_ID)
_ID_SHAPE = re.compile(r"^(?:[0-9]{17}[0-9X]|[0-9]{15})$")
_USCC_SHAPE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{18}$")
_CODE_SHAPE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{1,63}$")
_TOKEN = re.compile(r"[^\W_]+")
_REGION_CODE = re.compile(r"^[0-9A-Za-z]{2,24}$")

_LEVEL = ("CASE t.level WHEN 'city' THEN '市' WHEN 'county' THEN '县(市、区)' "
          "WHEN 'township' THEN '乡镇(街道)' WHEN 'village' THEN '村(社区)' "
          "WHEN 'grid' THEN CASE t.grid_type WHEN 'dedicated' THEN '专属网格' "
          "WHEN 'key' THEN '重点网格' ELSE '网格' END ELSE '微网格' END")
# Outlines are simplified by level: a hit needs a shape to zoom to, not survey detail.
_REGION_SHAPE = ("ST_SimplifyPreserveTopology(t.geom, CASE t.level WHEN 'city' THEN 0.002 "
                 "WHEN 'county' THEN 0.001 WHEN 'township' THEN 0.0005 ELSE 0.0001 END)")
_POINT = "ST_SetSRID(ST_Point(:x, :y), 4490)"
_REGION_FROM = ("region t LEFT JOIN region p ON p.code = t.parent_code "
                "AND p.valid_to IS NULL")


@dataclass(frozen=True)
class Source:
    """One searchable kind: where its rows are and how a hit is shown."""

    kind: str
    label: str
    permission: str
    table: str
    title: str
    subtitle: str
    #: Geometry shown (SQL, EPSG:4490), and the indexed column used for bbox and distance.
    shape: str | None
    locus: str | None
    where: str = "true"
    #: Whether the source has a search_grams column, and the column trigram typo search uses.
    grams: bool = True
    fuzzy: str | None = None
    #: Identifier type ("code", "uscc", "document") → column compared for equality.
    exact: Mapping[str, str] = field(default_factory=dict)
    #: The locus belongs to the table itself (GiST KNN ordering works), not to a join.
    knn: bool = True
    #: Whether the source has a search_pinyin column (names people type in pinyin).
    pinyin: bool = False

    @property
    def relation(self) -> str:
        """Return the searched table's name (without joins)."""
        return self.table.split()[0]


SOURCES: dict[str, Source] = {s.kind: s for s in (
    Source("region", "区划", "region.read", _REGION_FROM, "t.name",
           f"concat_ws(' · ', {_LEVEL}, p.name)", _REGION_SHAPE, "t.geom",
           where="t.valid_to IS NULL AND t.level NOT IN ('grid', 'micro_grid')",
           fuzzy="t.name", exact={"code": "t.code"}, pinyin=True),
    Source("grid", "网格", "region.read", _REGION_FROM, "t.name",
           f"concat_ws(' · ', {_LEVEL}, p.name)", _REGION_SHAPE, "t.geom",
           where="t.valid_to IS NULL AND t.level IN ('grid', 'micro_grid')",
           fuzzy="t.name", exact={"code": "t.code"}, pinyin=True),
    Source("standard_address", "标准地址", "address.read", "standard_address t", "t.full_text",
           "concat_ws(' · ', CASE t.level WHEN 'door' THEN '门牌' WHEN 'building' THEN '楼栋' "
           "WHEN 'unit' THEN '单元' ELSE '户室' END, t.code)", "t.geom", "t.geom",
           exact={"code": "t.code"}),
    Source("building", "建筑物", "building.read", "building t", "coalesce(t.name, t.code)",
           "concat_ws(' · ', t.category::text, t.floors || '层', t.code)", "t.geom", "t.geom",
           fuzzy="t.name", exact={"code": "t.code"}, pinyin=True),
    Source("key_place", "重点场所", "place.read", "key_place t", "t.name",
           "concat_ws(' · ', t.category, t.address)", "t.geom", "t.geom", fuzzy="t.name",
           pinyin=True),
    Source("city_component", "城市部件", "place.read", "city_component t",
           "t.category || ' ' || t.code", "concat_ws(' · ', t.status::text, t.owner_department)",
           "t.geom", "t.geom", grams=False, exact={"code": "t.code"}),
    Source("enterprise", "企业", "enterprise.read", "enterprise t", "t.name",
           "concat_ws(' · ', t.industry, t.uscc, t.address)", "t.geom", "t.geom",
           fuzzy="t.name", exact={"uscc": "t.uscc"}, pinyin=True),
    Source("organization", "组织机构", "enterprise.read", "organization t", "t.name",
           "concat_ws(' · ', t.category, t.address)", "t.geom", "t.geom", fuzzy="t.name",
           exact={"uscc": "t.uscc"}, pinyin=True),
    # Persons have no geometry of their own: they are shown at their building, if any.
    Source("person", "实有人口", "person.read",
           "person t LEFT JOIN residence r ON r.id = t.residence_id "
           "LEFT JOIN building b ON b.id = r.building_id", "t.name",
           "concat_ws(' · ', CASE t.person_type WHEN 'registered' THEN '户籍人口' "
           "WHEN 'floating' THEN '流动人口' ELSE '境外人员' END, t.document_number_masked)",
           "b.centroid", "b.geom", exact={"document": "t.document_number_hash"}, knn=False),
    Source("event", "事件", "event.read", "event t", "t.title",
           "concat_ws(' · ', t.code, t.address)", "t.geom", "t.geom",
           where="t.state <> 'merged'", exact={"code": "t.code"}),
)}
KINDS = tuple(SOURCES)


@dataclass(frozen=True)
class Hit:
    """One search result; ``title`` is already masked for persons."""

    kind: str
    id: int
    code: str | None
    title: str
    subtitle: str | None
    geometry: dict[str, Any] | None
    path: str
    score: float
    match: str
    distance_m: float | None = None


@dataclass(frozen=True)
class SearchResult:
    """Ranked hits; ``truncated`` when some kind had more candidates than were ranked."""

    query: str
    hits: list[Hit]
    truncated: bool = False


@dataclass(frozen=True)
class _Plan:
    """A validated request: what to match, where, and for whom."""

    query: str
    grams: list[str]
    identifiers: dict[str, Any]
    sources: list[Source]
    point: tuple[float, float] | None
    envelope: tuple[float, float, float, float] | None
    region_path: str | None
    special: frozenset[str]
    #: The caller's scope paths, repeated as an indexable condition ("" = everything).
    scope: tuple[str, ...] = ()
    #: The LIKE pattern for the search_pinyin columns (None: not a pinyin query).
    pinyin: str | None = None
    #: Per table, the bigrams of ``grams`` that go into the GIN condition (all when absent).
    index_grams: Mapping[str, list[str]] = field(default_factory=dict)


# --- input ------------------------------------------------------------------------------------


def clean_query(q: str | None) -> str:
    """Return the query normalised (NFKC, single spaces), or raise InvalidInput naming ``q``."""
    raw = (q or "").strip()
    if len(raw) > MAX_QUERY_LENGTH:
        raise InvalidInput(f"the query is longer than {MAX_QUERY_LENGTH} characters", field="q")
    # Control and format characters (NUL above all: PostgreSQL text cannot hold it) are noise.
    raw = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in raw)
    query = " ".join(unicodedata.normalize("NFKC", raw).split())
    if not query:
        raise InvalidInput("enter something to search for", field="q")
    if sum(ch.isalnum() for ch in query) < 2:
        raise InvalidInput("enter at least 2 characters (one character matches too much)",
                           field="q")
    return query


def choose_sources(actor: Principal, kinds: Iterable[str] | None) -> list[Source]:
    """Return the sources to search: the kinds asked for (all by default) the actor may read."""
    wanted = list(KINDS) if kinds is None else [k.strip() for k in kinds if k.strip()]
    unknown = [k for k in wanted if k not in SOURCES]
    if unknown:
        raise InvalidInput(f"unknown kind {unknown[0]!r}; expected some of {', '.join(KINDS)}",
                           field="kinds")
    return [SOURCES[k] for k in dict.fromkeys(wanted) if actor.can(SOURCES[k].permission)]


def storage_point(lon: float, lat: float, crs: str, *, field_name: str) -> tuple[float, float]:
    """Return a lon/lat in storage CRS, or raise InvalidInput naming the field."""
    try:
        in_crs = parse_input_crs(crs)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="crs") from None
    try:
        check_lonlat(lon, lat, field=field_name)
    except GeometryProblem as exc:
        raise InvalidInput(exc.reason, field=exc.field) from None
    x, y = to_storage(float(lon), float(lat), in_crs)
    return float(x), float(y)


def storage_envelope(bbox: Sequence[float], crs: str) -> tuple[float, float, float, float]:
    """Return a (west, south, east, north) box in storage CRS; InvalidInput if malformed."""
    if len(bbox) != 4 or not all(isinstance(v, int | float) and math.isfinite(v) for v in bbox):
        raise InvalidInput("bbox must be four numbers: west,south,east,north", field="bbox")
    west, south, east, north = (float(v) for v in bbox)
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise InvalidInput("bbox corners are out of range or in the wrong order", field="bbox")
    in_crs = _crs(crs)
    if in_crs in (InputCRS.WGS84, InputCRS.CGCS2000):
        return west, south, east, north
    # GCJ-02/BD-09 offsets vary across the box: convert the corners, take their envelope.
    xs, ys = zip(*(to_storage(x, y, in_crs) for x in (west, east) for y in (south, north)),
                 strict=True)
    return min(xs), min(ys), max(xs), max(ys)


def _crs(crs: str) -> InputCRS:
    try:
        return parse_input_crs(crs)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="crs") from None


def identifiers(query: str, crypto: PersonalDataCrypto | None) -> dict[str, Any]:
    """Return the exact lookups a query stands for: code, USCC, ID-number blind index hashes."""
    compact = query.replace(" ", "").upper()
    found: dict[str, Any] = {}
    if _CODE_SHAPE.match(query):
        found["code"] = query
    if _USCC_SHAPE.match(compact):
        try:
            found["uscc"] = validate_uscc(compact)
        except DocumentInvalid:
            pass
    if crypto is not None and _ID_SHAPE.match(compact):
        hashes = []
        for doc_type in _ID_TYPES:
            try:
                canonical = normalize_document(doc_type, compact)
            except DocumentInvalid:
                continue
            hashes.append(crypto.blind_index(blind_key(doc_type, canonical)))
        if hashes:
            found["document"] = hashes
    return found


def pinyin_pattern(query: str) -> str | None:
    """Return the LIKE pattern a query of Latin letters stands for in pinyin, else None.

    Spaces are ignored ("wm jd" is wmjd). Two letters match the start of a variant
    (``% wm%``: every variant follows a space), more anywhere inside one (``%wmjd%``); two
    letters anywhere would match most names.
    """
    letters = "".join(query.split()).lower()
    if not _PINYIN.match(letters):
        return None
    return f"% {letters}%" if len(letters) == 2 else f"%{letters}%"


# --- bigram statistics --------------------------------------------------------------------------


@dataclass(frozen=True)
class GramStats:
    """How common the frequent bigrams of one table's search_grams are (ANALYZE's sample)."""

    rows: float
    #: The smallest share listed: a bigram not listed is rarer than this.
    floor: float
    shares: Mapping[str, float]

    def share(self, gram: str) -> float:
        """Return the share of rows holding a bigram (half the floor when it is not listed)."""
        return self.shares.get(gram, self.floor / 2)


def index_grams(grams: Sequence[str], stats: GramStats | None) -> list[str]:
    """Return the bigrams worth reading from the GIN index; the rest are checked on the rows.

    GIN reads the posting list of every bigram in the condition. An 8-character query has 7,
    and 网格 is in every event's title: intersecting it costs ~20× the rare bigram alone. So
    only the rarest bigram goes in, with up to MAX_INDEX_GRAMS - 1 more that are themselves
    rare (≤ RARE_GRAM of the rows). Without statistics (never analysed): all of them.
    """
    if stats is None or len(grams) < 2:
        return list(grams)
    ordered = sorted(grams, key=lambda g: (stats.share(g), g))
    chosen = ordered[:1] + [g for g in ordered[1:MAX_INDEX_GRAMS]
                            if stats.share(g) <= RARE_GRAM]
    return sorted(chosen)


_GRAM_STATS: dict[str, tuple[float, dict[str, GramStats]]] = {}
_GRAM_STATS_LOCK = threading.Lock()


def gram_stats(session: Session) -> Mapping[str, GramStats]:
    """Return the bigram statistics of every table with search_grams, cached per database."""
    key = str(session.connection().engine.url)  # the password is masked; the database is not
    now = time.monotonic()
    cached = _GRAM_STATS.get(key)
    if cached is not None and now - cached[0] < GRAM_STATS_TTL_S:
        return cached[1]
    stats: dict[str, GramStats] = {}
    for row in session.execute(text(
            "SELECT tbl, rows, grams, freqs FROM gridgov_meta.search_gram_stats()")):
        shares = dict(zip(row.grams, row.freqs, strict=False))  # freqs has 3 more: min, max…
        if shares:
            stats[row.tbl] = GramStats(float(row.rows), min(shares.values()), shares)
    with _GRAM_STATS_LOCK:
        _GRAM_STATS[key] = (now, stats)
    return stats


# --- ranking ----------------------------------------------------------------------------------


def _norm(value: str) -> str:
    return unicodedata.normalize("NFKC", value).lower()


def _bigrams(value: str) -> set[str]:
    grams: set[str] = set()
    for token in _TOKEN.findall(_norm(value)):
        grams.update(token[i:i + 2] for i in range(len(token) - 1))
    return grams


def text_score(title: str, query: str, similarity: float = 0.0) -> tuple[float, str]:
    """Score how well a title matches a query in [0, 1], and name the kind of match.

    Exact 1.0; prefix 0.8 + 0.15 × coverage; every query token inside 0.55 + 0.2 × coverage
    (coverage = query length / title length, so shorter titles rank first); otherwise half of
    the larger of the bigram overlap share and the trigram similarity.
    """
    t = "".join(_norm(title).split())
    tokens = _norm(query).split()
    q = "".join(tokens)
    if not t or not q:
        return 0.0, "none"
    coverage = min(1.0, len(q) / len(t))
    if t == q:
        return 1.0, "exact"
    if t.startswith(q):
        return 0.8 + 0.15 * coverage, "prefix"
    if all(tok in t for tok in tokens):
        return 0.55 + 0.2 * coverage, "contains"
    wanted = _bigrams(query)
    share = len(wanted & _bigrams(title)) / len(wanted) if wanted else 0.0
    return 0.5 * max(share, similarity), "fuzzy"


def pinyin_score(pinyin: str | None, query: str) -> tuple[float, str]:
    """Score how well a query matches a search_pinyin value in [0, 0.9], named "pinyin".

    A whole variant 0.9; its start 0.7 + 0.15 × coverage; inside it 0.5 + 0.15 × coverage
    (coverage = query length / variant length); no variant holds it: 0.
    """
    q = "".join(query.split()).lower()
    best = 0.0
    for variant in (pinyin or "").split():
        coverage = min(1.0, len(q) / len(variant))
        if variant == q:
            best = max(best, 0.9)
        elif variant.startswith(q):
            best = max(best, 0.7 + 0.15 * coverage)
        elif q in variant:
            best = max(best, 0.5 + 0.15 * coverage)
    return best, "pinyin"


def proximity(distance_m: float | None) -> float:
    """Return closeness to the map centre in [0, 1]: 1 at the centre, 0.5 at 1 km."""
    if distance_m is None:
        return 0.0
    return 1.0 / (1.0 + max(distance_m, 0.0) / 1000.0)


def combined_score(text_part: float, distance_m: float | None, near: bool) -> float:
    """Return the final score: the text alone, or 0.8 × text + 0.2 × proximity with a centre."""
    if not near:
        return text_part
    return 0.8 * text_part + 0.2 * proximity(distance_m)


# --- SQL --------------------------------------------------------------------------------------


def _filters(src: Source, plan: _Plan) -> list[str]:
    clauses = [src.where]
    if plan.envelope is not None:
        if src.locus is None:
            clauses.append("false")
        else:
            clauses.append(f"{src.locus} && ST_MakeEnvelope(:w, :s, :e, :n, 4490)")
    if plan.region_path is not None:
        clauses.append("t.path <@ CAST(:rpath AS ltree)")
    if plan.scope:
        # RLS filters by scope too, but only after the other conditions (its ANY(array) is no
        # index condition): said again as plain <@, the path GiST narrows a common bigram's
        # city-wide matches to the caller's few before the rows are read.
        clauses.append("(" + " OR ".join(f"t.path <@ CAST(:scope{i} AS ltree)"
                                         for i in range(len(plan.scope))) + ")")
    if src.kind == "person" and "*" not in plan.special:
        clauses.append("(t.special_category IS NULL OR t.special_category = ANY (:special))")
    return clauses


def _select(src: Source, plan: _Plan, match: str, tag: str, limit: str,
            pinyin: str = "NULL::text") -> str:
    """Return one branch: the candidates' ranking columns (details come later, for the page)."""
    near = plan.point is not None and src.locus is not None
    distance = (f"ST_Distance({src.locus}::geography, {_POINT}::geography)" if near
                else "NULL::float8")
    order = f" ORDER BY {src.locus} <-> {_POINT}" if near and src.knn else ""
    where = " AND ".join([f"({match})", *_filters(src, plan)])
    return (f"(SELECT '{src.kind}' AS kind, '{tag}' AS tag, t.id, "
            f"{_code_column(src)} AS code, {src.title} AS title, t.path::text AS path, "
            f"similarity({src.title}, :q) AS sim, {distance} AS distance_m, "
            f"{pinyin} AS pinyin "
            f"FROM {src.table} WHERE {where}{order} LIMIT {limit})")


def details_statement(kinds: Iterable[str]) -> str:
    """Return the query fetching subtitle and geometry of the chosen hits, by kind and id."""
    branches = []
    for kind in kinds:
        src = SOURCES[kind]
        shape = f"ST_AsGeoJSON({src.shape}, 7, 0)" if src.shape else "NULL::text"
        branches.append(f"(SELECT '{kind}' AS kind, t.id, {src.subtitle} AS subtitle, "
                        f"{shape} AS geometry FROM {src.table} WHERE t.id = ANY (:ids_{kind}))")
    return " UNION ALL ".join(branches)


def _code_column(src: Source) -> str:
    if "code" in src.exact:
        return src.exact["code"]
    if "uscc" in src.exact:
        return src.exact["uscc"]
    return "NULL::text"


def _text_match(src: Source, plan: _Plan) -> str | None:
    if not src.grams or not plan.grams:
        return None
    rare = plan.index_grams.get(src.relation)
    if rare is None or len(rare) == len(plan.grams):
        return "t.search_grams @> CAST(:grams AS text[])"
    # `||` hides the full containment from the planner: otherwise it would put every bigram
    # into the index condition again. The rows the rare ones find are checked for all.
    return (f"t.search_grams @> CAST(:grams_{src.relation} AS text[]) "
            "AND (t.search_grams || CAST('{}' AS text[])) @> CAST(:grams AS text[])")


def _exact_match(src: Source, plan: _Plan) -> str | None:
    parts = []
    for key, column in src.exact.items():
        if key in plan.identifiers:
            op = "= ANY (:document)" if key == "document" else f"= :{key}"
            parts.append(f"{column} {op}")
    return " OR ".join(parts) if parts else None


def statement(plan: _Plan) -> str | None:
    """Return the UNION ALL of every branch (exact lookups and text matches), or None."""
    branches = []
    for src in plan.sources:
        exact = _exact_match(src, plan)
        if exact:
            branches.append(_select(src, plan, exact, "exact", "10"))
        match = _text_match(src, plan)
        if match:
            branches.append(_select(src, plan, match, "text", ":pool"))
        if src.pinyin and plan.pinyin:
            branches.append(_select(src, plan, "t.search_pinyin LIKE :pinyin", "pinyin",
                                    ":pool", pinyin="t.search_pinyin"))
    return " UNION ALL ".join(branches) if branches else None


def fuzzy_statement(plan: _Plan) -> str | None:
    """Return the UNION ALL of the trigram-similarity branches (typo tolerance), or None."""
    if len(plan.query.replace(" ", "")) < FUZZY_MIN_LENGTH:
        return None
    branches = [_select(src, plan, f"{src.fuzzy} % :q", "text", ":pool")
                for src in plan.sources if src.fuzzy]
    return " UNION ALL ".join(branches) if branches else None


def _params(plan: _Plan) -> dict[str, Any]:
    params: dict[str, Any] = {"q": plan.query, "grams": plan.grams, "pool": POOL,
                              "special": sorted(plan.special), "pinyin": plan.pinyin,
                              **plan.identifiers}
    params.update({f"grams_{table}": grams for table, grams in plan.index_grams.items()})
    if plan.point is not None:
        params.update(x=plan.point[0], y=plan.point[1])
    if plan.envelope is not None:
        params.update(zip(("w", "s", "e", "n"), plan.envelope, strict=True))
    if plan.region_path is not None:
        params["rpath"] = plan.region_path
    params.update({f"scope{i}": p for i, p in enumerate(plan.scope)})
    return params


# --- the service ------------------------------------------------------------------------------


def search(
    session: Session,
    *,
    actor: Principal,
    q: str | None,
    kinds: Iterable[str] | None = None,
    near: tuple[float, float] | None = None,
    bbox: Sequence[float] | None = None,
    region_code: str | None = None,
    limit: int = 20,
    crs: str = "WGS84",
    crypto: PersonalDataCrypto | None = None,
) -> SearchResult:
    """Search every kind the actor may read; return ranked hits (persons masked).

    ``near`` is the map centre (lon, lat) and ``bbox`` (west, south, east, north) a filter,
    both in ``crs``; ``region_code`` keeps hits under a region of the caller's jurisdiction.
    ``crypto`` enables the search by full ID number (blind index).

    Raises:
        InvalidInput: empty, too short or too long query (``q``), unknown kind (``kinds``),
            bad limit, coordinates, bbox, crs, or a region outside the jurisdiction.
    """
    plan = _plan(session, actor, q, kinds, near, bbox, region_code, limit, crs, crypto)
    if plan is None:
        return SearchResult(clean_query(q), [])
    sql = statement(plan)
    if sql is None:
        return SearchResult(plan.query, [])
    rows: list[Mapping[Any, Any]] = list(session.execute(text(sql), _params(plan)).mappings())
    if len(rows) < FUZZY_BELOW:
        rows += _fuzzy_rows(session, plan)
    hits = diversify(rank(rows, plan.query, near=plan.point is not None, actor=actor), limit)
    # An ID number is not echoed back in clear (responses end up in logs and caches).
    shown = mask_id_number(plan.query) if "document" in plan.identifiers else plan.query
    return SearchResult(shown, with_details(session, hits), _truncated(rows))


def with_details(session: Session, hits: Sequence[Hit]) -> list[Hit]:
    """Return the hits with their subtitles and geometries (one query for the whole page)."""
    if not hits:
        return []
    ids: dict[str, list[int]] = {}
    for hit in hits:
        ids.setdefault(hit.kind, []).append(hit.id)
    rows = session.execute(text(details_statement(ids)),
                           {f"ids_{k}": v for k, v in ids.items()}).mappings()
    found = {(r["kind"], r["id"]): r for r in rows}
    out = []
    for hit in hits:
        row = found.get((hit.kind, hit.id))
        if row is None:  # gone since the first query (deleted, moved out of scope)
            continue
        out.append(replace(hit, subtitle=row["subtitle"] or None,
                           geometry=json.loads(row["geometry"]) if row["geometry"] else None))
    return out


def _fuzzy_rows(session: Session, plan: _Plan) -> list[Mapping[Any, Any]]:
    """Return trigram-similar candidates if that is cheap: within FUZZY_BUDGET_MS, else none.

    pg_trgm's ``%`` rechecks every row sharing enough trigrams with the query, which for a
    common phrase is tens of thousands: typo tolerance is worth a little time, not a slow page.
    """
    sql = fuzzy_statement(plan)
    if sql is None:
        return []
    before = session.execute(text("SELECT current_setting('statement_timeout')")).scalar_one()
    try:
        with session.begin_nested():
            session.execute(text("SELECT set_config('statement_timeout', :t, true)"),
                            {"t": f"{FUZZY_BUDGET_MS}ms"})
            rows: list[Mapping[Any, Any]] = list(
                session.execute(text(sql), _params(plan)).mappings())
    except OperationalError as exc:  # 57014 query_canceled: over budget, skip the typo pass
        if getattr(exc.orig, "pgcode", None) != "57014":
            raise
        return []
    session.execute(text("SELECT set_config('statement_timeout', :t, true)"), {"t": before})
    return rows


def _plan(session: Session, actor: Principal, q: str | None, kinds: Iterable[str] | None,
          near: tuple[float, float] | None, bbox: Sequence[float] | None,
          region_code: str | None, limit: int, crs: str,
          crypto: PersonalDataCrypto | None) -> _Plan | None:
    """Validate a request into a plan; None when it can only find nothing (bbox elsewhere)."""
    query = clean_query(q)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be 1..{MAX_LIMIT}", field="limit")
    sources = choose_sources(actor, kinds)
    point = storage_point(near[0], near[1], crs, field_name="near") if near else None
    envelope = storage_envelope(bbox, crs) if bbox is not None else None
    region_path = _region_path(session, actor, region_code) if region_code else None
    grams = _query_grams(session, query)
    found = identifiers(query, crypto)
    if not grams and not found:
        raise InvalidInput("enter at least 2 adjacent letters or digits", field="q")
    if envelope is not None and not _meets_visible_region(session, envelope):
        return None
    scope = () if "" in actor.scope else tuple(actor.scope)
    stats = gram_stats(session) if len(grams) > 1 else {}
    rare = {src.relation: index_grams(grams, stats.get(src.relation))
            for src in sources if src.grams and src.relation in stats}
    return _Plan(query, grams, found, sources, point, envelope, region_path,
                 actor.special_categories, scope, pinyin_pattern(query), rare)


def _query_grams(session: Session, query: str) -> list[str]:
    """Return the query's bigrams as the database cuts them (single characters left out)."""
    grams = session.execute(text("SELECT search_bigrams(:q)"), {"q": query}).scalar_one()
    return sorted({g for g in grams if len(g) == 2})


def _region_path(session: Session, actor: Principal, code: str) -> str:
    if not _REGION_CODE.match(code):
        raise InvalidInput("not a region code", field="region_code")
    row = session.execute(
        text("SELECT path::text FROM region WHERE code = :c AND valid_to IS NULL"), {"c": code}
    ).first()
    if row is None or not actor.covers(row[0]):
        raise InvalidInput("unknown region code, or outside your jurisdiction",
                           field="region_code")
    return str(row[0])


def _meets_visible_region(session: Session, envelope: tuple[float, float, float, float]) -> bool:
    """Return whether a box overlaps any current region the session can see (GiST)."""
    return bool(session.execute(
        text("SELECT EXISTS (SELECT 1 FROM region WHERE valid_to IS NULL "
             "AND geom && ST_MakeEnvelope(:w, :s, :e, :n, 4490))"),
        dict(zip(("w", "s", "e", "n"), envelope, strict=True)),
    ).scalar_one())


def rank(rows: Iterable[Mapping[Any, Any]], query: str, *, near: bool,
         actor: Principal) -> list[Hit]:
    """Score candidate rows, drop duplicates and out-of-scope ones, and sort best first."""
    best: dict[tuple[str, int], Hit] = {}
    for row in rows:
        if not actor.covers(row["path"]):
            continue
        if row["tag"] == "exact":
            part, match = 1.0, "exact"
        elif row["tag"] == "pinyin":
            part, match = pinyin_score(row["pinyin"], query)
        else:
            part, match = text_score(row["title"] or "", query, float(row["sim"] or 0.0))
        hit = _hit(row, combined_score(part, row["distance_m"], near), match)
        key = (hit.kind, hit.id)
        if key not in best or hit.score > best[key].score:
            best[key] = hit
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(best.values(), key=lambda h: (-h.score, order[h.kind], len(h.title), h.id))


def diversify(hits: Sequence[Hit], limit: int) -> list[Hit]:
    """Return the best ``limit`` hits, no kind taking more than half the page while others wait.

    Hundreds of buildings named 鼓楼社区第N幢 would otherwise push every address off the page.
    """
    cap = max(3, limit // 2)
    taken: list[Hit] = []
    rest: list[Hit] = []
    per_kind: dict[str, int] = {}
    for hit in hits:
        if len(taken) < limit and per_kind.get(hit.kind, 0) < cap:
            taken.append(hit)
            per_kind[hit.kind] = per_kind.get(hit.kind, 0) + 1
        else:
            rest.append(hit)
    position = {(h.kind, h.id): i for i, h in enumerate(hits)}
    chosen = taken + rest[:limit - len(taken)]
    return sorted(chosen, key=lambda h: position[(h.kind, h.id)])


def _hit(row: Mapping[Any, Any], score: float, match: str) -> Hit:
    title = row["title"] or ""
    if row["kind"] == "person":
        title = mask_name(title)
    distance = row["distance_m"]
    return Hit(kind=row["kind"], id=int(row["id"]), code=row["code"], title=title,
               subtitle=None, geometry=None, path=row["path"], score=round(score, 4),
               match=match,
               distance_m=None if distance is None else round(float(distance), 1))


def _truncated(rows: Sequence[Mapping[Any, Any]]) -> bool:
    counts: dict[str, int] = {}
    for row in rows:
        if row["tag"] != "exact":
            key = f"{row['kind']}:{row['tag']}"
            counts[key] = counts.get(key, 0) + 1
    return any(n >= POOL for n in counts.values())


def to_feature(hit: Hit) -> dict[str, Any]:
    """Return a hit as a GeoJSON Feature; ``code`` is set for regions and grids only.

    The web map opens a region by ``properties.code``; other kinds carry their code as
    ``object_code`` so that a building code is never taken for a region's.
    """
    props: dict[str, Any] = {
        "kind": hit.kind, "kind_label": SOURCES[hit.kind].label, "id": hit.id,
        "title": hit.title, "name": hit.title, "subtitle": hit.subtitle, "score": hit.score,
        "match": hit.match, "distance_m": hit.distance_m,
    }
    if hit.kind in ("region", "grid"):
        props["code"] = hit.code
    elif hit.code is not None:
        props["object_code"] = hit.code
    return {"type": "Feature", "id": f"{hit.kind}:{hit.id}", "geometry": hit.geometry,
            "properties": props}


def to_feature_collection(result: SearchResult) -> dict[str, Any]:
    """Return a search result as a GeoJSON FeatureCollection."""
    return {"type": "FeatureCollection", "query": result.query, "truncated": result.truncated,
            "features": [to_feature(h) for h in result.hits]}


# --- nearby -----------------------------------------------------------------------------------

#: Kinds "nearby" can list → (table of regions.what_is_here, result key, read permission).
NEARBY_KINDS: dict[str, tuple[str, str, str]] = {
    "building": ("building", "buildings", "building.read"),
    "standard_address": ("standard_address", "addresses", "address.read"),
    "key_place": ("key_place", "places", "place.read"),
    "city_component": ("city_component", "components", "place.read"),
    "enterprise": ("enterprise", "enterprises", "enterprise.read"),
    "organization": ("organization", "organizations", "enterprise.read"),
    "event": ("event", "events", "event.read"),
}


def nearby(session: Session, *, actor: Principal, lon: float, lat: float, crs: str,
           radius_m: float = 200, kinds: Collection[str] | None = None) -> dict[str, Any]:
    """Return the regions at a point and the objects within ``radius_m`` as GeoJSON by kind.

    Only kinds the actor may read are listed; ``kinds`` narrows them (unknown → InvalidInput).
    The region chain and the exact distances come from regions.what_is_here.
    """
    wanted = list(NEARBY_KINDS) if kinds is None else list(kinds)
    unknown = [k for k in wanted if k not in NEARBY_KINDS]
    if unknown:
        raise InvalidInput(f"unknown kind {unknown[0]!r}; expected some of "
                           f"{', '.join(NEARBY_KINDS)}", field="kinds")
    allowed = [k for k in wanted if actor.can(NEARBY_KINDS[k][2])]
    here = regions.what_is_here(session, actor=actor, lon=lon, lat=lat, crs=crs,
                                radius_m=radius_m,
                                kinds=[NEARBY_KINDS[k][0] for k in allowed])
    features = []
    for kind in allowed:
        for item in here.get(NEARBY_KINDS[kind][1], []):
            features.append(_nearby_feature(kind, item))
    features.sort(key=lambda f: f["properties"]["distance_m"])
    return {"type": "FeatureCollection", "point": here["point"], "radius_m": radius_m,
            "regions": here["regions"], "grid": here["grid"], "features": features}


def _nearby_feature(kind: str, item: Mapping[str, Any]) -> dict[str, Any]:
    props = {k: v for k, v in item.items() if k not in ("lon", "lat")}
    title = props.get("name") or props.get("full_text") or props.get("code")
    props.update(kind=kind, kind_label=SOURCES[kind].label, title=title)
    geometry = None
    if item.get("lon") is not None:
        geometry = {"type": "Point", "coordinates": [item["lon"], item["lat"]]}
    return {"type": "Feature", "id": f"{kind}:{item['id']}", "geometry": geometry,
            "properties": props}
