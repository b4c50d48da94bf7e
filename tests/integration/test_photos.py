"""The photo store (现场照片) against real PostGIS and a real data directory: type sniffing,
size and pixel limits, EXIF evidence, thumbnails, quotas, rollback, dedup and scope.

Tests that only roll back use the shared demo session; those that must commit (a rollback that
removes a file, a concurrent upload of the same bytes) use this module's own database.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import Engine, text

from geoserver.config import PhotoSettings, SecuritySettings
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session, set_scope
from geoserver.domain.principal import SYSTEM, Principal
from geoserver.errors import InvalidInput, NotFound, PermissionDenied, TooLarge
from geoserver.security.crypto import crypto_from_settings
from geoserver.services import auth, event_actions, event_types, events, photos
from geoserver.services.photos import PhotoStore
from tests.support.mobile import load_catalogue
from tests.support.places import point_in_session

CRYPTO = crypto_from_settings(SecuritySettings())
TOWNSHIP = "330302006"
GRID = "330302006045001"
OTHER_TOWNSHIP = "330302024"
#: 温州 五马街道, roughly: where the EXIF of the test photos says they were taken.
GPS = ((28.0, 1.0, 12.5), (120.0, 39.0, 30.0))


def image(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), color: str = "red",
          mode: str = "RGB", *, taken: str | None = None, gps: bool = False,
          orientation: int | None = None) -> bytes:
    """Return an image in ``fmt``, with the EXIF asked for."""
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    if orientation:
        exif[0x0112] = orientation
    if taken:
        exif.get_ifd(0x8769)[36867] = taken
    if gps:
        g = exif.get_ifd(0x8825)
        g[1], g[2], g[3], g[4] = "N", GPS[0], "E", GPS[1]
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, fmt, exif=exif)
    return out.getvalue()


def _principal(session, username: str) -> Principal:
    set_scope(session, SYSTEM_SCOPE)
    uid = session.execute(text("SELECT id FROM app_user WHERE username = :u"),
                          {"u": username}).scalar_one()
    p = auth.principal_for(session, uid)
    assert p is not None
    return p


def _report(session, actor: Principal, *, grid: str = GRID, description: str = "占道经营",
            **kw) -> events.EventDetail:
    set_scope(session, actor.scope)
    lon, lat = point_in_session(session, grid)
    body = {"type_code": "0401", "description": description, "crs": "CGCS2000",
            "location": {"type": "Point", "coordinates": [lon, lat]}}
    return events.report_event(session, actor=actor, data=body, crypto=CRYPTO, **kw)


def _files(store: PhotoStore) -> list[str]:
    return sorted(p.name for p in store.root.rglob("*") if p.is_file())


# --- checking the bytes ---------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "content_type"), [
    ("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")])
def test_type_is_sniffed_from_the_bytes(fmt: str, content_type: str) -> None:
    photo = photos.inspect_photo(image(fmt), "photos[0]")
    assert (photo.content_type, photo.width, photo.height) == (content_type, 64, 48)
    assert photo.served_content_type == content_type and not photo.stripped


@pytest.mark.parametrize("data", [
    b"GIF89a not really", image("GIF"), image("BMP"), image("TIFF"),
    b"%PDF-1.7\n", "你好".encode(), image("JPEG", (640, 480))[:1200]])
def test_not_an_accepted_image_names_the_field(data: bytes) -> None:
    with pytest.raises(InvalidInput) as e:
        photos.prepare(data, "photos[2]")
    assert e.value.problems[0].field == "photos[2]"


def test_heic_without_its_opener_is_refused_by_name() -> None:
    if photos.HEIF_SUPPORTED:
        pytest.skip("pillow-heif is installed: HEIC is accepted")
    fake = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    with pytest.raises(InvalidInput, match="HEIC"):
        photos.prepare(fake, "photos[0]")


def test_oversized_is_too_large_naming_the_field() -> None:
    limits = PhotoSettings(max_photo_bytes=10_000)
    big = image("PNG", (400, 400), mode="RGB", color="white")
    noisy = io.BytesIO()
    Image.effect_noise((400, 400), 64).save(noisy, "PNG")
    with pytest.raises(TooLarge) as e:
        photos.prepare(noisy.getvalue(), "photos[1]", limits)
    assert e.value.extra == {"field": "photos[1]"}
    assert photos.prepare(big, "photos[0]", limits).photo.bytes < 10_000


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # 30000 × 30000 one-bit pixels compress to ~100 kB; decoded they would take 900 MB.
    bomb = io.BytesIO()
    Image.new("1", (30_000, 30_000)).save(bomb, "PNG")
    assert len(bomb.getvalue()) < 200_000
    with pytest.raises(TooLarge) as e:
        photos.prepare(bomb.getvalue(), "photos[0]")
    assert e.value.extra == {"field": "photos[0]"}
    # Below Pillow's own alarm, the configured limit still applies.
    with pytest.raises(TooLarge, match="pixels"):
        photos.prepare(image("PNG", (500, 400)), "photos[0]", PhotoSettings(max_pixels=100_000))


def test_exif_time_and_position_are_kept_and_the_served_copy_drops_gps() -> None:
    data = image(taken="2026:05:01 09:30:15", gps=True, orientation=6, size=(400, 300))
    up = photos.prepare(data)
    p = up.photo
    assert p.taken_at is not None and p.taken_at.isoformat() == "2026-05-01T09:30:15+08:00"
    assert (p.lat, p.lon) == pytest.approx((28.0201389, 120.6583333))
    assert p.stripped and up.served is not None and up.data == data
    served = Image.open(io.BytesIO(up.served)).getexif()
    assert dict(served.get_ifd(0x8825)) == {}
    # Only the metadata changed: the time and orientation stay, the image data is the same.
    assert served.get_ifd(0x8769)[36867] == "2026:05:01 09:30:15" and served[0x0112] == 6
    sos = data.index(b"\xff\xda")
    assert up.served.endswith(data[sos:])


def test_exif_with_a_zero_fix_and_an_offset() -> None:
    exif = Image.Exif()
    exif[0x010F] = "cam"
    sub = exif.get_ifd(0x8769)
    sub[36867], sub[36881] = "2025:12:31 23:59:59", "+00:00"
    g = exif.get_ifd(0x8825)
    g[1], g[2], g[3], g[4] = "N", (0.0, 0.0, 0.0), "E", (0.0, 0.0, 0.0)
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "JPEG", exif=exif)
    p = photos.prepare(out.getvalue()).photo
    assert p.taken_at is not None and p.taken_at.isoformat() == "2025-12-31T23:59:59+00:00"
    assert p.lon is None and p.lat is None


def test_thumbnail_is_small_upright_jpeg_without_metadata() -> None:
    up = photos.prepare(image(size=(4000, 3000), orientation=6, gps=True))
    thumb = Image.open(io.BytesIO(up.thumbnail))
    # Orientation 6 means "rotate 90°": the 4000 × 3000 landscape shows as a portrait.
    assert thumb.format == "JPEG" and thumb.size == (240, 320)
    assert not thumb.getexif()
    png = photos.prepare(image("PNG", (1000, 500), mode="RGBA", color="#00000000"))
    assert Image.open(io.BytesIO(png.thumbnail)).size == (320, 160)


# --- storing with events ------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> PhotoStore:
    return PhotoStore(tmp_path)


@pytest.fixture
def worker(demo) -> Principal:
    event_types.initialize_catalogue(demo, actor=SYSTEM)
    return _principal(demo, f"w{GRID}")


def test_report_with_photos_links_them_to_the_report(demo, store, worker) -> None:
    data = image(taken="2026:05:01 09:30:15", gps=True)
    ev = _report(demo, worker, photos=[data, image("PNG")], photo_store=store)
    assert [(p.stage, p.content_type) for p in ev.photos] == [
        ("report", "image/jpeg"), ("report", "image/png")]
    report_row = next(h.id for h in ev.history if h.action == "report")
    assert {p.history_id for p in ev.photos} == {report_row}
    first = ev.photos[0]
    # A grid worker is not cleared for the position; the distance to the event is evidence.
    assert first.has_position and first.taken_lon is None and first.taken_distance_m > 0
    assert first.taken_at is not None
    files = _files(store)
    assert sum(n.endswith(".bin") for n in files) == 2
    assert sum(n.endswith(".thumb.jpg") for n in files) == 2
    assert sum(n.endswith(".served") for n in files) == 1
    # The phone page's view reads the same rows.
    assert demo.execute(text("SELECT count(*) FROM mobile_photo WHERE event_id = :e"),
                        {"e": ev.id}).scalar_one() == 2


def test_handle_with_photos_documents_the_handle_row(demo, store, worker) -> None:
    commander = _principal(demo, f"t{TOWNSHIP}")
    ev = _report(demo, commander)
    for action, body in (("accept", {}), ("dispatch", {"lead": {"grid_code": GRID}})):
        ev = event_actions.act(demo, actor=commander, event_id=ev.id, action=action,
                               data={"version": ev.version, **body})
    set_scope(demo, worker.scope)
    ev = event_actions.act(demo, actor=worker, event_id=ev.id, action="sign",
                           data={"version": ev.version})
    ev = event_actions.act(demo, actor=worker, event_id=ev.id, action="handle",
                           data={"version": ev.version, "result": "已清理"},
                           photos=[image(color="green")], photo_store=store)
    handle_row = next(h.id for h in ev.history if h.action == "handle")
    assert [(p.stage, p.history_id) for p in ev.photos] == [("handle", handle_row)]


def test_a_bad_photo_fails_the_report_before_anything_is_written(demo, store, worker) -> None:
    set_scope(demo, worker.scope)
    before = demo.execute(text("SELECT count(*) FROM event")).scalar_one()
    with pytest.raises(InvalidInput) as e:
        _report(demo, worker, photos=[image(), b"not an image"], photo_store=store)
    assert e.value.problems[0].field == "photos[1]"
    assert demo.execute(text("SELECT count(*) FROM event")).scalar_one() == before
    assert _files(store) == []


def test_same_bytes_are_stored_once(demo, store, worker) -> None:
    data = image(color="blue")
    a = _report(demo, worker, photos=[data, data], photo_store=store)
    b = _report(demo, worker, photos=[data], photo_store=store)
    assert len(a.photos) == 1 and len(b.photos) == 1       # one row per event and stage
    assert _files(store) == sorted([f"{photos.prepare(data).photo.sha256}.bin",
                                    f"{photos.prepare(data).photo.sha256}.thumb.jpg"])
    shas = demo.execute(text("SELECT DISTINCT sha256 FROM event_photo WHERE event_id IN "
                             "(:a, :b)"), {"a": a.id, "b": b.id}).scalars().all()
    assert len(shas) == 1


@pytest.mark.parametrize(("limits", "message"), [
    ({"max_event_bytes": 20_000}, "one event"),
    ({"max_user_bytes_per_day": 20_000}, "a day"),
    ({"quota_bytes": 1024 * 1024}, "full"),
])
def test_quotas(demo, tmp_path, worker, limits, message) -> None:
    store = PhotoStore(tmp_path, PhotoSettings(**limits))
    noisy = io.BytesIO()
    Image.effect_noise((120, 120), 64).convert("RGB").save(noisy, "PNG")
    # The total quota is on the whole store: fill it as far as this test needs.
    if "quota_bytes" in limits:
        ev0 = _report(demo, worker)
        demo.execute(text(
            "INSERT INTO event_photo (event_id, stage, sha256, content_type, bytes, width, "
            "height, served_content_type, stored_bytes) VALUES (:e, 'report', repeat('a', 64), "
            "'image/jpeg', 1, 1, 1, 'image/jpeg', 1048000)"), {"e": ev0.id})
    with pytest.raises(TooLarge, match=message) as e:
        _report(demo, worker, photos=[noisy.getvalue()], photo_store=store)
    assert e.value.extra == {"field": "photos"}


def test_another_jurisdiction_sees_no_photo(demo, store, worker) -> None:
    ev = _report(demo, worker, photos=[image()], photo_store=store)
    other = _principal(demo, f"t{OTHER_TOWNSHIP}")
    set_scope(demo, other.scope)
    with pytest.raises(NotFound):
        photos.photo_file(demo, actor=other, photo_id=ev.photos[0].id, store=store)
    with pytest.raises(NotFound):
        photos.event_photos(demo, actor=other, event_id=ev.id)


def test_original_needs_the_permission_and_is_audited(demo, store, worker) -> None:
    data = image(gps=True)
    ev = _report(demo, worker, photos=[data], photo_store=store)
    pid = ev.photos[0].id
    served = photos.photo_file(demo, actor=worker, photo_id=pid, store=store)
    assert served.data != data and served.etag.endswith('-s"')
    assert not Image.open(io.BytesIO(served.data)).getexif().get_ifd(0x8825)
    with pytest.raises(PermissionDenied):
        photos.photo_file(demo, actor=worker, photo_id=pid, store=store, variant="original")
    commander = _principal(demo, f"t{TOWNSHIP}")
    set_scope(demo, commander.scope)
    assert photos.photo_file(demo, actor=commander, photo_id=pid, store=store,
                             variant="original").data == data
    listed = photos.event_photos(demo, actor=commander, event_id=ev.id)[0]
    assert listed.taken_lat == pytest.approx(28.0201389)
    assert demo.execute(text("SELECT count(*) FROM audit_log WHERE action = "
                             "'event.photo_original' AND object_id = :p"),
                        {"p": str(pid)}).scalar_one() == 1


def test_missing_thumbnail_is_made_again(demo, store, worker) -> None:
    ev = _report(demo, worker, photos=[image(size=(800, 600))], photo_store=store)
    sha = demo.execute(text("SELECT sha256 FROM event_photo WHERE id = :p"),
                       {"p": ev.photos[0].id}).scalar_one()
    store.thumbnail_path(sha).unlink()
    thumb = photos.photo_file(demo, actor=worker, photo_id=ev.photos[0].id, store=store,
                              variant="thumbnail")
    assert Image.open(io.BytesIO(thumb.data)).size == (320, 240)
    assert store.thumbnail_path(sha).exists()


def test_photo_rows_are_append_only(demo, store, worker) -> None:
    ev = _report(demo, worker, photos=[image()], photo_store=store)
    with pytest.raises(Exception, match="append-only|permission denied"):
        with demo.begin_nested():
            demo.execute(text("UPDATE event_photo SET stage = 'handle' WHERE id = :p"),
                         {"p": ev.photos[0].id})


# --- transactions (this module's own database, which commits) ----------------------------------


@pytest.fixture(scope="module")
def engine(module_engine) -> Engine:
    """This module's app-role engine, with the event-type catalogue loaded."""
    load_catalogue(module_engine)
    return module_engine


def test_rollback_removes_the_files_commit_keeps_them(engine, store) -> None:
    kept, dropped = image(color="navy"), image(color="olive", gps=True)
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        _report(s, _principal(s, f"w{GRID}"), photos=[kept], photo_store=store)
    with pytest.raises(RuntimeError), scoped_session(engine, SYSTEM_SCOPE) as s:
        _report(s, _principal(s, f"w{GRID}"), photos=[kept, dropped], photo_store=store)
        assert len(_files(store)) == 5          # the new original, thumbnail and served copy
        raise RuntimeError("the request failed after the photos were written")
    sha = photos.prepare(kept).photo.sha256
    assert _files(store) == [f"{sha}.bin", f"{sha}.thumb.jpg"]
    assert not list(store.root.rglob(".incoming-*"))


def test_concurrent_same_bytes_survive_the_other_rolling_back(engine, store) -> None:
    # A writes the file and rolls back; B, uploading the same bytes meanwhile, waits on A's
    # lock on the hash, then finds the file gone and writes it again.
    data = image(color="teal")
    wrote, b_done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def a() -> None:
        try:
            with scoped_session(engine, SYSTEM_SCOPE) as s:
                _report(s, _principal(s, f"w{GRID}"), photos=[data], photo_store=store)
                wrote.set()
                b_done.wait(3)                    # B is blocked on the lock: it cannot finish
                raise RuntimeError("A fails")
        except RuntimeError:
            pass
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def b() -> None:
        try:
            wrote.wait(30)
            with scoped_session(engine, SYSTEM_SCOPE) as s:
                ev = _report(s, _principal(s, f"w{GRID}"), photos=[data], photo_store=store)
                assert len(ev.photos) == 1
            b_done.set()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    sha = photos.prepare(data).photo.sha256
    assert store.path_of(sha).read_bytes() == data and store.thumbnail_path(sha).exists()
