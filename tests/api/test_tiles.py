"""Vector tiles over real HTTP: discovery, decoded tiles, scope, ETag/304, cache invalidation by
writes (also in a second server process), credential revocation, bad input."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import mapbox_vector_tile
import pytest
from sqlalchemy import text

from geoserver.database.bootstrap import APP_ROLE, OWNER_ROLE
from geoserver.database.cluster import free_port
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from geoserver.geo.h3cells import cell_int
from tests.support.places import grid_label_point
from tests.support.users import make_user
from tiles.discovery import with_defaults
from tiles.registry import REGISTRY
from tiles.tilemath import tile_of

MVT = "application/vnd.mapbox-vector-tile"
WUMA = "330302006"  # 五马街道
OTHER = "330302024"  # 滨江街道
#: Far from the tiny demo city (another z10 tile), for a tile no write near Lucheng touches.
FAR = (121.60, 29.30)


@pytest.fixture(scope="module")
def commander(module_engine):
    return make_user(module_engine, "tile_city", roles=["city_commander"], scope=["330300"])


@pytest.fixture(scope="module")
def township(module_engine):
    return make_user(module_engine, "tile_wuma", roles=["township_commander"], scope=[WUMA])


@pytest.fixture(scope="module")
def security(module_engine):
    # 安全管理员: region.read only
    return make_user(module_engine, "tile_sec", roles=["security_admin"], scope=["330300"])


def _add_building(engine, code: str, lon: float, lat: float, *, path: str | None = None) -> int:
    d = 0.0001
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        return s.execute(text(
            "INSERT INTO building (code, category, geom, path, h3_r7, h3_r8, h3_r9) VALUES "
            "(:code, 'residential', ST_Multi(ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4490)), "
            "CAST(:path AS ltree), :r7, :r8, :r9) RETURNING id"),
            {"code": code, "x0": lon - d, "y0": lat - d, "x1": lon + d, "y1": lat + d,
             "path": path, "r7": cell_int(lon, lat, 7), "r8": cell_int(lon, lat, 8),
             "r9": cell_int(lon, lat, 9)}).scalar_one()


@contextmanager
def _announced(pg, database: str, table: str = "building") -> Iterator[None]:
    """Wait, after the block's write commits, until its change is announced (NOTIFY arrived).

    Servers learn of a commit through NOTIFY, delivered a fraction of a millisecond after the
    commit returns; a write is "done" for the tile cache once it is announced.
    """
    conn = pg.superuser(database)
    try:
        conn.cursor().execute("LISTEN gridgov_tiles")
        yield
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            conn.poll()
            if any(json.loads(n.payload).get("t") == table for n in conn.notifies):
                return
            select.select([conn], [], [], 0.5)
        raise AssertionError("the write was never announced")
    finally:
        conn.close()


def _tile(http: httpx.Client, user, url: str, **headers: str) -> httpx.Response:
    return http.get(url, headers={**user.headers, **headers})


def _decode(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text
    return mapbox_vector_tile.decode(r.content) if r.content else {}


def _codes(tile: dict, layer: str) -> set[str]:
    return {f["properties"]["code"] for f in tile.get(layer, {}).get("features", [])}


def _url(layer: str, z: int, lon: float, lat: float) -> str:
    x, y = tile_of(lon, lat, z)
    return f"/tiles/{layer}/{z}/{x}/{y}.mvt"


# --- discovery ----------------------------------------------------------------------------


def test_tiles_need_a_login(http) -> None:
    assert http.get("/tiles").status_code == 401
    assert http.get("/tiles/regions/10/855/428.mvt").status_code == 401
    bad = http.get("/tiles", headers={"Authorization": "Bearer ggv_not-a-token"})
    assert bad.status_code == 401


def test_layer_list_shows_readable_layers(http, commander, security) -> None:
    body = http.get("/tiles", headers=commander.headers).json()
    names = {entry["name"] for entry in body["layers"]}
    assert {"regions", "buildings", "key_places", "city_components", "heat_buildings"} <= names
    regions = next(e for e in body["layers"] if e["name"] == "regions")
    assert regions["links"][0]["href"].endswith("/tiles/regions.json")
    assert any(p["name"] == "level" for p in regions["parameters"])
    limited = http.get("/tiles", headers=security.headers).json()
    assert {e["name"] for e in limited["layers"]} == {"regions"}


def test_tilejson_3(http, commander) -> None:
    doc = http.get("/tiles/buildings.json?category=residential", headers=commander.headers).json()
    assert doc["tilejson"] == "3.0.0"
    assert doc["tiles"][0].endswith("/tiles/buildings/{z}/{x}/{y}.mvt?category=residential")
    assert (doc["minzoom"], doc["maxzoom"]) == (12, 18)
    assert doc["vector_layers"][0]["id"] == "buildings"
    assert set(doc["vector_layers"][0]["fields"]) == {"code", "name", "category", "floors"}
    west, south, east, north = doc["bounds"]
    assert 120 < west < east < 121 and 27.5 < south < north < 28.5  # 鹿城区
    regions = http.get("/tiles/regions.json", headers=commander.headers).json()
    assert [v["id"] for v in regions["vector_layers"]] == ["regions", "region_labels"]
    assert http.get("/tiles/nope.json", headers=commander.headers).status_code == 404
    bad = http.get("/tiles/buildings.json?category=castle", headers=commander.headers)
    assert bad.status_code == 422


def test_style_json_uses_our_layers_and_no_online_urls(http, commander, live_server) -> None:
    doc = http.get("/tiles/style.json", headers=commander.headers).json()
    assert doc["version"] == 8
    assert {"regions", "buildings", "key_places", "city_components"} <= set(doc["sources"])
    assert "glyphs" not in doc  # MapLibre renders label text with local fonts
    for layer in doc["layers"][1:]:
        assert layer["source"] in doc["sources"], layer
    for source in doc["sources"].values():
        assert all(url.startswith(live_server) for url in source["tiles"])
    assert doc["layers"][0]["type"] == "background"
    assert "basemap" not in doc["sources"]  # none configured: works offline
    ids = [layer["id"] for layer in doc["layers"]]
    assert ids.index("regions-line") < ids.index("region-labels")


# --- tiles ----------------------------------------------------------------------------------


def test_tile_is_gzipped_mvt_with_properties(http, commander, module_engine) -> None:
    lon, lat = grid_label_point(module_engine, WUMA)
    r = _tile(http, commander, _url("regions", 14, lon, lat))
    assert r.headers["content-type"] == MVT
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["cache-control"] == "private, no-cache"
    tile = _decode(r)
    assert set(tile) == {"regions", "region_labels"}
    levels = {f["properties"]["level"] for f in tile["regions"]["features"]}
    assert levels == {"village", "grid"}
    plain = http.get(_url("regions", 14, lon, lat),
                     headers={**commander.headers, "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert mapbox_vector_tile.decode(plain.content) == tile


def test_etag_and_304(http, commander, module_engine) -> None:
    lon, lat = grid_label_point(module_engine, WUMA)
    url = _url("regions", 13, lon, lat)
    first = _tile(http, commander, url)
    etag = first.headers["etag"]
    again = _tile(http, commander, url, **{"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag and not again.content
    assert again.headers["x-tile-cache"] == "hit"
    other = _tile(http, commander, url, **{"If-None-Match": '"something-else"'})
    assert other.status_code == 200


def test_township_user_gets_nothing_of_another_township(http, township, commander,
                                                        module_engine) -> None:
    lon, lat = grid_label_point(module_engine, OTHER)
    _add_building(module_engine, "API-OTHER-1", lon, lat)
    url_regions, url_buildings = _url("regions", 14, lon, lat), _url("buildings", 16, lon, lat)
    mine = _decode(_tile(http, township, url_regions))
    assert all(c.startswith(WUMA) for c in _codes(mine, "regions") | _codes(mine,
                                                                            "region_labels"))
    assert "API-OTHER-1" not in _codes(_decode(_tile(http, township, url_buildings)),
                                       "buildings")
    # Same URL, wider scope: the city commander sees them (the cache keeps scopes apart).
    assert any(c.startswith(OTHER) for c in _codes(_decode(_tile(http, commander, url_regions)),
                                                   "regions"))
    assert "API-OTHER-1" in _codes(_decode(_tile(http, commander, url_buildings)), "buildings")


def test_bad_input(http, commander, security) -> None:
    h = commander.headers
    assert http.get("/tiles/nope/10/1/1.mvt", headers=h).status_code == 404
    assert http.get("/tiles/regions/10/2000/1.mvt", headers=h).status_code == 404  # x >= 2^z
    assert http.get("/tiles/regions/23/1/1.mvt", headers=h).status_code == 404
    assert http.get("/tiles/buildings/8/213/107.mvt", headers=h).status_code == 404  # < minzoom
    assert http.get("/tiles/regions/-1/0/0.mvt", headers=h).status_code == 404
    assert http.get("/tiles/regions/a/0/0.mvt", headers=h).status_code == 422
    r = http.get("/tiles/regions/10/855/428.mvt?colour=red", headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "colour"
    assert http.get("/tiles/regions/10/855/428.mvt?level=planet", headers=h).status_code == 422
    too_many = ",".join(f"c{chr(97 + i % 26)}" for i in range(30))
    assert http.get(f"/tiles/key_places/14/1/1.mvt?category={too_many}",
                    headers=h).status_code == 422
    assert http.get("/tiles/buildings/14/13684/6862.mvt",
                    headers=security.headers).status_code == 403


def test_filters_change_the_tile(http, commander, module_engine) -> None:
    lon, lat = grid_label_point(module_engine, WUMA)
    url = _url("regions", 15, lon, lat)
    townships = _decode(_tile(http, commander, url + "?level=township"))
    assert {f["properties"]["level"] for f in townships["regions"]["features"]} == {"township"}


# --- caching and invalidation ---------------------------------------------------------------


def _activity(pg, database: str) -> list[tuple]:
    with pg.superuser(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT pid, query_start, state_change FROM pg_stat_activity "
                    "WHERE datname = %s AND application_name IN ('gridgov', 'gridgov-tiles') "
                    "ORDER BY pid", (database,))
        return cur.fetchall()


def test_a_cache_hit_never_touches_the_database(http, commander, module_engine, pg,
                                                module_db) -> None:
    lon, lat = grid_label_point(module_engine, WUMA)
    url = _url("buildings", 15, lon, lat)
    _tile(http, commander, url)
    before = _activity(pg, module_db)
    for _ in range(5):
        r = _tile(http, commander, url)
        assert r.headers["x-tile-cache"] == "hit"
    assert _activity(pg, module_db) == before


def _start_server(pg, database: str, *, app: str = "api.app:app_from_env",
                  **env: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    full = {**os.environ,
            "GRIDGOV_DATABASE_URL": pg.url(OWNER_ROLE, database),
            "GRIDGOV_APP_DATABASE_URL": pg.url(APP_ROLE, database),
            "GRIDGOV_JOBS_ENABLED": "false", "GRIDGOV_ENV": "test",
            "GRIDGOV_LOG_LEVEL": "WARNING", **env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=full, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    return proc, f"http://127.0.0.1:{port}"


def _wait_ready(proc: subprocess.Popen, base: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("a tile server process did not start")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def strict_pair(pg, module_db) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """Two server processes (uvicorn subprocesses) on the same database, strict consistency."""
    started = [_start_server(pg, module_db, GRIDGOV_TILES_CONSISTENCY="strict")
               for _ in range(2)]
    try:
        for proc, base in started:
            _wait_ready(proc, base)
        with httpx.Client(base_url=started[0][1], timeout=30) as a, \
                httpx.Client(base_url=started[1][1], timeout=30) as b:
            yield a, b
    finally:
        for proc, _ in started:
            proc.terminate()
        for proc, _ in started:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_a_write_changes_the_touched_tile_only(strict_pair, commander, module_engine) -> None:
    server, _ = strict_pair
    lon, lat = grid_label_point(module_engine, WUMA)
    _add_building(module_engine, "API-FAR-1", *FAR, path="330300.330302")
    near, far = _url("buildings", 16, lon, lat), _url("buildings", 16, *FAR)
    near_etag = _tile(server, commander, near).headers["etag"]
    far_first = _tile(server, commander, far)
    assert "API-FAR-1" in _codes(_decode(far_first), "buildings")
    _add_building(module_engine, "API-NEW-1", lon, lat)  # committed by another connection
    changed = _tile(server, commander, near)
    assert changed.headers["etag"] != near_etag
    assert "API-NEW-1" in _codes(_decode(changed), "buildings")
    kept = _tile(server, commander, far)
    assert kept.headers["etag"] == far_first.headers["etag"]
    assert kept.headers["x-tile-cache"] == "hit"


def test_no_stale_tile_in_either_process_after_a_write(strict_pair, commander,
                                                       module_engine) -> None:
    lon, lat = grid_label_point(module_engine, WUMA)
    url = _url("buildings", 16, lon + 0.0005, lat)
    for round_ in range(3):
        # Both processes have the tile cached ...
        etags = set()
        for server in strict_pair:
            _tile(server, commander, url)
            cached = _tile(server, commander, url)
            assert cached.headers["x-tile-cache"] == "hit"
            etags.add(cached.headers["etag"])
        assert len(etags) == 1  # same content, same ETag, whichever process answers
        # ... a write commits (through neither of them) ...
        code = f"API-2P-{round_}"
        _add_building(module_engine, code, lon + 0.0005, lat)
        # ... and the very next request to either process shows it.
        for server in strict_pair:
            r = _tile(server, commander, url)
            assert r.headers["x-tile-cache"] == "miss"
            assert code in _codes(_decode(r), "buildings")


def test_notify_mode_server_sees_a_write_once_announced(http, commander, module_engine, pg,
                                                        module_db) -> None:
    lon, lat = grid_label_point(module_engine, WUMA)
    url = _url("buildings", 16, lon - 0.0005, lat)
    _tile(http, commander, url)
    assert _tile(http, commander, url).headers["x-tile-cache"] == "hit"
    with _announced(pg, module_db):
        _add_building(module_engine, "API-NOTIFY-1", lon - 0.0005, lat)
    # Without a round trip the server learns of the commit when its own NOTIFY arrives,
    # a fraction of a millisecond later: poll until then (never a stale tile afterwards).
    deadline = time.monotonic() + 10
    while "API-NOTIFY-1" not in _codes(_decode(r := _tile(http, commander, url)), "buildings"):
        assert time.monotonic() < deadline, "the write never reached the server's cache"
        time.sleep(0.01)
    assert _tile(http, commander, url).headers["etag"] == r.headers["etag"]


def test_every_registered_layer_renders(http, commander, module_engine) -> None:
    lon, lat = grid_label_point(module_engine, WUMA)
    for layer in REGISTRY:
        z = max(layer.minzoom, min(14, layer.maxzoom))
        query = with_defaults(layer)  # a day's tracks need their day
        r = _tile(http, commander, _url(layer.name, z, lon, lat) + (f"?{query}" if query else ""))
        assert r.status_code == 200, (layer.name, r.text)
        names = {v.id for v in layer.vector_layers}
        assert set(_decode(r)) <= names


def test_revoked_token_is_refused_at_once(strict_pair, module_engine) -> None:
    server, _ = strict_pair
    user = make_user(module_engine, "tile_revoked", roles=["city_commander"], scope=["330300"])
    url = "/tiles/regions/10/855/428.mvt"
    assert _tile(server, user, url).status_code == 200
    assert _tile(server, user, url).headers["x-tile-cache"] == "hit"  # credential cached too
    with scoped_session(module_engine, SYSTEM_SCOPE) as s:
        s.execute(text("UPDATE api_token SET revoked_at = now() WHERE user_id = :u"),
                  {"u": user.id})
    assert _tile(server, user, url).status_code == 401
