"""Event, patrol-track and density tiles over real HTTP: discovery and style, decoded tiles,
scope, filters and bad input, the clearance and audit of track layers, SLA colours never served
stale, writes invalidating their tiles (also across two server processes, strict and default
consistency), and the cache-hit middleware answering as the route does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

import httpx
import mapbox_vector_tile
import pytest
from sqlalchemy import text

from geoserver.config import GOVERNANCE_TZ, DatabaseSettings, ServerSettings, Settings
from geoserver.database.bootstrap import APP_ROLE, OWNER_ROLE
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from geoserver.geo.h3cells import cell_int
from tests.api.test_tiles import _announced, _start_server, _wait_ready
from tests.support.live import app_with, serve
from tests.support.places import grid_label_point
from tests.support.users import make_user
from tiles.tilemath import tile_of

WUMA = "330302006"  # 五马街道
OTHER = "330302024"
TYPE = "TTE"  # an event type of this module's own: its filter shows only the events made here
FAR = (121.60, 29.30)  # outside the demo city: no event ever lands in its tiles


@pytest.fixture(scope="module")
def server(pg, module_db, module_engine) -> Iterator[httpx.Client]:
    """The app with the cache-hit middleware, in a thread (default consistency)."""
    with scoped_session(module_engine, SYSTEM_SCOPE) as s:
        s.execute(text("INSERT INTO event_type (code, name) VALUES (:c, '瓦片测试')"), {"c": TYPE})
    settings = Settings(
        database=DatabaseSettings(database_url=pg.url(OWNER_ROLE, module_db),
                                  app_database_url=pg.url(APP_ROLE, module_db)),
        server=ServerSettings(env="test", jobs_enabled=False))
    with serve(app_with(settings)) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def city(module_engine):
    return make_user(module_engine, "tev_city", roles=["city_commander"], scope=["330300"])


@pytest.fixture(scope="module")
def township(module_engine):
    return make_user(module_engine, "tev_wuma", roles=["township_commander"], scope=[WUMA])


@pytest.fixture(scope="module")
def worker(module_engine):
    # event.read, patrol.report: no playback clearance
    return make_user(module_engine, "tev_worker", roles=["grid_worker"], scope=[WUMA])


@pytest.fixture(scope="module")
def analyst(module_engine):
    # patrol.read (records and statistics) but not playback
    return make_user(module_engine, "tev_analyst", roles=["analyst"], scope=["330300"])


def _grid_point(engine, township_code: str, offset: float = 0.0) -> tuple[float, float]:
    lon, lat = grid_label_point(engine, township_code)
    return lon + offset, lat


def _add_event(engine, code: str, lon: float, lat: float, *, state: str = "reported",
               amber: str = "NULL", deadline: str = "NULL",
               reported: str = "now()") -> int:
    """Commit an event of this module's type (amber/deadline/reported: SQL expressions)."""
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        return s.execute(text(
            "INSERT INTO event (code, event_type_id, source, severity, state, title, "
            "description, geom, h3_r7, h3_r8, h3_r9, amber_at, deadline_at, reported_at) "
            "VALUES (:code, (SELECT id FROM event_type WHERE code = :t), 'patrol', 'normal', "
            ":st, '瓦片测试', '瓦片测试', ST_SetSRID(ST_Point(:x, :y), 4490), :r7, :r8, :r9, "
            f"{amber}, {deadline}, {reported}) RETURNING id"),
            {"code": code, "t": TYPE, "st": state, "x": lon, "y": lat,
             "r7": cell_int(lon, lat, 7), "r8": cell_int(lon, lat, 8),
             "r9": cell_int(lon, lat, 9)}).scalar_one()


def _set_state(engine, event_id: int, state: str) -> None:
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        s.execute(text("UPDATE event SET state = :s, version = version + 1 WHERE id = :i"),
                  {"s": state, "i": event_id})


def _url(layer: str, z: int, lon: float, lat: float, query: str = f"type={TYPE}") -> str:
    x, y = tile_of(lon, lat, z)
    return f"/tiles/{layer}/{z}/{x}/{y}.mvt" + (f"?{query}" if query else "")


def _get(client: httpx.Client, user, url: str, **headers: str) -> httpx.Response:
    return client.get(url, headers={**user.headers, **headers})


def _decode(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text
    return mapbox_vector_tile.decode(r.content) if r.content else {}


def _events(r: httpx.Response) -> dict[str, dict]:
    return {f["properties"]["code"]: f for f in _decode(r).get("events", {}).get("features", [])}


def _field(r: httpx.Response) -> str:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()["errors"][0]["field"]


# --- discovery --------------------------------------------------------------------------------


def test_layers_listed_with_their_zooms_and_parameters(server, city) -> None:
    body = server.get("/tiles", headers=city.headers).json()
    layers = {e["name"]: e for e in body["layers"]}
    assert {"events", "heat_events", "patrol_tracks", "heat_patrols"} <= set(layers)
    assert {p["name"] for p in layers["events"]["parameters"]} == {
        "type", "state", "source", "severity", "time", "sla"}
    doc = server.get("/tiles/events.json?state=open", headers=city.headers).json()
    zooms = {v["id"]: (v["minzoom"], v["maxzoom"]) for v in doc["vector_layers"]}
    assert zooms == {"events": (14, 18), "event_clusters": (6, 13)}
    assert doc["tiles"][0].endswith("/tiles/events/{z}/{x}/{y}.mvt?state=open")
    assert set(doc["vector_layers"][0]["fields"]) >= {"state", "sla", "type", "source"}


def test_track_layers_default_to_today_in_urls(server, city) -> None:
    today = datetime.now(GOVERNANCE_TZ).date().isoformat()
    doc = server.get("/tiles/patrol_tracks.json", headers=city.headers).json()
    assert doc["tiles"][0].endswith(f"/tiles/patrol_tracks/{{z}}/{{x}}/{{y}}.mvt?date={today}")
    given = server.get("/tiles/patrol_tracks.json?date=2026-01-02&worker=7",
                       headers=city.headers).json()
    assert given["tiles"][0].endswith("?date=2026-01-02&worker=7")
    style = server.get("/tiles/style.json", headers=city.headers).json()
    assert style["sources"]["patrol_tracks"]["tiles"][0].endswith(f"?date={today}")


def test_style_colours_events_by_sla_and_draws_tracks_as_lines(server, city) -> None:
    style = server.get("/tiles/style.json", headers=city.headers).json()
    layers = {entry["id"]: entry for entry in style["layers"]}
    for name in ("events-point", "event-clusters"):
        colour = layers[name]["paint"]["circle-color"]
        assert colour[:2] == ["match", ["get", "sla"]] and "red" in colour, name
    assert layers["events-point"]["source-layer"] == "events"
    assert layers["event-clusters"]["source-layer"] == "event_clusters"
    tracks = layers["patrol-tracks"]
    assert tracks["type"] == "line" and tracks["source"] == "patrol_tracks"
    assert tracks["layout"]["visibility"] == "none"  # off until asked for
    assert {"heat-events", "heat-patrols"} <= set(layers)


def test_track_layers_need_playback_clearance(server, worker, analyst, city, module_engine) -> None:
    lon, lat = _grid_point(module_engine, WUMA)
    for user in (worker, analyst):
        names = {e["name"] for e in server.get("/tiles", headers=user.headers).json()["layers"]}
        assert "patrol_tracks" not in names and "heat_patrols" not in names
        style = server.get("/tiles/style.json", headers=user.headers).json()
        assert "patrol_tracks" not in style["sources"]
        for layer in ("patrol_tracks", "heat_patrols"):
            assert _get(server, user, _url(layer, 14, lon, lat, "date=2026-11-28")).status_code \
                == 403
            assert _get(server, user, f"/tiles/{layer}.json").status_code == 403
    assert "events" in {e["name"] for e in server.get("/tiles", headers=worker.headers).json()[
        "layers"]}
    assert _get(server, city, _url("patrol_tracks", 14, lon, lat, "date=2026-11-28")) \
        .status_code == 200


def _audits(engine, user) -> list[dict]:
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        return [dict(r._mapping) for r in s.execute(text(
            "SELECT action, object_id, detail FROM audit_log WHERE actor_user_id = :u "
            "AND action = 'patrol.tiles' ORDER BY id"), {"u": user.id})]


def test_reading_tracks_is_audited_once_per_view(server, module_engine) -> None:
    viewer = make_user(module_engine, "tev_viewer", roles=["township_commander"], scope=[WUMA])
    lon, lat = _grid_point(module_engine, WUMA)
    for dx in range(3):  # one map view: several tiles, one audit row
        url = _url("patrol_tracks", 16, lon + dx * 0.006, lat, "date=2026-11-28")
        assert _get(server, viewer, url).status_code == 200
    rows = _audits(module_engine, viewer)
    assert len(rows) == 1 and rows[0]["object_id"] == "patrol_tracks"
    assert rows[0]["detail"]["query"] == {"date": "2026-11-28"}
    _get(server, viewer, _url("patrol_tracks", 16, lon, lat, "date=2026-11-27"))
    _get(server, viewer, _url("heat_patrols", 13, lon, lat, ""))
    assert [r["object_id"] for r in _audits(module_engine, viewer)] == [
        "patrol_tracks", "patrol_tracks", "heat_patrols"]


# --- tiles ------------------------------------------------------------------------------------


def test_event_tiles_points_and_clusters(server, city, module_engine) -> None:
    lon, lat = _grid_point(module_engine, WUMA, 0.0011)
    eid = _add_event(module_engine, "TE-P1", lon, lat, amber="now() + interval '1 day'",
                     deadline="now() + interval '2 days'")
    _add_event(module_engine, "TE-P2", lon + 0.0001, lat, deadline="now() - interval '1 hour'")
    feats = _events(_get(server, city, _url("events", 16, lon, lat)))
    assert feats["TE-P1"]["id"] == eid
    assert feats["TE-P1"]["properties"]["sla"] == "green"
    assert feats["TE-P2"]["properties"]["sla"] == "red"
    assert feats["TE-P1"]["properties"]["type"] == TYPE
    clusters = _decode(_get(server, city, _url("events", 12, lon, lat)))
    assert set(clusters) == {"event_clusters"}
    near = [c for c in clusters["event_clusters"]["features"] if c["properties"]["count"] >= 2]
    assert near and near[0]["properties"]["sla"] == "red"


def test_township_commander_sees_only_own_events(server, city, township, module_engine) -> None:
    lon, lat = _grid_point(module_engine, OTHER, 0.0007)
    _add_event(module_engine, "TE-OTHER", lon, lat)
    url = _url("events", 16, lon, lat)
    assert "TE-OTHER" not in _events(_get(server, township, url))  # an empty tile, not an error
    assert "TE-OTHER" in _events(_get(server, city, url))  # same URL, wider scope

    def clustered(user) -> int:
        tile = _decode(_get(server, user, _url("events", 13, lon, lat)))
        return sum(c["properties"]["count"] for c in tile["event_clusters"]["features"])

    assert clustered(city) == clustered(township) + 1  # counts too leave the other one out


def test_filters_over_http(server, city, module_engine) -> None:
    lon, lat = _grid_point(module_engine, WUMA, 0.0023)
    _add_event(module_engine, "TE-F-OPEN", lon, lat, reported="'2026-02-01T09:00:00+08:00'")
    _add_event(module_engine, "TE-F-DONE", lon + 0.0001, lat, state="closed",
               reported="'2026-02-03T09:00:00+08:00'")

    def codes(query: str) -> set[str]:
        found = _events(_get(server, city, _url("events", 16, lon, lat, f"type={TYPE}&{query}")))
        return {c for c in found if c.startswith("TE-F-")}

    assert codes("state=open") == {"TE-F-OPEN"}
    assert codes("sla=green,amber,red") == set()  # no clock runs on it
    assert codes("state=closed") == {"TE-F-DONE"}
    assert codes("state=open,final") == {"TE-F-OPEN", "TE-F-DONE"}
    assert codes("state=final&time=2026-02-02T00:00:00%2B08:00/..") == {"TE-F-DONE"}
    assert codes("state=final&time=../2026-02-02T00:00:00Z") == set()
    assert codes("state=open&source=police_110") == set()


def test_bad_input_names_the_field(server, city, module_engine) -> None:
    lon, lat = _grid_point(module_engine, WUMA)
    bad = {
        "state=lost": "state", "sla=purple": "sla", "type=no%20spaces": "type",
        "time=yesterday": "time", "time=2026-02-01T00:00:00/..": "time",  # no zone
        "severity=huge": "severity", "colour=red": "colour",
    }
    for query, field in bad.items():
        assert _field(_get(server, city, _url("events", 16, lon, lat, query))) == field, query
    tracks = {"": "date", "date=2026-13-01": "date", "date=2026-11-28&worker=abc": "worker",
              "date=2026-11-28&grid=x1": "grid"}
    for query, field in tracks.items():
        r = _get(server, city, _url("patrol_tracks", 15, lon, lat, query))
        assert _field(r) == field, query
    assert _get(server, city, _url("events", 5, lon, lat)).status_code == 404  # < minzoom
    assert _get(server, city, _url("patrol_tracks", 10, lon, lat, "date=2026-11-28")) \
        .status_code == 404
    assert _field(_get(server, city, "/tiles/events.json?state=lost")) == "state"


# --- caching ----------------------------------------------------------------------------------


def test_cache_hits_come_from_the_middleware_and_equal_the_route(server, city,
                                                                 module_engine) -> None:
    lon, lat = _grid_point(module_engine, WUMA, 0.0031)
    url = _url("events", 16, lon, lat, f"type={TYPE}&severity=normal")  # asked for nowhere else
    first = _get(server, city, url)  # rendered by the route
    assert first.headers["x-tile-cache"] == "miss"
    again = _get(server, city, url, **{"X-Request-Id": "tile-hit-1"})
    assert again.headers["x-tile-cache"] == "hit"
    assert again.headers["x-request-id"] == "tile-hit-1"
    assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
    assert again.headers["content-encoding"] == "gzip"
    assert again.headers["cache-control"] == "private, no-cache"
    same = _get(server, city, url, **{"If-None-Match": first.headers["etag"]})
    assert same.status_code == 304 and not same.content
    plain = _get(server, city, url, **{"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.headers["x-tile-cache"] == "hit"
    # Another user with the same scope: not yet known to the credential cache, so the route
    # answers (and resolves the token); the tile itself is shared.
    other = make_user(module_engine, "tev_city2", roles=["city_commander"], scope=["330300"])
    assert _get(server, other, url).headers["etag"] == first.headers["etag"]
    assert _get(server, other, url).headers["x-tile-cache"] == "hit"


def test_new_event_and_state_change_invalidate_exactly_their_tiles(server, city, module_engine, pg,
                                                                    module_db) -> None:
    lon, lat = _grid_point(module_engine, WUMA, 0.0042)
    near, far = _url("events", 16, lon, lat), _url("events", 16, *FAR)
    near_first, far_first = _get(server, city, near), _get(server, city, far)
    assert _get(server, city, far).headers["x-tile-cache"] == "hit"
    with _announced(pg, module_db, "event"):
        eid = _add_event(module_engine, "TE-NEW", lon, lat)
    r = _poll(server, city, near, lambda r: "TE-NEW" in _events(r))
    assert r.headers["etag"] != near_first.headers["etag"]
    kept = _get(server, city, far)
    assert kept.headers["x-tile-cache"] == "hit" and kept.headers["etag"] == far_first.headers[
        "etag"]
    with _announced(pg, module_db, "event"):
        _set_state(module_engine, eid, "accepted")
    r = _poll(server, city, near, lambda r: _events(r)["TE-NEW"]["properties"]["state"]
              == "accepted")
    assert _get(server, city, near).headers["etag"] == r.headers["etag"]  # cached again


def _poll(client: httpx.Client, user, url: str, ok, seconds: float = 10) -> httpx.Response:
    """Request until ``ok``: a default-mode server learns of a commit when its NOTIFY arrives."""
    deadline = time.monotonic() + seconds
    while not ok(r := _get(client, user, url)):
        assert time.monotonic() < deadline, "the write never reached the server's cache"
        time.sleep(0.01)
    return r


def _db_now_past(engine, event_id: int, column: str) -> bool:
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        return bool(s.execute(text(f"SELECT now() >= {column} FROM event WHERE id = :i"),
                              {"i": event_id}).scalar())


def test_a_tile_is_never_served_past_its_colour_change(server, city, module_engine) -> None:
    lon, lat = _grid_point(module_engine, WUMA, 0.0053)
    eid = _add_event(module_engine, "TE-TURN", lon, lat, amber="now() + interval '3 seconds'",
                     deadline="now() + interval '1 hour'")
    url = _url("events", 16, lon, lat)
    seen = _events(_get(server, city, url))["TE-TURN"]["properties"]["sla"]
    again = _get(server, city, url)
    if not _db_now_past(module_engine, eid, "amber_at"):  # (a very slow machine may be past it)
        assert seen == "green" and again.headers["x-tile-cache"] == "hit"
    while not _db_now_past(module_engine, eid, "amber_at"):  # no write happens meanwhile
        time.sleep(0.2)
    turned = _get(server, city, url)
    assert turned.headers["x-tile-cache"] == "miss"
    assert _events(turned)["TE-TURN"]["properties"]["sla"] == "amber"
    assert _get(server, city, url).headers["x-tile-cache"] == "hit"  # amber until the deadline


# --- two server processes -----------------------------------------------------------------------


def _pair(pg, database: str, **env: str) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    started = [_start_server(pg, database, app="api.app:app_from_env", **env)
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
            proc.wait(15)


@pytest.fixture(scope="module")
def strict_pair(pg, module_db, server) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """Two server processes (with the cache-hit middleware) in strict consistency."""
    yield from _pair(pg, module_db, GRIDGOV_TILES_CONSISTENCY="strict")


@pytest.fixture(scope="module")
def notify_pair(pg, module_db, server) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """Two server processes (with the cache-hit middleware) in the default consistency."""
    yield from _pair(pg, module_db)


def _cached_in_both(pair, user, url: str) -> str:
    etags = set()
    for proc in pair:
        _get(proc, user, url)
        r = _get(proc, user, url)
        assert r.headers["x-tile-cache"] == "hit"
        etags.add(r.headers["etag"])
    assert len(etags) == 1  # same content, same ETag, whichever process answers
    return etags.pop()


def test_strict_no_stale_event_tile_in_either_process(strict_pair, city, module_engine) -> None:
    lon, lat = _grid_point(module_engine, WUMA, 0.0064)
    url = _url("events", 16, lon, lat)
    for round_ in range(2):
        _cached_in_both(strict_pair, city, url)
        eid = _add_event(module_engine, f"TE-2P-{round_}", lon, lat)  # through neither process
        for proc in strict_pair:  # the very next request shows it, with no waiting
            r = _get(proc, city, url)
            assert r.headers["x-tile-cache"] == "miss"
            assert f"TE-2P-{round_}" in _events(r)
        _cached_in_both(strict_pair, city, url)
        _set_state(module_engine, eid, "accepted")
        for proc in strict_pair:
            assert _events(_get(proc, city, url))[f"TE-2P-{round_}"]["properties"][
                "state"] == "accepted"


def test_strict_revoked_token_is_refused_by_the_middleware_path(strict_pair, module_engine) -> None:
    user = make_user(module_engine, "tev_revoked", roles=["city_commander"], scope=["330300"])
    url = "/tiles/events/12/3421/1715.mvt"
    proc, _ = strict_pair
    assert _get(proc, user, url).status_code == 200
    assert _get(proc, user, url).headers["x-tile-cache"] == "hit"  # credential cached too
    with scoped_session(module_engine, SYSTEM_SCOPE) as s:
        s.execute(text("UPDATE api_token SET revoked_at = now() WHERE user_id = :u"),
                  {"u": user.id})
    assert _get(proc, user, url).status_code == 401


def test_default_mode_no_stale_tile_in_either_process_once_announced(notify_pair, city,
                                                                     module_engine, pg,
                                                                     module_db) -> None:
    """Default consistency: a process answers from memory with no round trip at all, so it
    learns of a commit when the commit's NOTIFY reaches it (a fraction of a millisecond after
    the commit returns). Once it has, neither process serves the old tile again."""
    lon, lat = _grid_point(module_engine, WUMA, 0.0075)
    url = _url("events", 16, lon, lat)
    old = _cached_in_both(notify_pair, city, url)
    with _announced(pg, module_db, "event"):
        _add_event(module_engine, "TE-NOTIFY", lon, lat)
    for proc in notify_pair:
        new = _poll(proc, city, url, lambda r: "TE-NOTIFY" in _events(r)).headers["etag"]
        assert new != old
        for _ in range(3):  # and never the old one again
            r = _get(proc, city, url)
            assert r.headers["etag"] == new and r.headers["x-tile-cache"] == "hit"
