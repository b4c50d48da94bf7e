"""Base data (基础数据) in the service tests: actors, shapes and points of the test region tree.

The test region tree (tests/support/regions.py): township 330302006 (五马, 120.0–120.5E,
27.5–28.0N) with villages 330302006001 (west) / 330302006002 (east), each with grids 001
(south) / 002 (north); township 330302025 (南汇) north of it.
"""

from __future__ import annotations

from collections.abc import Iterable

from geoserver.config import SecuritySettings
from geoserver.database.engine import set_scope
from geoserver.domain.principal import Principal
from geoserver.security.crypto import crypto_from_settings

KINDS = ("building", "residence", "household", "person", "organization", "key_place",
         "city_component", "enterprise")
WRITE_ALL = frozenset(f"{p}.{a}" for p in ("building", "person", "place", "enterprise")
                      for a in ("read", "write"))

# Points well inside known grids of the test tree.
IN_GRID_W_S = (120.1, 27.6)    # 330302006001001
IN_GRID_W_N = (120.1, 27.9)    # 330302006001002
IN_GRID_E_S = (120.4, 27.6)    # 330302006002001
IN_NANHUI = (120.1, 28.2)      # township 330302025
OUTSIDE_CITY = (122.0, 27.6)


def make_actor(scope: Iterable[str] = ("",), *, permissions: Iterable[str] = WRITE_ALL,
               categories: Iterable[str] = ()) -> Principal:
    """Return an actor with a scope (region paths), permissions and special populations."""
    return Principal(user_id=1, username="tester", scope=tuple(scope),
                     permissions=frozenset(permissions),
                     special_categories=frozenset(categories))


def square(lon: float, lat: float, d: float = 0.0004) -> dict:
    """Return a GeoJSON square of half-side ``d`` degrees around a point."""
    return {"type": "Polygon", "coordinates": [[
        [lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d],
        [lon - d, lat - d]]]}


def point(lon: float, lat: float) -> dict:
    """Return a GeoJSON point."""
    return {"type": "Point", "coordinates": [lon, lat]}


def scoped(db, *paths: str) -> Principal:
    """Narrow the session's RLS scope and return an actor with the same scope."""
    set_scope(db, list(paths))
    return make_actor(paths)


def system_actor() -> Principal:
    """Everything, everywhere, every special population, unmasked reads allowed."""
    return make_actor(("",), categories=("*",),
                      permissions=WRITE_ALL | {"person.read_sensitive"})


def make_crypto():
    """Return the default cipher, as the settings make it."""
    return crypto_from_settings(SecuritySettings())
