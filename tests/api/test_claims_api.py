"""The claim queue (数据认领) and pooled records (归集) over HTTP on the tiny demo city."""

from __future__ import annotations

import itertools

import pytest
from shapely.geometry import shape

from tests.support.users import make_user

WUMA = "330302006"       # 五马街道
NANHUI = "330302025"     # 南汇街道
COUNTY_PATH = "330300.330302"
ADDRESS = "鹿城区五马街道解放街123号3幢2单元"
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def commander(module_engine):
    return make_user(module_engine, "claim_cmd", roles=["township_commander"], scope=[WUMA])


@pytest.fixture(scope="module")
def neighbour(module_engine):
    return make_user(module_engine, "claim_nanhui", roles=["township_commander"], scope=[NANHUI])


@pytest.fixture(scope="module")
def grids(http, commander) -> list[tuple[str, str, float, float]]:
    """Two general grids of 五马: (code, path, lon, lat of a point well inside)."""
    items = http.get("/api/v1/grids", params={"q": WUMA, "limit": 1000},
                     headers=commander.headers).json()["items"]
    out = []
    for g in [g for g in items if g["grid_type"] != "dedicated"][:2]:
        f = http.get(f"/api/v1/regions/{g['code']}", headers=commander.headers).json()
        inner = shape(f["geometry"]).buffer(-0.0005)
        point = inner.representative_point()
        out.append((g["code"], g["path"], point.x, point.y))
    return out


@pytest.fixture(scope="module")
def worker(module_engine, grids):
    code = grids[1][0]
    return make_user(module_engine, "claim_worker", roles=["grid_worker"], scope=[code],
                     positions=[("grid_worker", code)])


def record(**fields) -> dict:
    """Return a pooled record with a fresh source id."""
    return {"source_department": "市场监管局", "source_record_id": f"API-{next(_ids):05d}",
            "target_kind": "enterprise", "payload": {"名称": "测试"}, **fields}


def ingest(http, user, *records, boundary_m: float = 0.0):
    return http.post("/api/v1/pooled-records", headers=user.headers,
                     json={"records": list(records), "boundary_m": boundary_m})


def item_of(http, user, source_record_id: str, **params) -> dict:
    items = http.get("/api/v1/claims", params={"limit": 1000, **params},
                     headers=user.headers).json()["items"]
    found = [i for i in items if i["source_record_id"] == source_record_id]
    assert found, f"no item for {source_record_id}"
    return found[0]


def field_of(r) -> str | None:
    body = r.json()
    return body["errors"][0]["field"] if body.get("errors") else body.get("field")


def test_ingest_queues_by_reason_and_skips_repushes(http, commander, grids) -> None:
    _, _, lon, lat = grids[0]
    batch = [record(geometry={"type": "Point", "coordinates": [lon, lat]}, crs="WGS84"),
             record(address=ADDRESS), record(region_code=WUMA),
             record(address="火星殖民地幸福大道99999号")]
    r = ingest(http, commander, *batch)
    assert r.status_code == 201, r.text
    report = r.json()
    assert report["created"] == 4 and report["duplicates"] == 0
    assert report["by_reason"]["in_grid"] == 2  # the point, and the geocoded address
    assert report["by_reason"]["no_location"] == 1 and report["by_reason"]["address_only"] == 1
    again = ingest(http, commander, *batch).json()
    assert again["created"] == 0 and again["duplicates"] == 4
    page = http.get("/api/v1/claims", params={"limit": 1000},
                    headers=commander.headers).json()
    assert page["total"] == sum(page["counts_by_reason"].values())
    assert page["counts_by_reason"]["in_grid"] >= 2
    mine = {i["source_record_id"]: i for i in page["items"]}
    first = mine[batch[0]["source_record_id"]]
    assert first["candidates"][0]["region_code"] == grids[0][0]
    assert mine[batch[2]["source_record_id"]]["holder_code"] == WUMA
    only = http.get("/api/v1/claims", params={"reason": "no_location", "limit": 1000},
                    headers=commander.headers).json()
    assert only["items"] and all(i["reason"] == "no_location" for i in only["items"])
    assert only["counts_by_reason"] == page["counts_by_reason"]


def test_claim_then_claim_again_is_409(http, commander, grids) -> None:
    rec = record(region_code=WUMA)
    assert ingest(http, commander, rec).status_code == 201
    item = item_of(http, commander, rec["source_record_id"])
    url = f"/api/v1/claims/{item['id']}/claim"
    stale = http.post(url, json={"version": item["version"] + 1, "grid_code": grids[0][0]},
                      headers=commander.headers)
    assert stale.status_code == 409
    r = http.post(url, json={"version": item["version"], "grid_code": grids[0][0],
                             "note": "属本网格"}, headers=commander.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "claimed" and r.json()["claimed_code"] == grids[0][0]
    assert r.json()["holder_path"] == grids[0][1]
    again = http.post(url, json={"version": r.json()["version"], "grid_code": grids[0][0]},
                      headers=commander.headers)
    assert again.status_code == 409
    claimed = http.get("/api/v1/claims", params={"status": "claimed", "limit": 1000},
                       headers=commander.headers).json()["items"]
    assert item["id"] in {i["id"] for i in claimed}


def test_decline_sends_the_item_up_out_of_sight(http, commander) -> None:
    rec = record(region_code=WUMA)
    ingest(http, commander, rec)
    item = item_of(http, commander, rec["source_record_id"])
    r = http.post(f"/api/v1/claims/{item['id']}/decline",
                  json={"version": item["version"], "note": "不属本街道"},
                  headers=commander.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "declined" and r.json()["holder_path"] == COUNTY_PATH
    listed = http.get("/api/v1/claims", params={"limit": 1000},
                      headers=commander.headers).json()["items"]
    assert item["id"] not in {i["id"] for i in listed}
    again = http.post(f"/api/v1/claims/{item['id']}/decline",
                      json={"version": r.json()["version"]}, headers=commander.headers)
    assert again.status_code == 404


def test_transfer_to_a_grid_whose_worker_then_claims(http, commander, worker, grids) -> None:
    rec = record(region_code=WUMA)
    ingest(http, commander, rec)
    item = item_of(http, commander, rec["source_record_id"])
    code, path = grids[1][0], grids[1][1]
    assert http.post(f"/api/v1/claims/{item['id']}/claim", headers=worker.headers,
                     json={"version": item["version"], "grid_code": code}).status_code == 404
    r = http.post(f"/api/v1/claims/{item['id']}/transfer", headers=commander.headers,
                  json={"version": item["version"], "to_region_code": code})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "transferred" and r.json()["holder_path"] == path
    seen = item_of(http, worker, rec["source_record_id"])
    r = http.post(f"/api/v1/claims/{item['id']}/claim", headers=worker.headers,
                  json={"version": seen["version"], "grid_code": code})
    assert r.status_code == 200 and r.json()["claimed_code"] == code


def test_auto_claim_takes_items_with_one_grid(http, commander, worker, grids) -> None:
    _, _, lon, lat = grids[0]
    rec = record(geometry={"type": "Point", "coordinates": [lon, lat]}, crs="WGS84")
    ingest(http, commander, rec)
    assert http.post("/api/v1/claims/auto", json={}, headers=worker.headers).status_code == 403
    r = http.post("/api/v1/claims/auto", json={"min_share": 0.6}, headers=commander.headers)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["claimed"] >= 1 and report["examined"] >= report["claimed"]
    done = item_of(http, commander, rec["source_record_id"], status="claimed")
    assert done["claimed_code"] == grids[0][0]


def test_enqueue_boundary_rows_once(http, commander) -> None:
    r = http.post("/api/v1/claims/enqueue-boundary", json={"kind": "building", "distance_m": 5},
                  headers=commander.headers)
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["kind"] == "building" and first["boundary"] + first["outside_grids"] > 0
    again = http.post("/api/v1/claims/enqueue-boundary",
                      json={"kind": "building", "distance_m": 5},
                      headers=commander.headers).json()
    assert again["boundary"] == 0 and again["outside_grids"] == 0
    items = http.get("/api/v1/claims", params={"reason": "boundary", "limit": 1000},
                     headers=commander.headers).json()["items"]
    buildings = [i for i in items if i["subject_kind"] == "building"]
    assert buildings and all(len(i["candidates"]) >= 2 for i in buildings)


def test_other_jurisdiction_sees_and_touches_nothing(http, commander, neighbour) -> None:
    rec = record(region_code=WUMA)
    ingest(http, commander, rec)
    item = item_of(http, commander, rec["source_record_id"])
    listed = http.get("/api/v1/claims", params={"limit": 1000},
                      headers=neighbour.headers).json()["items"]
    assert item["id"] not in {i["id"] for i in listed}
    assert all(not i["holder_path"].startswith(f"{COUNTY_PATH}.{WUMA}") for i in listed)
    body = {"version": item["version"]}
    for action, extra in (("claim", {"grid_code": "330302025001001"}), ("decline", {}),
                          ("transfer", {"to_region_code": NANHUI})):
        r = http.post(f"/api/v1/claims/{item['id']}/{action}", json={**body, **extra},
                      headers=neighbour.headers)
        assert r.status_code == 404, (action, r.text)


@pytest.mark.parametrize(("body", "field"), [
    ({"records": [{"source_record_id": "x", "target_kind": "enterprise"}]},
     "records.0.source_department"),
    ({"records": [{"source_department": "d", "source_record_id": "x", "target_kind": "Bad!"}]},
     "records.0.target_kind"),
    ({"records": [], "boundary_m": 5000}, "boundary_m"),
    ({"records": [{"source_department": "d\x00", "source_record_id": "x",
                   "target_kind": "enterprise"}]}, "records[0].source_department"),
])
def test_ingest_bad_records_name_the_field(http, commander, body, field) -> None:
    r = http.post("/api/v1/pooled-records", json=body, headers=commander.headers)
    assert r.status_code == 422, r.text
    assert field_of(r) == field


def test_ingest_refuses_bad_points_and_other_townships(http, commander, neighbour, grids) -> None:
    _, _, lon, lat = grids[0]
    swapped = record(geometry={"type": "Point", "coordinates": [lat, lon]}, crs="WGS84")
    r = ingest(http, commander, record(), swapped)
    assert r.status_code == 422 and field_of(r) == "records[1].geometry"
    no_crs = ingest(http, commander, record(geometry={"type": "Point",
                                                      "coordinates": [lon, lat]}))
    assert no_crs.status_code == 422 and field_of(no_crs) == "records[0].geometry"
    theirs = ingest(http, neighbour, record(geometry={"type": "Point",
                                                      "coordinates": [lon, lat]}, crs="WGS84"))
    assert theirs.status_code == 422 and field_of(theirs) == "records[0]"
    code = ingest(http, neighbour, record(region_code=WUMA))
    assert code.status_code == 422 and field_of(code) == "records[0].region_code"


def test_oversized_batch_is_413(http, commander) -> None:
    batch = [{"source_department": "d", "source_record_id": str(i), "target_kind": "enterprise"}
             for i in range(5001)]
    r = http.post("/api/v1/pooled-records", json={"records": batch}, headers=commander.headers)
    assert r.status_code == 413


def test_bad_action_input(http, commander, grids) -> None:
    rec = record(region_code=WUMA)
    ingest(http, commander, rec)
    item = item_of(http, commander, rec["source_record_id"])
    url = f"/api/v1/claims/{item['id']}"
    h = commander.headers
    r = http.post(f"{url}/claim", json={"version": item["version"], "grid_code": "330302025001001"},
                  headers=h)
    assert r.status_code == 422 and field_of(r) == "grid_code"
    r = http.post(f"{url}/claim", json={"grid_code": grids[0][0]}, headers=h)
    assert r.status_code == 422 and field_of(r) == "version"
    r = http.post(f"{url}/transfer", json={"version": item["version"], "to_region_code": WUMA},
                  headers=h)
    assert r.status_code == 422 and field_of(r) == "to_region_code"
    assert http.post("/api/v1/claims/0/decline", json={"version": 1},
                     headers=h).status_code == 422
    assert http.post("/api/v1/claims/999999999/decline", json={"version": 1},
                     headers=h).status_code == 404
    for body, field in (({"kind": "person", "distance_m": 5}, "kind"),
                        ({"kind": "building", "distance_m": 0}, "distance_m"),
                        ({"kind": "building", "distance_m": 1001}, "distance_m")):
        r = http.post("/api/v1/claims/enqueue-boundary", json=body, headers=h)
        assert r.status_code == 422 and field_of(r) == field
    r = http.post("/api/v1/claims/auto", json={"min_share": 2}, headers=h)
    assert r.status_code == 422 and field_of(r) == "min_share"
    r = http.get("/api/v1/claims", params={"status": "lost"}, headers=h)
    assert r.status_code == 422 and field_of(r) == "status"
