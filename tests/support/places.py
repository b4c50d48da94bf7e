"""Places that tests find by rule rather than by code: a point inside a region, the first grid
of a township, a grid's label point, a ring just inside a grid."""

from __future__ import annotations

import shapely
from shapely.geometry import LineString, Polygon
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from geoserver.geo.crs import to_metric

TOWNSHIP = "330302006"  # 五马街道


def point_in(engine: Engine, region_code: str) -> tuple[float, float]:
    """Return a point inside a region (lon, lat in storage CRS, which is WGS84 at metre level)."""
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        return point_in_session(s, region_code)


def point_in_session(session: Session, region_code: str) -> tuple[float, float]:
    """Return a point inside a region, read in a session's own transaction and scope."""
    row = session.execute(text(
        "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM region "
        "WHERE code = :c AND valid_to IS NULL) x"), {"c": region_code}).one()
    return float(row[0]), float(row[1])


def grid_of_township(engine: Engine, township: str = TOWNSHIP, *,
                     grid_type: str | None = None) -> str:
    """Return the first grid code under a township, of one grid type (网格类型) if given."""
    # The first grid of 五马 is a key grid (重点网格): callers that need a general one say so.
    typed, params = "", {"p": township + "%"}
    if grid_type is not None:
        typed, params["t"] = " AND grid_type = CAST(:t AS grid_type)", grid_type
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        return str(s.execute(text(
            "SELECT code FROM region WHERE level = 'grid' AND valid_to IS NULL AND code LIKE :p"
            f"{typed} ORDER BY code LIMIT 1"), params).scalar_one())


def grid_label_point(engine: Engine, township: str) -> tuple[float, float]:
    """Return the label point of a township's first grid that is not dedicated (专属网格)."""
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        row = s.execute(text(
            "SELECT ST_X(label_point), ST_Y(label_point) FROM region WHERE valid_to IS NULL "
            "AND level = 'grid' AND grid_type <> 'dedicated' AND code LIKE :t || '%' "
            "ORDER BY code LIMIT 1"), {"t": township}).one()
    return row[0], row[1]


def ring_inside(engine: Engine, grid: str, inset_m: float = 20) -> LineString:
    """Return the outline of a grid moved ``inset_m`` inwards, in metres (EPSG:4549)."""
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        return ring_inside_session(s, grid, inset_m)


def ring_inside_session(session: Session, grid: str, inset_m: float = 20) -> LineString:
    """Return the outline of a grid moved ``inset_m`` inwards, in metres (EPSG:4549).

    A patrol walked along it stays inside the grid; of a grid in several parts, the outline of
    the largest.
    """
    wkb = session.execute(text("SELECT ST_AsBinary(geom) FROM region WHERE code = :c "
                               "AND valid_to IS NULL"), {"c": grid}).scalar()
    poly = to_metric(shapely.from_wkb(bytes(wkb))).buffer(-inset_m)
    if poly.geom_type == "MultiPolygon":
        poly = max(poly.geoms, key=lambda p: p.area)
    assert isinstance(poly, Polygon)
    return LineString(poly.exterior.coords)
