"""Pure parts of the tile service: versions per z10 tile, caches, query parsing, tile maths."""

from __future__ import annotations

import json

import pytest

from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput
from tiles import discovery
from tiles.cache import CredentialCache, DiskCache, MemoryCache, Tile, TileKey, VersionBook
from tiles.registry import REGISTRY, Param, Registry
from tiles.service import normalize_scope
from tiles.settings import TileSettings
from tiles.tilemath import tile_bounds, tile_of, tiles_in_bbox, valid_tile


def test_version_of_a_deep_tile_is_its_z10_ancestors() -> None:
    book = VersionBook()
    book.load([("building", 855, 428, 3), ("building", 856, 428, 7)])
    x16, y16 = 855 * 64 + 10, 428 * 64 + 63
    assert book.version("building", 16, x16, y16) == 3
    assert book.version("building", 10, 856, 428) == 7
    assert book.version("building", 12, 856 * 4, 429 * 4) == 0
    assert book.version("event", 16, x16, y16) == 0
    book.apply("building", [(855, 428, 4), (855, 428, 2)])  # an old announcement is ignored
    assert book.version("building", 16, x16, y16) == 4


def test_version_of_a_shallow_tile_changes_with_any_z10_tile_under_it_or_near() -> None:
    book = VersionBook()
    book.load([("region", 855, 428, 1)])
    x8, y8 = 855 >> 2, 428 >> 2
    v = book.version("region", 8, x8, y8)
    book.apply("region", [(x8 * 4 + 3, y8 * 4 + 3, 1)])  # inside the z8 tile
    assert book.version("region", 8, x8, y8) > v
    v = book.version("region", 8, x8, y8)
    book.apply("region", [(x8 * 4 + 4, y8 * 4, 1)])  # just east: within the margin
    assert book.version("region", 8, x8, y8) > v
    v = book.version("region", 8, x8, y8)
    book.apply("region", [(x8 * 4 + 9, y8 * 4, 1)])  # two z10 tiles east: not this tile
    assert book.version("region", 8, x8, y8) == v


def test_table_epoch_changes_every_tile() -> None:
    book = VersionBook()
    book.load([("building", 855, 428, 1)])
    before = (book.version("building", 16, 0, 0), book.version("building", 3, 6, 3))
    book.apply("building", [(-1, -1, 1)])
    after = (book.version("building", 16, 0, 0), book.version("building", 3, 6, 3))
    assert all(a > b for a, b in zip(after, before, strict=True))


def _key(**kw: object) -> TileKey:
    base = {"layer": "buildings", "versions": (1,), "z": 16, "x": 1, "y": 2, "query": "{}",
            "scope": ("",)}
    return TileKey(**(base | kw))  # type: ignore[arg-type]


def test_memory_cache_is_lru_bounded_by_bytes() -> None:
    cache = MemoryCache(max_bytes=3 * (100 + 200))
    tiles = {i: Tile(bytes(100), f'"{i}"', 300) for i in range(4)}
    for i in range(3):
        cache.put(_key(x=i), tiles[i])
    assert cache.get(_key(x=0)) == tiles[0]  # 0 is now the most recent
    cache.put(_key(x=3), tiles[3])
    assert cache.get(_key(x=1)) is None and cache.get(_key(x=0)) is not None
    assert cache.get(_key(x=0, versions=(2,))) is None  # a new version is a miss


def test_disk_cache_keeps_one_version_per_slot(tmp_path) -> None:
    disk = DiskCache(tmp_path, "db-1-abc")
    disk.put(_key(), Tile(b"gz1", '"a"', 10))
    assert disk.get(_key()) == Tile(b"gz1", '"a"', 10)
    disk.put(_key(versions=(2,)), Tile(b"gz2", '"b"', 12))
    assert disk.get(_key()) is None and disk.get(_key(versions=(2,))).etag == '"b"'
    assert len(list(tmp_path.rglob("*.mvt.gz"))) == 1
    assert disk.get(_key(scope=("330300",))) is None  # scopes never share a slot


def test_credential_cache_forgets_on_clear_and_refuses_results_from_before() -> None:
    cache = CredentialCache(ttl=60)
    who = Principal(user_id=1, username="u", scope=("330300",))
    key = CredentialCache.key_for("ggv_token", None)
    assert key and "ggv_token" not in key
    gen = cache.generation
    cache.put(key, who, gen)
    assert cache.get(key) == who
    cache.clear()
    assert cache.get(key) is None
    cache.put(key, who, gen)  # resolved before the clear: not kept
    assert cache.get(key) is None
    assert CredentialCache.key_for(None, None) is None


def test_scope_normalization() -> None:
    assert normalize_scope(["330300.330302", "330300", "330300.330302"]) == ("330300",)
    assert normalize_scope(["b", "a.c", "a"]) == ("a", "b")
    assert normalize_scope(["330300", ""]) == ("",)
    assert normalize_scope([]) == ()


def test_query_parsing_is_canonical_and_strict() -> None:
    layer = REGISTRY.get("buildings")
    assert layer.parse_query({"category": "office,residential,office"}) == \
        '{"category":["office","residential"]}'
    assert json.loads(layer.sql_query("{}")) == {"limit": layer.limit}
    with pytest.raises(InvalidInput) as e:
        layer.parse_query({"limit": "99999"})
    assert e.value.problems[0].field == "limit"
    with pytest.raises(InvalidInput):
        layer.parse_query({"category": "castle"})


def test_interval_and_day_parameters() -> None:
    when = Param("datetime", "interval", "reported between")
    assert when.parse("2026-01-01T00:00:00+08:00/..") == {
        "datetime_from": "2026-01-01T00:00:00+08:00", "datetime_to": None}
    for bad in ("2026-01-01", "2026-01-02T00:00:00Z/2026-01-01T00:00:00Z",
                "2026-01-01T00:00:00/..", "yesterday/.."):
        with pytest.raises(InvalidInput):
            when.parse(bad)
    day = Param("day", "day", "patrol day")
    assert day.parse("2026-03-01") == {"day": "2026-03-01"}
    with pytest.raises(InvalidInput):
        day.parse("2026-13-01")


def test_registry_refuses_duplicates_and_bad_names() -> None:
    reg = Registry()
    layer = REGISTRY.get("regions")
    reg.register(layer)
    with pytest.raises(ValueError):
        reg.register(layer)
    from dataclasses import replace

    with pytest.raises(ValueError):
        reg.register(replace(layer, name="x", function="drop table"))


def test_tile_maths() -> None:
    assert tile_of(120.7, 28.02, 10) == (855, 428)
    west, south, east, north = tile_bounds(10, 855, 428)
    assert west <= 120.7 <= east and south <= 28.02 <= north
    assert valid_tile(0, 0, 0) and not valid_tile(3, 8, 0) and not valid_tile(23, 0, 0)
    box = (120.6, 27.9, 120.8, 28.1)
    covering = set(tiles_in_bbox(box, 10))
    assert (855, 428) in covering
    for x, y in covering:
        w, s, e, n = tile_bounds(10, x, y)
        assert w < box[2] and e > box[0] and s < box[3] and n > box[1]
    assert len(covering) == len({(x, y) for x in range(850, 860) for y in range(425, 432)
                                 if _overlaps(tile_bounds(10, x, y), box)})


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and a[2] > b[0] and a[1] < b[3] and a[3] > b[1]


def test_style_orders_layers_and_adds_a_configured_basemap() -> None:
    settings = TileSettings(basemap_url="http://tdt.intranet/{z}/{x}/{y}.png")
    doc = discovery.style(list(REGISTRY), "http://h", settings, bounds=(120, 27, 121, 28))
    ids = [layer["id"] for layer in doc["layers"]]
    assert ids[:2] == ["background", "basemap"]
    assert ids.index("heat-buildings") < ids.index("regions-fill") < ids.index("region-labels")
    assert doc["center"] == [120.5, 27.5]
    assert all("_rank" not in layer for layer in doc["layers"])


def test_time_dependent_layers_expire_by_their_max_age(monkeypatch) -> None:
    from dataclasses import replace

    from tiles.service import TileService

    svc = TileService("postgresql://unused", TileSettings())
    layer = replace(REGISTRY.get("buildings"), name="sla", max_age=60)
    clock = [960_000.0]  # a multiple of 60
    monkeypatch.setattr("tiles.service.time.time", lambda: clock[0])
    first = svc.key(layer, 16, 1, 2, "{}", ("",))
    clock[0] += 30
    assert svc.key(layer, 16, 1, 2, "{}", ("",)) == first
    clock[0] += 40
    assert svc.key(layer, 16, 1, 2, "{}", ("",)) != first
    plain = REGISTRY.get("buildings")
    assert svc.key(plain, 16, 1, 2, "{}", ("",)).versions == (0,)
