"""Queue export (导出) and the public channel's rate limit over real HTTP.

The server's event settings are small on purpose: an export holds at most 5 rows, and the
public channel takes 2 reports an hour per phone and 4 per IP address (every request here
comes from 127.0.0.1).
"""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook
from sqlalchemy import text

from api.routes.events import event_settings
from geoserver.config import SecuritySettings
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from geoserver.security.crypto import crypto_from_settings
from geoserver.services.events import PHONE_CONTEXT, EventSettings
from tests.conftest import make_settings
from tests.support import live
from tests.support.mobile import load_catalogue
from tests.support.users import EventStaff

TOWNSHIP = "330302006"
GRID = "330302006045001"
OTHER = "330302024"
LIMITS = EventSettings(max_export_rows=5, public_reports_per_phone_per_hour=2,
                       public_reports_per_ip_per_hour=4)


@pytest.fixture(scope="module")
def live_server(pg, module_db):
    app = live.app_with(make_settings(pg, module_db, jobs_enabled=False))
    app.dependency_overrides[event_settings] = lambda: LIMITS
    with live.serve(app) as url:
        yield url


class World(EventStaff):
    """Users, and six reports waiting for acceptance: three tagged QX9, three QX8."""

    def __init__(self, engine, http: httpx.Client) -> None:
        load_catalogue(engine)
        super().__init__(engine, "xp", grid=GRID, township=TOWNSHIP, other=OTHER)
        self.codes: dict[str, list[str]] = {"QX9": [], "QX8": []}
        for tag in ("QX9", "QX8"):
            for i in range(3):
                r = http.post("/api/v1/events", headers=self.worker.headers, json={
                    "type_code": "0401", "description": f"垃圾堆放{tag}第{i}处", "crs": "WGS84",
                    "location": {"type": "Point", "coordinates": self.point}})
                assert r.status_code == 201, r.text
                self.codes[tag].append(r.json()["code"])


@pytest.fixture(scope="module")
def world(module_engine, http) -> World:
    return World(module_engine, http)


def _csv_rows(body: bytes) -> tuple[str, list[dict[str, str]]]:
    text_ = body.decode("utf-8-sig")
    mark, _, rest = text_.partition("\n")
    return mark, list(csv.DictReader(io.StringIO(rest)))


def test_csv_export_has_the_queue_rows(http, world, module_engine) -> None:
    params = {"q": "QX9", "format": "csv"}
    queue = http.get("/api/v1/events", headers=world.commander.headers,
                     params={"queue": "to_accept", "q": "QX9"}).json()
    r = http.get("/api/v1/events/queues/to_accept/export", headers=world.commander.headers,
                 params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="events-to_accept.csv"' in r.headers["content-disposition"]
    mark, rows = _csv_rows(r.content)
    assert "xp_cmd" in mark and "导出" in mark                  # the watermark
    assert len(rows) == queue["total"] == 3
    assert sorted(row["code"] for row in rows) == sorted(world.codes["QX9"])
    assert {row["state"] for row in rows} == {"reported"}
    assert rows[0]["centre"] and rows[0]["lon"]
    with scoped_session(module_engine, SYSTEM_SCOPE) as s:
        audited = s.execute(text(
            "SELECT detail FROM audit_log WHERE action = 'export' AND object_kind = 'event' "
            "AND actor_username = 'xp_cmd' ORDER BY id DESC LIMIT 1")).scalar_one()
    assert audited["rows"] == 3 and audited["filters"]["queue"] == "to_accept"


def test_xlsx_export_opens_with_openpyxl(http, world) -> None:
    r = http.get("/api/v1/events/queues/to_accept/export", headers=world.commander.headers,
                 params={"q": "QX8", "format": "xlsx"})
    assert r.status_code == 200, r.text
    sheet = load_workbook(io.BytesIO(r.content), read_only=True).active
    rows = list(sheet.iter_rows(values_only=True))
    assert "xp_cmd" in rows[0][0]
    header = list(rows[1])
    codes = sorted(row[header.index("code")] for row in rows[2:])
    assert codes == sorted(world.codes["QX8"])


def test_event_list_export_with_filters(http, world) -> None:
    r = http.get("/api/v1/events/export", headers=world.commander.headers,
                 params={"q": "QX8", "state": "reported", "format": "geojson"})
    assert r.status_code == 200, r.text
    features = r.json()["features"]
    assert len(features) == 3 and features[0]["geometry"]["type"] == "Point"


def test_search_by_event_code(http, world) -> None:
    code = world.codes["QX8"][1]
    page = http.get("/api/v1/events", headers=world.commander.headers,
                    params={"q": code}).json()
    assert [e["code"] for e in page["items"]] == [code] and page["total"] == 1
    r = http.get("/api/v1/events/export", headers=world.commander.headers, params={"q": code})
    assert [row["code"] for row in _csv_rows(r.content)[1]] == [code]


def test_export_row_cap_is_422(http, world) -> None:
    r = http.get("/api/v1/events/queues/to_accept/export", headers=world.commander.headers)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "since" and "at most 5" in r.json()["detail"]


@pytest.mark.parametrize(("params", "field"), [
    ({"format": "pdf", "q": "QX9"}, "format"),
    ({"sla": "purple"}, "sla"),
    ({"since": "yesterday"}, "since"),
])
def test_export_bad_input_is_422(http, world, params, field) -> None:
    r = http.get("/api/v1/events/queues/to_accept/export", headers=world.commander.headers,
                 params=params)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field


def test_export_needs_the_export_permission_and_a_queue(http, world) -> None:
    r = http.get("/api/v1/events/queues/to_handle/export", headers=world.worker.headers)
    assert r.status_code == 403
    assert http.get("/api/v1/events/queues/nonsense/export",
                    headers=world.commander.headers).status_code == 422


def test_another_jurisdiction_exports_none_of_it(http, world) -> None:
    r = http.get("/api/v1/events/queues/to_accept/export", headers=world.other.headers,
                 params={"q": "QX9"})
    assert r.status_code == 200
    assert _csv_rows(r.content)[1] == []


# --- the public channel ---------------------------------------------------------------------------


def _public(http: httpx.Client, world: World, phone: Any) -> httpx.Response:
    body = {"type_code": "0404", "description": "夜间施工噪声扰民", "crs": "WGS84",
            "location": {"type": "Point", "coordinates": world.point}}
    if phone is not None:
        body["reporter_phone"] = phone
    return http.post("/api/v1/events/public", json=body)


@pytest.mark.parametrize("phone", [None, "", "0577-88881234", "12345", "1390000123a",
                                   "23900001234"])
def test_public_report_needs_a_mainland_mobile(http, world, phone) -> None:
    r = _public(http, world, phone)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "reporter_phone"


def test_public_reports_are_rate_limited_per_phone_and_per_ip(http, world, module_engine) -> None:
    first = _public(http, world, "+86 139-0000-1111")
    assert first.status_code == 201, first.text
    assert _public(http, world, "13900001111").status_code == 201
    third = _public(http, world, "13900001111")
    assert third.status_code == 429, third.text
    assert third.headers["content-type"] == "application/problem+json"
    assert 1 <= int(third.headers["retry-after"]) <= 3600
    assert "phone" in third.json()["detail"]
    # Another phone from the same address: two more, then the address is at its limit.
    assert _public(http, world, "13900002222").status_code == 201
    assert _public(http, world, "13900002222").status_code == 201
    fifth = _public(http, world, "13900003333")
    assert fifth.status_code == 429 and "network address" in fifth.json()["detail"]
    # Stored encrypted and masked, like every phone number; the IP only as a keyed hash.
    crypto = crypto_from_settings(SecuritySettings())
    with scoped_session(module_engine, SYSTEM_SCOPE) as s:
        row = s.execute(text(
            "SELECT e.reporter_phone_enc, e.reporter_phone_masked, p.ip_hash FROM event e "
            "JOIN event_public_report p ON p.event_id = e.id WHERE e.code = :c"),
            {"c": first.json()["code"]}).one()
        counted = s.execute(text("SELECT count(*) FROM event_public_report")).scalar_one()
    assert b"13900001111" not in bytes(row.reporter_phone_enc)
    assert crypto.decrypt(bytes(row.reporter_phone_enc), context=PHONE_CONTEXT) == "13900001111"
    assert row.reporter_phone_masked == "139****1111" and row.ip_hash is not None
    assert counted == 4
