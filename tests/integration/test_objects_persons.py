"""Persons: documents, masking and reveal, special populations, blind-index search, location."""

from __future__ import annotations

import random
from datetime import date

import pytest
from sqlalchemy import text

from geoserver.domain.documents import synthetic_resident_id, upgrade_legacy_id
from geoserver.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from geoserver.services.buildings import create_building, create_residence
from geoserver.services.objects import delete_object, get_object, list_objects
from geoserver.services.persons import create_person, find_persons, update_person
from tests.support.objects import (
    IN_GRID_W_S,
    WRITE_ALL,
    make_actor,
    scoped,
    square,
)

RID = synthetic_resident_id(random.Random(1), "330302", date(1980, 5, 17), "female")
RID2 = synthetic_resident_id(random.Random(2), "330302", date(1992, 1, 3), "male")
LEGACY = "330302800101123"  # 1980-01-01, odd sequence: male


@pytest.fixture
def residence(db, tree, system):
    b = create_building(db, actor=system, data={
        "code": "PB1", "geometry": square(*IN_GRID_W_S), "crs": "WGS84"}).record
    return create_residence(db, actor=system, data={"building_id": b["id"], "room": "1"}).record


def _person(db, actor, crypto, **data):
    body = {"name": "王小明", "region_code": "330302006001"} | data
    return create_person(db, actor=actor, crypto=crypto, data=body)


def test_create_read_update_delete_person(db, tree, system, crypto) -> None:
    rec = _person(db, system, crypto, document_type="resident_id", document_number=RID,
                  phone="13812345678", tags=["党员"]).record
    assert rec["path"] == tree["330302006001"]
    assert rec["birth_date"] == date(1980, 5, 17) and rec["gender"] == "female"
    assert rec["document_number"] == RID[:6] + "********" + RID[-4:]
    assert rec["phone"] == "138****5678"
    assert rec["revealed"] == []
    assert not {"document_number_enc", "document_number_hash", "phone_enc"} & rec.keys()
    stored = db.execute(text("SELECT document_number_enc FROM person WHERE id = :i"),
                        {"i": rec["id"]}).scalar()
    assert RID.encode() not in bytes(stored)

    upd = update_person(db, actor=system, crypto=crypto, person_id=rec["id"],
                        data={"version": 1, "name": "王晓明", "phone": None}).record
    assert upd["name"] == "王晓明" and upd["phone"] is None and upd["version"] == 2
    with pytest.raises(Conflict):
        update_person(db, actor=system, crypto=crypto, person_id=rec["id"],
                      data={"version": 1, "name": "x"})
    delete_object(db, actor=system, kind="person", object_id=rec["id"], version=2)
    with pytest.raises(NotFound):
        get_object(db, actor=system, kind="person", object_id=rec["id"])


@pytest.mark.parametrize(("doc_type", "number", "field"), [
    ("resident_id", RID[:-1] + ("0" if RID[-1] != "0" else "1"), "document_number"),
    ("resident_id", "3303021980051", "document_number"),
    ("resident_id", "🙂" * 18, "document_number"),
    ("legacy_id", "33030280013212", "document_number"),
    ("hmt_residence_permit", RID, "document_number"),
    ("passport", "E1", "document_number"),
    ("driving_licence", RID, "document_type"),
    (None, RID, "document_type"),
    ("resident_id", None, "document_number"),
])
def test_bad_documents_name_the_field(db, tree, system, crypto, doc_type, number,
                                      field) -> None:
    with pytest.raises(InvalidInput) as err:
        _person(db, system, crypto, document_type=doc_type, document_number=number)
    assert err.value.problems[0].field == field
    if number and number.isdigit():
        assert number not in err.value.detail  # never echo the number into logs


def test_document_number_of_the_wrong_type_is_refused_not_a_crash(db, tree, system,
                                                                  crypto) -> None:
    with pytest.raises(InvalidInput) as err:
        _person(db, system, crypto, document_type="resident_id", document_number=330302)
    assert err.value.problems[0].field == "document_number"


def test_birth_date_contradicting_the_id_is_refused(db, tree, system, crypto) -> None:
    with pytest.raises(InvalidInput) as err:
        _person(db, system, crypto, document_type="resident_id", document_number=RID,
                birth_date="1981-01-01")
    assert err.value.problems[0].field == "birth_date"


def test_bad_phone_names_the_field(db, tree, system, crypto) -> None:
    with pytest.raises(InvalidInput) as err:
        _person(db, system, crypto, phone="12345")
    assert err.value.problems[0].field == "phone"


def test_same_document_twice_is_a_conflict_even_in_legacy_form(db, tree, system,
                                                               crypto) -> None:
    _person(db, system, crypto, document_type="legacy_id", document_number=LEGACY)
    with pytest.raises(Conflict) as err:
        _person(db, system, crypto, document_type="resident_id",
                document_number=upgrade_legacy_id(LEGACY))
    assert err.value.extra["field"] == "document_number"


def test_find_by_full_document_number_through_blind_index(db, tree, system, crypto) -> None:
    a = _person(db, system, crypto, document_type="resident_id", document_number=RID).record
    _person(db, system, crypto, name="赵六", document_type="resident_id",
            document_number=RID2)
    legacy = _person(db, system, crypto, name="老号", document_type="legacy_id",
                     document_number=LEGACY).record
    assert [p["id"] for p in find_persons(db, actor=system, crypto=crypto,
                                          document_number=RID.lower())] == [a["id"]]
    # Either spelling of a legacy ID finds its holder.
    found = find_persons(db, actor=system, crypto=crypto,
                         document_number=upgrade_legacy_id(LEGACY))
    assert [p["id"] for p in found] == [legacy["id"]]
    unknown = synthetic_resident_id(random.Random(3), "110101", date(1990, 3, 7), "male")
    assert find_persons(db, actor=system, crypto=crypto, document_number=unknown,
                        document_type="resident_id") == []
    with pytest.raises(InvalidInput) as err:
        find_persons(db, actor=system, crypto=crypto, document_number="!!",
                     document_type="resident_id")
    assert err.value.problems[0].field == "document_number"


def test_find_by_phone(db, tree, system, crypto) -> None:
    a = _person(db, system, crypto, phone="+86 138-1234-5678").record
    found = find_persons(db, actor=system, crypto=crypto, phone="13812345678")
    assert [p["id"] for p in found] == [a["id"]]


def test_masked_unless_revealed_by_a_cleared_actor(db, tree, crypto) -> None:
    writer = make_actor()
    rec = _person(db, writer, crypto, document_type="resident_id", document_number=RID,
                  phone="0577-88881234").record
    assert rec["phone"] == "0577-****1234"
    with pytest.raises(PermissionDenied):
        get_object(db, actor=writer, kind="person", object_id=rec["id"], reveal=True,
                   crypto=crypto)
    cleared = make_actor(permissions=WRITE_ALL | {"person.read_sensitive"})
    masked = get_object(db, actor=cleared, kind="person", object_id=rec["id"])
    assert masked["document_number"] != RID and masked["revealed"] == []
    audit: list[tuple[str, int, list[str]]] = []
    clear = get_object(db, actor=cleared, kind="person", object_id=rec["id"], reveal=True,
                       crypto=crypto, on_reveal=lambda *a: audit.append(a))
    assert clear["document_number"] == RID and clear["phone"] == "0577-88881234"
    assert clear["revealed"] == ["document_number", "phone"]
    assert audit == [("person", rec["id"], ["document_number", "phone"])]
    page = list_objects(db, actor=cleared, kind="person", reveal=True, crypto=crypto,
                        on_reveal=lambda *a: audit.append(a))
    assert page.items[0]["document_number"] == RID and len(audit) == 2


def test_special_population_needs_the_category(db, tree, crypto) -> None:
    corrections = make_actor(categories={"community_correction"})
    plain = make_actor()
    rec = _person(db, corrections, crypto, special_category="community_correction").record
    other = _person(db, plain, crypto, name="普通人").record
    with pytest.raises(NotFound):
        get_object(db, actor=plain, kind="person", object_id=rec["id"])
    assert [p["id"] for p in list_objects(db, actor=plain, kind="person").items] == [other["id"]]
    assert get_object(db, actor=corrections, kind="person",
                      object_id=rec["id"])["special_category"] == "community_correction"
    with pytest.raises(NotFound):
        update_person(db, actor=plain, crypto=crypto, person_id=rec["id"],
                      data={"version": 1, "name": "x"})
    # Another category's permission does not help; "*" does.
    drugs = make_actor(categories={"drug_rehab"})
    with pytest.raises(NotFound):
        get_object(db, actor=drugs, kind="person", object_id=rec["id"])
    assert get_object(db, actor=make_actor(categories={"*"}), kind="person",
                      object_id=rec["id"])["id"] == rec["id"]
    # Nobody may put a person into a category they cannot see.
    with pytest.raises(PermissionDenied):
        _person(db, plain, crypto, special_category="mental_illness")
    with pytest.raises(PermissionDenied):
        update_person(db, actor=plain, crypto=crypto, person_id=other["id"],
                      data={"version": 1, "special_category": "petition_key"})


def test_person_path_follows_residence_or_region_code(db, tree, system, crypto,
                                                      residence) -> None:
    p = _person(db, system, crypto, region_code=None, residence_id=residence["id"]).record
    assert p["path"] == residence["path"] == tree["330302006001001"]
    with pytest.raises(InvalidInput) as err:
        _person(db, system, crypto, residence_id=residence["id"])  # and a region code
    assert err.value.problems[0].field == "region_code"
    moved = update_person(db, actor=system, crypto=crypto, person_id=p["id"],
                          data={"version": 1, "residence_id": None,
                                "region_code": "330302025"}).record
    assert moved["path"] == tree["330302025"] and moved["residence_id"] is None
    with pytest.raises(InvalidInput) as err:
        _person(db, system, crypto, region_code=None)
    assert err.value.problems[0].field == "region_code"


def test_person_outside_jurisdiction(db, tree, system, crypto) -> None:
    p = _person(db, system, crypto, region_code="330302025").record
    worker = scoped(db, tree["330302006"])
    with pytest.raises(NotFound):
        get_object(db, actor=worker, kind="person", object_id=p["id"])
    with pytest.raises(NotFound):
        update_person(db, actor=worker, crypto=crypto, person_id=p["id"],
                      data={"version": 1, "name": "x"})
    with pytest.raises(InvalidInput) as err:
        _person(db, worker, crypto, region_code="330302025")
    assert err.value.problems[0].field == "region_code"
    assert find_persons(db, actor=worker, crypto=crypto, phone="13900000000") == []


def test_tags_filter_and_validation(db, tree, system, crypto) -> None:
    a = _person(db, system, crypto, tags=["党员", "退役军人"]).record
    _person(db, system, crypto, name="钱七", tags=["低保"])
    page = list_objects(db, actor=system, kind="person", filters={"tags": ["党员"]})
    assert [p["id"] for p in page.items] == [a["id"]]
    with pytest.raises(InvalidInput) as err:
        _person(db, system, crypto, tags=[""])
    assert err.value.problems[0].field.startswith("tags")
