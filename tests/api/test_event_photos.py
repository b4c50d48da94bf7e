"""Photos as evidence on events over real HTTP: with a report, with handle and verify, listing,
serving (no GPS unless cleared, thumbnails, ETag), another jurisdiction, and bad uploads.

The server has a data directory of its own and a small per-photo limit (200 kB), so "too
large" needs no megabytes.
"""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import text

from geoserver.config import PhotoSettings
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from tests.support.mobile import load_catalogue, mobile_settings, serve
from tests.support.users import EventStaff

TOWNSHIP = "330302006"
GRID = "330302006045001"
OTHER = "330302024"
MAX_BYTES = 200_000


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("event-photos")


@pytest.fixture(scope="module")
def live_server(pg, module_db, data_dir):
    settings = mobile_settings(pg, module_db, data_dir)
    settings.photos = PhotoSettings(max_photo_bytes=MAX_BYTES)
    with serve(settings) as url:
        yield url


@pytest.fixture(scope="module")
def people(module_engine, live_server) -> EventStaff:
    load_catalogue(module_engine)
    return EventStaff(module_engine, "ph", grid=GRID, township=TOWNSHIP, other=OTHER)


def jpeg(color: str = "red", size: tuple[int, int] = (640, 480), gps: bool = False) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif.get_ifd(0x8769)[36867] = "2026:05:01 09:30:15"
    if gps:
        g = exif.get_ifd(0x8825)
        g[1], g[2], g[3], g[4] = "N", (28.0, 1.0, 12.5), "E", (120.0, 39.0, 30.0)
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG", exif=exif)
    return out.getvalue()


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (50, 40), (0, 128, 0, 128)).save(out, "PNG")
    return out.getvalue()


def noise(size: int = 400) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((size, size), 80).convert("RGB").save(out, "PNG")
    return out.getvalue()


def _body(people: EventStaff, **extra: Any) -> dict[str, Any]:
    return {"type_code": "0401", "description": "路边垃圾堆放", "crs": "WGS84",
            "location": {"type": "Point", "coordinates": people.point}, **extra}


def _files(*items: bytes | tuple[str, bytes, str]) -> list[tuple[str, tuple[str, bytes, str]]]:
    out = []
    for i, item in enumerate(items):
        name, data, ctype = item if isinstance(item, tuple) else (f"p{i}.jpg", item,
                                                                  "image/jpeg")
        out.append(("photos", (name, data, ctype)))
    return out


def _report(http: httpx.Client, user: Any, body: dict[str, Any], *photos: Any
            ) -> httpx.Response:
    return http.post("/api/v1/events/with-photos", headers=user.headers,
                     data={"body": json.dumps(body)}, files=_files(*photos) or None)


def _act(http: httpx.Client, user: Any, ev: dict, action: str, *photos: Any,
         **body: Any) -> dict:
    headers = {**user.headers, "If-Match": f'"{ev["version"]}"'}
    if photos:
        r = http.post(f"/api/v1/events/{ev['id']}/actions/{action}/with-photos",
                      headers=headers, data={"body": json.dumps(body)}, files=_files(*photos))
    else:
        r = http.post(f"/api/v1/events/{ev['id']}/actions/{action}", headers=headers, json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_report_with_photos(http, people) -> None:
    # The client calls the JPEG a PNG and the PNG a blob: the server sniffs the bytes.
    r = _report(http, people.worker, _body(people), ("a.png", jpeg(gps=True), "image/png"),
                ("b.bin", png(), "application/octet-stream"))
    assert r.status_code == 201, r.text
    ev = r.json()
    assert r.headers["etag"] == '"1"' and ev["state"] == "reported"
    report_row = ev["history"][0]["id"]
    assert [(p["stage"], p["content_type"], p["history_id"]) for p in ev["photos"]] == [
        ("report", "image/jpeg", report_row), ("report", "image/png", report_row)]
    first = ev["photos"][0]
    assert first["taken_at"].startswith("2026-05-01T09:30:15")
    assert first["has_position"] and first["taken_lon"] is None    # a worker is not cleared
    listed = http.get(f"/api/v1/events/{ev['id']}/photos", headers=people.worker.headers)
    assert listed.status_code == 200 and listed.json() == ev["photos"]


def test_photo_is_served_without_gps_with_cache_headers(http, people) -> None:
    original = jpeg("purple", gps=True)
    ev = _report(http, people.worker, _body(people), original).json()
    url = ev["photos"][0]["url"]
    got = http.get(url, headers=people.worker.headers)
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert "private" in got.headers["cache-control"] and got.headers["etag"]
    served = Image.open(io.BytesIO(got.content))
    assert served.size == (640, 480) and not served.getexif().get_ifd(0x8825)
    again = http.get(url, headers={**people.worker.headers, "If-None-Match": got.headers["etag"]})
    assert again.status_code == 304 and not again.content
    thumb = http.get(ev["photos"][0]["thumbnail_url"], headers=people.worker.headers)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 320
    assert thumb.headers["etag"] != got.headers["etag"]
    # The original, with its position, for those cleared only (event.photo_original).
    assert http.get(url, params={"original": True},
                    headers=people.worker.headers).status_code == 403
    orig = http.get(url, params={"original": True}, headers=people.commander.headers)
    assert orig.status_code == 200 and orig.content == original
    listed = http.get(f"/api/v1/events/{ev['id']}/photos", headers=people.commander.headers)
    assert listed.json()[0]["taken_lat"] == pytest.approx(28.0201389)


def test_handle_and_verify_with_photos(http, people) -> None:
    r = http.post("/api/v1/events", headers=people.commander.headers,
                  json=_body(people, description="井盖缺失", source="commander"))
    assert r.status_code == 201, r.text
    ev = _act(http, people.commander, r.json(), "accept")
    ev = _act(http, people.commander, ev, "dispatch", lead={"grid_code": GRID})
    ev = _act(http, people.worker, ev, "sign")
    ev = _act(http, people.worker, ev, "handle", jpeg("green"), jpeg("olive"), result="已补装")
    assert ev["state"] == "handled"
    here = {"location": {"type": "Point", "coordinates": people.point}, "crs": "WGS84"}
    ev = _act(http, people.worker, ev, "verify_pass", jpeg("white"), **here)
    assert ev["state"] == "verified"
    rows = {h["action"]: h["id"] for h in ev["history"]}
    assert [(p["stage"], p["history_id"]) for p in ev["photos"]] == [
        ("handle", rows["handle"]), ("handle", rows["handle"]),
        ("verify_pass", rows["verify_pass"])]


def test_another_jurisdiction_gets_404(http, people) -> None:
    ev = _report(http, people.worker, _body(people), jpeg("gray")).json()
    photo = ev["photos"][0]
    other = people.other.headers
    assert http.get(f"/api/v1/events/{ev['id']}/photos", headers=other).status_code == 404
    assert http.get(photo["url"], headers=other).status_code == 404
    assert http.get(photo["thumbnail_url"], headers=other).status_code == 404
    assert http.get(photo["url"], params={"original": True}, headers=other).status_code == 404
    r = http.post(f"/api/v1/events/{ev['id']}/actions/accept/with-photos",
                  headers={**other, "If-Match": '"1"'}, data={"body": "{}"},
                  files=_files(jpeg()))
    assert r.status_code == 404
    assert http.get("/api/v1/events/photos/999999999", headers=people.worker.headers
                    ).status_code == 404


def _count(engine, description: str) -> int:
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        return int(s.execute(text("SELECT count(*) FROM event WHERE description = :d"),
                             {"d": description}).scalar_one())


@pytest.mark.parametrize(("photos", "field"), [
    ((b"GIF89a not really",), "photos[0]"),
    ((jpeg(), ("x.jpg", b"<html>not an image</html>", "image/jpeg")), "photos[1]"),
    ((jpeg()[:400],), "photos[0]"),
    (tuple(jpeg(c) for c in ("red", "blue", "green", "white", "black", "gray", "pink")),
     "photos"),
])
def test_not_an_image_is_422_naming_the_field(http, people, module_engine, photos, field) -> None:
    description = f"坏照片 {field} {len(photos)}"
    r = _report(http, people.worker, _body(people, description=description), *photos)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"] == field
    assert _count(module_engine, description) == 0


def test_too_large_is_413_naming_the_field(http, people, module_engine) -> None:
    big = noise()
    assert len(big) > MAX_BYTES
    r = _report(http, people.worker, _body(people, description="大照片"), jpeg(), big)
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == "photos[1]" and str(MAX_BYTES) in r.json()["detail"]
    assert _count(module_engine, "大照片") == 0


@pytest.mark.parametrize(("form", "field"), [
    ({"body": "not json"}, "body"),
    ({"body": "[1, 2]"}, "body"),
    ({"body": json.dumps({"type_code": "0401", "description": "缺坐标系",
                          "location": {"type": "Point", "coordinates": [120.65, 28.01]}})},
     "crs"),
    ({}, "body"),
])
def test_bad_report_forms_are_422(http, people, form, field) -> None:
    r = http.post("/api/v1/events/with-photos", headers=people.worker.headers, data=form,
                  files=_files(jpeg()))
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field


def test_action_with_photos_checks_version_and_action(http, people) -> None:
    ev = _report(http, people.worker, _body(people), jpeg("cyan")).json()
    stale = http.post(f"/api/v1/events/{ev['id']}/actions/accept/with-photos",
                      headers={**people.commander.headers, "If-Match": '"7"'},
                      data={"body": "{}"}, files=_files(jpeg()))
    assert stale.status_code == 409
    unknown = http.post(f"/api/v1/events/{ev['id']}/actions/fly/with-photos",
                        headers={**people.commander.headers, "If-Match": '"1"'},
                        data={"body": "{}"}, files=_files(jpeg()))
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "action"
    detail = http.get(f"/api/v1/events/{ev['id']}", headers=people.commander.headers).json()
    assert [p["stage"] for p in detail["photos"]] == ["report"]
