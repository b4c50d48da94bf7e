"""The dispatch form's unit list: readable by dispatchers, limited to the jurisdiction."""

from __future__ import annotations

import pytest

from tests.support.users import make_user, township_commander

TOWNSHIP = "330302006"
GRID = "330302006045001"
OTHER = "330302024"


@pytest.fixture(scope="module")
def people(module_engine):
    return {
        "commander": township_commander(module_engine, "du_cmd", TOWNSHIP, on_duty=False),
        "county": make_user(module_engine, "du_county", roles=["county_commander"],
                            scope=["330302"]),
        "worker": make_user(module_engine, "du_worker", roles=["grid_worker"], scope=[GRID]),
    }


def test_township_commander_sees_own_platforms_only(http, people):
    r = http.get("/api/v1/dispatch-units", params={"region_code": TOWNSHIP},
                 headers=people["commander"].headers)
    assert r.status_code == 200, r.text
    codes = {u["code"] for u in r.json()}
    assert {f"zz{TOWNSHIP}", f"sc{TOWNSHIP}", f"zf{TOWNSHIP}", f"bm{TOWNSHIP}"} <= codes
    assert not any(c.endswith(OTHER) for c in codes)
    assert f"cc{TOWNSHIP}" not in codes  # command centres dispatch, they are not targets


def test_county_commander_also_sees_county_departments(http, people):
    r = http.get("/api/v1/dispatch-units", params={"region_code": GRID},
                 headers=people["county"].headers)
    assert r.status_code == 200, r.text
    codes = [u["code"] for u in r.json()]
    assert f"zf{TOWNSHIP}" in codes and "zfj330302" in codes
    # Nearest first: the township's platforms before the county's departments.
    assert codes.index(f"zf{TOWNSHIP}") < codes.index("zfj330302")


def test_other_jurisdiction_is_not_found(http, people):
    r = http.get("/api/v1/dispatch-units", params={"region_code": OTHER},
                 headers=people["commander"].headers)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


def test_needs_dispatch_permission_and_a_code(http, people):
    r = http.get("/api/v1/dispatch-units", params={"region_code": TOWNSHIP},
                 headers=people["worker"].headers)
    assert r.status_code == 403
    r = http.get("/api/v1/dispatch-units", params={"region_code": "abc"},
                 headers=people["commander"].headers)
    assert r.status_code == 422
    assert "region_code" in r.text
