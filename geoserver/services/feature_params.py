"""OGC API Features request parameters: CRS, bbox, datetime, limit, sortby, properties, cursors.

Pure parsing (no I/O). Every malformed value raises InvalidInput naming the parameter, which the
OGC routes turn into a 400 with the OGC exception shape.

Axis order follows the CRS definitions, as OGC API Features Part 2 requires: CRS84 is lon,lat;
EPSG:4490 and EPSG:4326 are lat,lon; EPSG:3857 is east,north; EPSG:4549 (CGCS2000 3-degree GK,
CM 120°E) is north,east. A swap between 4326 and 4490 changes nothing numerically, so the
projected 4549 is the one that shows a wrong axis order at once.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from geoserver.config import GOVERNANCE_TZ
from geoserver.errors import InvalidInput

DEFAULT_LIMIT = 10
MAX_LIMIT = 10_000


# --- coordinate reference systems ------------------------------------------------------------


@dataclass(frozen=True)
class CrsDef:
    """A CRS the OGC API serves: its URI, the SRID used in SQL, and its axis order."""

    uri: str
    #: SRID the SQL works in. CRS84 and EPSG:4326 use the stored 4490 numbers unchanged: at
    #: metre level CGCS2000 coincides with WGS84 (see DESIGN §3), and a datum shift through
    #: PROJ would only add noise.
    srid: int
    #: Whether the CRS's first axis is northing/latitude (coordinates are flipped on the way).
    flip: bool
    #: Decimal digits written in GeoJSON (7 ≈ 1 cm in degrees; 2 = 1 cm in metres).
    digits: int
    geographic: bool

    @property
    def header(self) -> str:
        """Return the ``Content-Crs`` header value."""
        return f"<{self.uri}>"


CRS84 = CrsDef("http://www.opengis.net/def/crs/OGC/1.3/CRS84", 4490, False, 7, True)
EPSG4490 = CrsDef("http://www.opengis.net/def/crs/EPSG/0/4490", 4490, True, 7, True)
EPSG4326 = CrsDef("http://www.opengis.net/def/crs/EPSG/0/4326", 4490, True, 7, True)
EPSG3857 = CrsDef("http://www.opengis.net/def/crs/EPSG/0/3857", 3857, False, 2, False)
EPSG4549 = CrsDef("http://www.opengis.net/def/crs/EPSG/0/4549", 4549, True, 2, False)

SUPPORTED_CRS = (CRS84, EPSG4490, EPSG4326, EPSG3857, EPSG4549)
STORAGE_CRS = EPSG4490

_CRS_BY_KEY: dict[str, CrsDef] = {}
for _c in SUPPORTED_CRS:
    _CRS_BY_KEY[_c.uri.lower()] = _c
for _key, _c in (("crs84", CRS84), ("ogc:crs84", CRS84), ("urn:ogc:def:crs:ogc:1.3:crs84", CRS84),
                 ("epsg:4490", EPSG4490), ("epsg:4326", EPSG4326), ("epsg:3857", EPSG3857),
                 ("epsg:4549", EPSG4549)):
    _CRS_BY_KEY[_key] = _c
    if _key.startswith("epsg:"):
        _CRS_BY_KEY["urn:ogc:def:crs:epsg::" + _key[5:]] = _c


def parse_crs(value: str | None, *, param: str = "crs") -> CrsDef:
    """Return the CRS named by a URI, CURIE (``[EPSG:4490]``) or ``EPSG:nnnn``; default CRS84."""
    if value is None or value == "":
        return CRS84
    key = value.strip().lower().replace("https://", "http://", 1)
    if key.startswith("[") and key.endswith("]"):
        key = key[1:-1]
    try:
        return _CRS_BY_KEY[key]
    except KeyError:
        accepted = ", ".join(c.uri for c in SUPPORTED_CRS)
        raise InvalidInput(f"unsupported {param} {value!r}; supported: {accepted}",
                           field=param) from None


# --- bbox ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BBox:
    """A bounding box in x/y (east/north) order of its CRS's SRID."""

    minx: float
    miny: float
    maxx: float
    maxy: float
    crs: CrsDef


def parse_bbox(value: str | None, crs: CrsDef) -> BBox | None:
    """Parse ``bbox`` (4 or 6 numbers, in the axis order of ``crs``) into an x/y box."""
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) not in (4, 6):
        raise InvalidInput("bbox must have 4 numbers (or 6 with heights)", field="bbox")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise InvalidInput("bbox must be comma-separated numbers", field="bbox") from None
    if not all(math.isfinite(n) for n in nums):
        raise InvalidInput("bbox numbers must be finite", field="bbox")
    if len(nums) == 6:  # heights are ignored: nothing we store has a z
        nums = [nums[0], nums[1], nums[3], nums[4]]
    a0, b0, a1, b1 = nums
    x0, y0, x1, y1 = (b0, a0, b1, a1) if crs.flip else (a0, b0, a1, b1)
    if x0 > x1 or y0 > y1:
        raise InvalidInput("bbox lower corner must not exceed the upper corner", field="bbox")
    if crs.geographic and not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
        raise InvalidInput("bbox is outside longitude -180..180 / latitude -90..90 (check the "
                           "axis order of bbox-crs)", field="bbox")
    return BBox(x0, y0, x1, y1, crs)


# --- datetime ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeRange:
    """A closed instant or interval; ``None`` ends are open. ``end_exclusive`` for whole days."""

    start: datetime | None
    end: datetime | None
    end_exclusive: bool = False


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _moment(text: str, *, end: bool) -> tuple[datetime, bool]:
    """Parse one RFC 3339 date or date-time; return (moment, whether it ends a whole day)."""
    text = text.strip()
    try:
        if _DATE_ONLY.match(text):
            # A date is a whole governance day (Asia/Shanghai), whatever the server's zone.
            day = datetime.combine(date.fromisoformat(text), time(), GOVERNANCE_TZ)
            return (day + timedelta(days=1), True) if end else (day, False)
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise InvalidInput(f"not an RFC 3339 date or date-time: {text!r}",
                           field="datetime") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=GOVERNANCE_TZ)
    return moment, False


def parse_datetime(value: str | None) -> TimeRange | None:
    """Parse ``datetime``: an instant, or ``start/end`` with ``..`` (or empty) for open ends."""
    if value is None or value.strip() in ("", "../..", "/"):
        return None
    if "/" not in value:
        if _DATE_ONLY.match(value.strip()):
            day_start, _ = _moment(value, end=False)
            day_end, _ = _moment(value, end=True)
            return TimeRange(day_start, day_end, end_exclusive=True)
        moment, _ = _moment(value, end=False)
        return TimeRange(moment, moment)
    if value.count("/") != 1:
        raise InvalidInput("datetime interval must be start/end", field="datetime")
    left, right = value.split("/")
    start: datetime | None = None
    if left.strip() not in ("", ".."):
        start, _ = _moment(left, end=False)
    end: datetime | None = None
    exclusive = False
    if right.strip() not in ("", ".."):
        end, exclusive = _moment(right, end=True)
    if start is not None and end is not None and (start > end or (exclusive and start == end)):
        raise InvalidInput("datetime interval starts after it ends", field="datetime")
    return TimeRange(start, end, exclusive)


# --- limit, properties, sortby -------------------------------------------------------------


def parse_limit(value: str | None) -> int:
    """Parse ``limit`` (1..; values above the maximum are served at the maximum, as OGC says)."""
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise InvalidInput("limit must be an integer", field="limit") from None
    if limit < 1:
        raise InvalidInput("limit must be at least 1", field="limit")
    return min(limit, MAX_LIMIT)


def parse_offset(value: str | None) -> int:
    """Parse ``offset`` (0 or more)."""
    if value is None or value == "":
        return 0
    try:
        offset = int(value)
    except ValueError:
        raise InvalidInput("offset must be an integer", field="offset") from None
    if offset < 0:
        raise InvalidInput("offset must not be negative", field="offset")
    return offset


def parse_names(value: str | None, known: tuple[str, ...], *, param: str) -> tuple[str, ...] | None:
    """Parse a comma-separated list of names, each of which must be in ``known``."""
    if value is None:
        return None
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidInput(f"unknown {param}: {', '.join(unknown)}; known: {', '.join(known)}",
                           field=param)
    return names


@dataclass(frozen=True)
class SortItem:
    """One sort key: a property name and its direction."""

    name: str
    descending: bool = False


def parse_sortby(value: str | None, sortable: tuple[str, ...]) -> tuple[SortItem, ...]:
    """Parse ``sortby`` (``+name,-updated_at``; ``name DESC`` is accepted too)."""
    if value is None or not value.strip():
        return ()
    items: list[SortItem] = []
    for raw in value.split(","):
        token = raw.strip()
        descending = False
        if token[:1] in "+-" and token:
            descending, token = token[0] == "-", token[1:].strip()
        elif " " in token:
            token, _, direction = token.partition(" ")
            if direction.strip().upper() not in ("ASC", "DESC"):
                raise InvalidInput(f"bad sort direction in {raw!r}", field="sortby")
            descending = direction.strip().upper() == "DESC"
        if token not in sortable:
            raise InvalidInput(f"cannot sort by {token!r}; sortable: {', '.join(sortable)}",
                               field="sortby")
        if any(i.name == token for i in items):
            raise InvalidInput(f"{token!r} appears twice in sortby", field="sortby")
        items.append(SortItem(token, descending))
    return tuple(items)


# --- paging cursors ------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: after/before a sort key (keyset), or at an offset.

    ``matched`` carries the first page's ``numberMatched`` so that deep pages never recount.
    """

    keys: tuple[Any, ...] | None = None
    backward: bool = False
    offset: int = 0
    matched: int | None = None

    def encode(self) -> str:
        """Return the opaque token carried by ``next``/``prev`` links."""
        body: dict[str, Any] = {}
        if self.keys is not None:
            body["k"] = [_jsonable(k) for k in self.keys]
            body["b"] = int(self.backward)
        else:
            body["o"] = self.offset
        if self.matched is not None:
            body["m"] = self.matched
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else value


def decode_cursor(token: str | None) -> Cursor | None:
    """Decode a ``cursor`` token (the key values are checked against types by the caller)."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidInput("cursor is not valid", field="cursor") from None
    if not isinstance(body, dict):
        raise InvalidInput("cursor is not valid", field="cursor")
    matched = body.get("m")
    if matched is not None and (not isinstance(matched, int) or matched < 0):
        raise InvalidInput("cursor is not valid", field="cursor")
    if "k" in body:
        keys = body["k"]
        if not isinstance(keys, list) or not keys or len(keys) > 8:
            raise InvalidInput("cursor is not valid", field="cursor")
        return Cursor(keys=tuple(keys), backward=bool(body.get("b")), matched=matched)
    offset = body.get("o")
    if not isinstance(offset, int) or offset < 0:
        raise InvalidInput("cursor is not valid", field="cursor")
    return Cursor(offset=offset, matched=matched)
