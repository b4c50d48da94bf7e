"""The leak matrix: a user of township A asks for township B's objects every way the API
offers — by id, list, bbox, search text, tile, export, OGC items — and gets nothing. A grid
worker sees only their grid. The same holds in the database as the app role with a scope."""

from __future__ import annotations

import csv
import io

import mapbox_vector_tile
import psycopg2
import pytest

from geoserver.config import SecuritySettings
from geoserver.database.bootstrap import APP_ROLE, OWNER_ROLE
from geoserver.database.engine import scope_literal
from geoserver.security.crypto import crypto_from_settings
from tests.support.users import grid_worker, township_commander
from tiles.tilemath import tile_of

A, B = "330302006", "330302025"  # 五马街道, 南汇街道


@pytest.fixture(scope="module")
def world(pg, module_db, module_engine):
    conn = psycopg2.connect(pg.url(OWNER_ROLE, module_db))
    with conn.cursor() as cur:
        cur.execute("SELECT code, path::text, ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), "
                    "ST_YMax(geom), name FROM region WHERE valid_to IS NULL AND level = 'grid' "
                    "AND grid_type <> 'dedicated' AND parent_code LIKE %s ORDER BY code LIMIT 1",
                    (B + "%",))
        b_grid = cur.fetchone()
        cur.execute("SELECT code, path::text FROM region WHERE valid_to IS NULL AND level = 'grid' "
                    "AND grid_type <> 'dedicated' AND parent_code LIKE %s ORDER BY code LIMIT 2",
                    (A + "%",))
        a_grids = cur.fetchall()
        cur.execute("SELECT name FROM region WHERE code = %s", (B,))
        b_name = cur.fetchone()[0]
    conn.close()
    user_a = township_commander(module_engine, "leak_a", A, on_duty=False)
    worker = grid_worker(module_engine, "leak_worker", a_grids[0][0])
    return {"b_grid": b_grid, "a_grids": a_grids, "b_name": b_name, "a": user_a,
            "worker": worker}


def test_by_id(http, world) -> None:
    h = world["a"].headers
    code = world["b_grid"][0]
    for path in (f"/api/v1/regions/{code}", f"/api/v1/regions/{code}/info",
                 f"/api/v1/regions/{B}", f"/ogc/collections/grids/items/{code}"):
        r = http.get(path, headers=h)
        assert r.status_code == 404, (path, r.status_code)


def test_by_list_bbox_and_text(http, world) -> None:
    h = world["a"].headers
    _, _, x0, y0, x1, y1, _ = world["b_grid"]
    bbox = f"{x0},{y0},{x1},{y1}"
    items = http.get("/api/v1/regions", params={"bbox": bbox, "limit": 1000}, headers=h).json()
    assert all(i["path"].split(".")[2] == A for i in items["items"])
    by_text = http.get("/api/v1/regions", params={"q": world["b_name"]}, headers=h).json()
    assert by_text["total"] == 0
    ogc = http.get("/ogc/collections/grids/items", params={"bbox": bbox, "limit": 1000},
                   headers=h)
    if ogc.status_code == 200:
        assert all(str(f["id"]).startswith(A) for f in ogc.json()["features"])


def test_by_export(http, world) -> None:
    r = http.get("/api/v1/grids/export", params={"format": "csv"}, headers=world["a"].headers)
    body = r.content.decode("utf-8-sig").split("\n", 1)[1]
    codes = [row["code"] for row in csv.DictReader(io.StringIO(body))]
    assert codes and not any(c.startswith(B) for c in codes)


def test_by_tile(http, world) -> None:
    _, _, x0, y0, x1, y1, _ = world["b_grid"]
    x, y = tile_of((x0 + x1) / 2, (y0 + y1) / 2, 15)
    r = http.get(f"/tiles/regions/15/{x}/{y}.mvt", headers=world["a"].headers)
    assert r.status_code in (200, 204)
    if r.status_code == 200 and r.content:
        decoded = mapbox_vector_tile.decode(r.content)
        codes = [f["properties"].get("code", "") for layer in decoded.values()
                 for f in layer["features"]]
        assert not any(str(c).startswith(B) for c in codes)


def test_grid_worker_sees_only_their_grid(http, world) -> None:
    h = world["worker"].headers
    mine, other = world["a_grids"][0][0], world["a_grids"][1][0]
    assert http.get(f"/api/v1/regions/{mine}", headers=h).status_code == 200
    assert http.get(f"/api/v1/regions/{other}", headers=h).status_code == 404
    listed = http.get("/api/v1/regions", params={"limit": 1000}, headers=h).json()
    assert {i["code"] for i in listed["items"]} == {mine}


def test_same_in_the_database_as_app_role(pg, module_db, world) -> None:
    conn = psycopg2.connect(pg.url(APP_ROLE, module_db))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('gridgov.scope', %s, true)",
                        (scope_literal([f"330300.330302.{A}"]),))
            tables = ["region", "app_user", "staff_assignment", "org_unit"]
            # Every table under row-level security that carries a region path.
            cur.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid "
                        "AND a.attname = 'path' WHERE c.relrowsecurity AND n.nspname = 'public' "
                        "AND c.relkind IN ('r', 'p') AND NOT c.relispartition")
            tables = sorted({r[0] for r in cur.fetchall()} | set(tables))
            leaks = {}
            for table in tables:
                cur.execute(f'SELECT count(*) FROM "{table}" WHERE path <@ %s::ltree',
                            (f"330300.330302.{B}",))
                leaks[table] = cur.fetchone()[0]
        conn.rollback()
    finally:
        conn.close()
    assert all(n == 0 for n in leaks.values()), leaks
    assert len(tables) >= 4


# --- base data, standard addresses and geocoding -------------------------------------------


@pytest.fixture(scope="module")
def theirs(pg, module_db):
    """Township B's building, person (with its clear ID number), key place and address."""
    b_path = f"330300.330302.{B}"
    crypto = crypto_from_settings(SecuritySettings())
    conn = psycopg2.connect(pg.url(OWNER_ROLE, module_db))
    with conn.cursor() as cur:
        cur.execute("SELECT id, code, ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), "
                    "ST_YMax(geom) FROM building WHERE path <@ %s::ltree ORDER BY id LIMIT 1",
                    (b_path,))
        building = cur.fetchone()
        cur.execute("SELECT id, name, document_number_enc FROM person WHERE path <@ %s::ltree "
                    "AND document_number_enc IS NOT NULL AND special_category IS NULL "
                    "ORDER BY id LIMIT 1", (b_path,))
        person = cur.fetchone()
        cur.execute("SELECT id, name FROM key_place WHERE path <@ %s::ltree ORDER BY id LIMIT 1",
                    (b_path,))
        place = cur.fetchone()
        cur.execute("SELECT code, full_text FROM standard_address WHERE township_code = %s "
                    "AND level = 'unit' ORDER BY id LIMIT 1", (B,))
        address = cur.fetchone()
    conn.close()
    number = crypto.decrypt(bytes(person[2]), context="person.document_number")
    return {"path": b_path, "building": building, "person": (person[0], person[1], number),
            "place": place, "address": address}


def test_base_data_by_id_is_404(http, world, theirs) -> None:
    h = world["a"].headers
    for path in (f"/api/v1/buildings/{theirs['building'][0]}",
                 f"/api/v1/persons/{theirs['person'][0]}",
                 f"/api/v1/key-places/{theirs['place'][0]}",
                 f"/api/v1/addresses/{theirs['address'][0]}"):
        r = http.get(path, headers=h)
        assert r.status_code == 404, (path, r.status_code)
    r = http.patch(f"/api/v1/buildings/{theirs['building'][0]}", json={"version": 1},
                   headers=h)
    assert r.status_code == 404


def test_base_data_by_bbox_text_and_lookup_is_empty(http, world, theirs) -> None:
    h = world["a"].headers
    _, _, x0, y0, x1, y1 = theirs["building"]
    listed = http.get("/api/v1/buildings", params={"bbox": f"{x0},{y0},{x1},{y1}",
                                                   "limit": 1000}, headers=h).json()["items"]
    assert all(not b["path"].startswith(theirs["path"]) for b in listed)
    assert theirs["building"][0] not in {b["id"] for b in listed}
    for kind, name in (("persons", theirs["person"][1]), ("key-places", theirs["place"][1])):
        found = http.get(f"/api/v1/{kind}", params={"text": name, "limit": 1000},
                         headers=h).json()["items"]
        assert all(not i["path"].startswith(theirs["path"]) for i in found), kind
    looked = http.post("/api/v1/persons/lookup", headers=h,
                       json={"document_number": theirs["person"][2]})
    assert looked.status_code == 200 and looked.json()["items"] == []
    addresses = http.get("/api/v1/addresses", params={"q": theirs["address"][1]},
                         headers=h).json()["items"]
    assert addresses == []


def test_base_data_exports_hold_nothing_of_theirs(http, world, theirs) -> None:
    h = world["a"].headers
    for kind in ("buildings", "persons", "key-places"):
        r = http.get(f"/api/v1/{kind}/export", params={"format": "csv"}, headers=h)
        assert r.status_code == 200, (kind, r.text)
        rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig").split("\n", 1)[1])))
        assert rows, kind
        assert all(not row["path"].startswith(theirs["path"]) for row in rows), kind


def test_geocoding_their_address_finds_nothing_of_theirs(http, world, theirs) -> None:
    code, full_text = theirs["address"]
    r = http.get("/api/v1/geocode", params={"q": full_text, "limit": 10},
                 headers=world["a"].headers)
    assert r.status_code == 200
    assert all(hit["address"]["township_code"] != B for hit in r.json()["hits"])
    assert code not in {hit["address"]["code"] for hit in r.json()["hits"]}
