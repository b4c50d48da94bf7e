"""A small hand-made region tree for tests that need exact, known boundaries.

City 330300 (1.0°×1.0° square at 120–121E, 27.5–28.5N) › county 330302 (west half) and 330303
(east half) › in 330302 two townships 330302006 (south) and 330302025 (north) › each with two
villages (west/east) › each village with two grids (south/north). A dedicated grid 330302006900001
sits in the middle of township 330302006 across its two villages.
"""

from __future__ import annotations

from shapely.geometry import MultiPolygon, box
from sqlalchemy import text
from sqlalchemy.orm import Session


def _insert(session: Session, code: str, name: str, level: str, parent: str | None, path: str,
            geom, grid_type: str | None = None) -> None:
    session.execute(
        text(
            "INSERT INTO region (code, name, level, parent_code, path, geom, grid_type) "
            "VALUES (:c, :n, CAST(:l AS region_level), :p, CAST(:path AS ltree), "
            "ST_GeomFromText(:g, 4490), CAST(:gt AS grid_type))"
        ),
        {"c": code, "n": name, "l": level, "p": parent, "path": path,
         "g": MultiPolygon([geom]).wkt, "gt": grid_type},
    )


def build_test_tree(session: Session) -> dict[str, str]:
    """Insert the tree (needs a session with system scope); return code → path."""
    paths: dict[str, str] = {}

    def add(code, name, level, parent, geom, grid_type=None):
        path = code if parent is None else f"{paths[parent]}.{code}"
        paths[code] = path
        _insert(session, code, name, level, parent, path, geom, grid_type)

    add("330300", "温州市", "city", None, box(120.0, 27.5, 121.0, 28.5))
    add("330302", "鹿城区", "county", "330300", box(120.0, 27.5, 120.5, 28.5))
    add("330303", "龙湾区", "county", "330300", box(120.5, 27.5, 121.0, 28.5))
    add("330302006", "五马街道", "township", "330302", box(120.0, 27.5, 120.5, 28.0))
    add("330302025", "南汇街道", "township", "330302", box(120.0, 28.0, 120.5, 28.5))
    for t, y0 in (("330302006", 27.5), ("330302025", 28.0)):
        for i, x0 in enumerate((120.0, 120.25), start=1):
            v = f"{t}{i:03d}"
            add(v, f"村{v[-4:]}", "village", t, box(x0, y0, x0 + 0.25, y0 + 0.5))
            for j, gy in enumerate((y0, y0 + 0.25), start=1):
                add(f"{v}{j:03d}", f"网格{v[-2:]}{j}", "grid", v,
                    box(x0, gy, x0 + 0.25, gy + 0.25), "general")
    add("330302006900001", "五马市场专属网格", "grid", "330302006",
        box(120.2, 27.6, 120.3, 27.7), "dedicated")
    return paths
