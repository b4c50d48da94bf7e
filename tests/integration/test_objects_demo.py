"""The tiny demo city's base data (geoserver/demo/steps/objects.py), as the template holds it."""

from __future__ import annotations

import pytest
import shapely
from sqlalchemy import text

from geoserver.demo.divisions import RegionLevel
from geoserver.demo.geometry import GridType, RegionShape
from geoserver.demo.loader import DemoContext
from geoserver.demo.steps import objects as objects_step
from geoserver.domain.documents import (
    DocumentType,
    mask_id_number,
    normalize_document,
    validate_uscc,
)
from geoserver.domain.principal import SYSTEM
from geoserver.services.objects import list_objects
from geoserver.services.persons import find_persons
from tests.support.objects import make_actor
from tests.support.regions import build_test_tree


def _count(demo, sql: str) -> int:
    return int(demo.execute(text(sql)).scalar())


def test_sizes_are_those_of_the_tiny_scale(demo) -> None:
    assert 3000 <= _count(demo, "SELECT count(*) FROM building") <= 5000
    assert 10_000 <= _count(demo, "SELECT count(*) FROM person") <= 20_000
    for table in ("residence", "household", "organization", "key_place", "city_component",
                  "enterprise"):
        assert _count(demo, f"SELECT count(*) FROM {table}") > 0, table


def test_locations_are_what_the_triggers_would_have_derived(demo) -> None:
    for table in ("building", "key_place", "city_component", "enterprise"):
        wrong = _count(demo, f"SELECT count(*) FROM {table} t, LATERAL gridgov_meta.locate("
                             f"t.geom) l WHERE t.geom IS NOT NULL AND (l.path <> t.path "
                             f"OR l.region_id <> t.region_id)")
        assert wrong == 0, table
    assert _count(demo, "SELECT count(*) FROM residence r JOIN building b ON b.id = "
                        "r.building_id WHERE r.path <> b.path") == 0
    assert _count(demo, "SELECT count(*) FROM person p JOIN residence r ON r.id = "
                        "p.residence_id WHERE p.path <> r.path") == 0
    assert _count(demo, "SELECT count(*) FROM household h JOIN residence r ON r.id = "
                        "h.residence_id WHERE h.path <> r.path") == 0


def test_buildings_rarely_overlap_and_have_sensible_sizes(demo) -> None:
    buildings = _count(demo, "SELECT count(*) FROM building")
    overlapping = _count(demo, "SELECT count(*) FROM building a JOIN building b ON a.id < b.id "
                               "AND a.geom && b.geom AND ST_Intersects(a.geom, b.geom)")
    assert overlapping < buildings * 0.01
    small, large = demo.execute(text(
        "SELECT min(ST_Area(geom::geography)), max(ST_Area(geom::geography)) FROM building")).one()
    # Address sites can be close (doors every 12 m): their buildings are shrunk to fit.
    assert 10 < small and large < 1500


def test_people_documents_are_valid_encrypted_hashed_and_masked(demo, crypto) -> None:
    rows = demo.execute(text(
        "SELECT document_type, document_number_enc, document_number_hash, "
        "document_number_masked, birth_date FROM person ORDER BY id LIMIT 400")).all()
    for doc_type, enc, digest, masked, birth in rows:
        number = crypto.decrypt(enc, context="person.document_number")
        assert normalize_document(doc_type, number) == number
        assert bytes(digest) == crypto.blind_index(number)
        assert masked == mask_id_number(number)
        if doc_type == DocumentType.RESIDENT_ID:
            assert number[6:14] == f"{birth:%Y%m%d}"
    assert _count(demo, "SELECT count(*) - count(DISTINCT document_number_hash) "
                        "FROM person") == 0


def test_a_demo_person_is_found_by_full_id(demo, crypto) -> None:
    pid, enc = demo.execute(text(
        "SELECT id, document_number_enc FROM person WHERE document_type = 'resident_id' "
        "AND special_category IS NULL ORDER BY id DESC LIMIT 1")).one()
    number = crypto.decrypt(enc, context="person.document_number")
    found = find_persons(demo, actor=SYSTEM, crypto=crypto, document_number=number)
    assert [p["id"] for p in found] == [pid]


def test_enterprise_codes_are_valid_and_unique(demo) -> None:
    codes = [r[0] for r in demo.execute(text("SELECT uscc FROM enterprise")).all()]
    assert all(validate_uscc(c) == c for c in codes)


def test_special_populations_exist_but_need_the_category(demo) -> None:
    special = _count(demo, "SELECT count(*) FROM person WHERE special_category IS NOT NULL")
    assert special > 0
    plain = make_actor()
    page = list_objects(demo, actor=plain, kind="person",
                        filters={"special_category": "community_correction"})
    assert page.items == []
    party = _count(demo, "SELECT count(*) FROM person WHERE '党员' = ANY(tags)")
    assert 0.01 < party / _count(demo, "SELECT count(*) FROM person") < 0.04


# --- the step on a hand-made city with standard addresses -------------------------------------


def _regions_of(conn) -> list[RegionShape]:
    rows = conn.execute(text(
        "SELECT code, name, level::text, parent_code, ST_AsBinary(geom), grid_type::text "
        "FROM region WHERE valid_to IS NULL")).all()
    return [RegionShape(code, name, RegionLevel(level), parent, shapely.from_wkb(bytes(wkb)),
                        grid_type=GridType(gt) if gt else None, urban=True)
            for code, name, level, parent, wkb, gt in rows]


def _address(conn, code, level, parent, lon, lat, door, building=None, unit=None, room=None):
    return conn.execute(text(
        "INSERT INTO standard_address (code, level, parent_id, county_code, township_code, "
        "village_code, road, door_number, building, unit, room, full_text, geom) VALUES "
        "(:code, CAST(:level AS address_level), :parent, '330302', '330302006', "
        "'330302006001', '解放路', :door, :building, :unit, :room, :text, "
        "ST_SetSRID(ST_Point(:lon, :lat), 4490)) RETURNING id"),
        {"code": code, "level": level, "parent": parent, "door": door, "building": building,
         "unit": unit, "room": room, "text": f"解放路{door}号{building or ''}{room or ''}",
         "lon": lon, "lat": lat}).scalar()


@pytest.fixture
def hand_made_city(owner_engine):
    with owner_engine.connect() as conn:
        trans = conn.begin()
        build_test_tree(conn)
        yield conn
        trans.rollback()


def test_step_builds_on_standard_addresses_and_links_them(hand_made_city, crypto,
                                                          monkeypatch) -> None:
    conn = hand_made_city
    monkeypatch.setitem(objects_step.SIZES, "tiny", (120, 450))
    door = _address(conn, "D12", "door", None, 120.1, 27.6, "12")
    block = _address(conn, "D12B1", "building", door, 120.1, 27.6, "12", "1")
    unit = _address(conn, "D12B1U1", "unit", block, 120.1, 27.6, "12", "1", "1")
    rooms = [_address(conn, f"D12B1U1R{r}", "room", unit, 120.1, 27.6, "12", "1", "1", r)
             for r in ("101", "102")]
    lone_door = _address(conn, "D14", "door", None, 120.11, 27.61, "14")
    ctx = DemoContext(scale="tiny", seed=3, regions=_regions_of(conn), crypto=crypto)

    counts = objects_step.load(conn.connection.dbapi_connection, ctx)

    assert counts["building_address_link"] == 2
    on_block = conn.execute(text(
        "SELECT b.id, b.category::text, ST_Contains(b.geom, a.geom) FROM building b "
        "JOIN standard_address a ON a.id = b.address_id WHERE a.id = :a"), {"a": block}).one()
    assert on_block[1] == "residential" and on_block[2]
    linked_rows = conn.execute(text(
        "SELECT count(*) FROM standard_address WHERE building_id = :b"),
        {"b": on_block[0]}).scalar()
    assert linked_rows == 4  # the building address, its unit and both rooms
    assert conn.execute(text("SELECT count(*) FROM building WHERE address_id = :a"),
                        {"a": lone_door}).scalar() == 1
    linked = conn.execute(text(
        "SELECT address_id, unit, room FROM residence WHERE building_id = :b AND address_id "
        "IS NOT NULL ORDER BY room"), {"b": on_block[0]}).all()
    assert [tuple(r) for r in linked] == [(rooms[0], "1", "101"), (rooms[1], "1", "102")]
    assert 60 <= counts["building"] <= 130 and counts["person"] > 100
    wrong = conn.execute(text(
        "SELECT count(*) FROM building b, LATERAL gridgov_meta.locate(b.geom) l "
        "WHERE l.path <> b.path")).scalar()
    assert wrong == 0
