"""Photo evidence (现场照片): one store for every photo of an event, from the phone or the browser.

A photo documents an action — the report, the handling result, the on-site verification — and
is kept as evidence. The server trusts nothing the client says about it: the type is sniffed
from the bytes (JPEG, PNG, WebP; HEIC when ``pillow-heif`` is installed), the size and the pixel
count are bounded before decoding (a small file can claim a huge canvas), and what EXIF says
about when (DateTimeOriginal) and where (GPS) it was taken is copied into the row.

Files live under ``<data_dir>/files/photos``, named by the SHA-256 of the original bytes, so a
photo sent twice is stored once. Next to each original: a small JPEG thumbnail, and — when the
original carries a GPS position or is HEIC — the copy readers are served (no GPS, JPEG for HEIC).
The original stays untouched for evidence and is given only to holders of
``event.photo_original``, audited. Files are written atomically (temporary file + rename) and
removed again when the transaction that wrote them rolls back.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel
from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from geoserver.config import GOVERNANCE_TZ, PhotoSettings
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput, NotFound, PermissionDenied, TooLarge
from geoserver.services.audit import NO_CONTEXT, AuditContext, audit

try:  # HEIC (iPhones' default) only when the optional opener is installed.
    from pillow_heif import register_heif_opener  # type: ignore[import-not-found]

    register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - depends on the installation
    HEIF_SUPPORTED = False

#: Pillow format name → content type of the original.
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "HEIF": "image/heic"}
#: Browsers show these; anything else is served as a JPEG copy.
SHOWABLE = frozenset({"image/jpeg", "image/png", "image/webp"})
ORIGINAL_PERMISSION = "event.photo_original"
#: Advisory-lock namespace: one writer per photo hash until its transaction ends.
_LOCK_NAMESPACE = 75_001
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_HEIF_BRANDS = (b"ftypheic", b"ftypheix", b"ftyphevc", b"ftypmif1", b"ftypmsf1", b"ftypheim")
DEFAULT_SETTINGS = PhotoSettings.model_construct()
#: Files written in a connection's open transaction, removed if it rolls back.
_PENDING: WeakKeyDictionary[Connection, list[Path]] = WeakKeyDictionary()


@dataclass(frozen=True)
class StoredPhoto:
    """What the store knows about a photo's bytes: hash, type, size and EXIF evidence."""

    sha256: str
    content_type: str
    bytes: int
    width: int
    height: int
    taken_at: datetime | None = None
    lon: float | None = None
    lat: float | None = None
    #: What readers get, and whether it is a copy without the GPS position.
    served_content_type: str = "image/jpeg"
    stripped: bool = False
    #: Disk taken by the original, its thumbnail and its served copy.
    stored_bytes: int = 0


@dataclass(frozen=True)
class PhotoUpload:
    """A checked upload ready to store: the original and the files made from it."""

    photo: StoredPhoto
    data: bytes
    thumbnail: bytes
    #: The copy served to readers, or None when the original is served as it is.
    served: bytes | None


class PhotoPublic(BaseModel):
    """A photo of an event as listed: the action it documents and the EXIF evidence."""

    id: int
    event_id: int
    stage: str
    history_id: int | None
    content_type: str
    bytes: int
    width: int
    height: int
    taken_at: datetime | None
    #: The EXIF position is shown to holders of event.photo_original only.
    has_position: bool
    taken_lon: float | None
    taken_lat: float | None
    taken_distance_m: float | None
    uploaded_by: int | None
    uploaded_at: datetime
    url: str
    thumbnail_url: str


@dataclass(frozen=True)
class PhotoFile:
    """Bytes to send for a photo, with their type and a strong validator."""

    data: bytes
    content_type: str
    etag: str


# --- checking -----------------------------------------------------------------------------------


def _too_large(detail: str, field: str) -> TooLarge:
    return TooLarge(detail, field=field)


def _open_checked(data: bytes, field: str, settings: PhotoSettings) -> str:
    """Return the Pillow format of ``data`` after checking its size, pixels and structure."""
    if not data:
        raise InvalidInput("the photo is empty", field=field)
    if len(data) > settings.max_photo_bytes:
        raise _too_large(f"a photo may have at most {settings.max_photo_bytes} bytes, got "
                         f"{len(data)}", field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt, (width, height) = str(img.format), img.size
                if width * height > settings.max_pixels:
                    raise _too_large(f"a photo may have at most {settings.max_pixels} pixels, "
                                     f"got {width}×{height}", field)
                img.verify()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise _too_large(f"a photo may have at most {settings.max_pixels} pixels", field) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        if data[4:12] in _HEIF_BRANDS and not HEIF_SUPPORTED:
            raise InvalidInput("HEIC photos are not accepted by this server: send JPEG",
                               field=field) from None
        raise InvalidInput("not a readable JPEG, PNG or WebP image", field=field) from None
    if fmt not in FORMATS:
        raise InvalidInput(f"photos must be JPEG, PNG or WebP, not {fmt}", field=field)
    return fmt


def prepare(data: bytes, field: str = "photos",
            settings: PhotoSettings = DEFAULT_SETTINGS) -> PhotoUpload:
    """Check an upload and make its thumbnail and served copy (no disk write yet).

    Raises:
        TooLarge: more bytes or pixels than allowed (names ``field``).
        InvalidInput: empty, not an image, truncated, or not an accepted type.
    """
    fmt = _open_checked(data, field, settings)
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            exif = img.getexif()
            taken_at, lon, lat = exif_evidence(exif)
            served, served_type = _served_copy(data, img, fmt, exif, has_gps=lon is not None)
        with Image.open(io.BytesIO(data)) as img:
            thumb = _thumbnail(img, settings)
    except (OSError, SyntaxError, ValueError, EOFError):
        # A truncated or corrupt body passes the header checks but not decoding.
        raise InvalidInput("the image data is truncated or corrupt", field=field) from None
    photo = StoredPhoto(
        sha256=hashlib.sha256(data).hexdigest(), content_type=FORMATS[fmt], bytes=len(data),
        width=width, height=height, taken_at=taken_at, lon=lon, lat=lat,
        served_content_type=served_type, stripped=served is not None,
        stored_bytes=len(data) + len(thumb) + len(served or b""))
    return PhotoUpload(photo, data, thumb, served)


def prepare_all(files: Sequence[bytes], settings: PhotoSettings = DEFAULT_SETTINGS
                ) -> list[PhotoUpload]:
    """Check the photos of one request (``photos[i]`` names a bad one)."""
    if len(files) > settings.max_photos_per_request:
        raise InvalidInput(f"at most {settings.max_photos_per_request} photos per request",
                           field="photos")
    return [prepare(data, f"photos[{i}]", settings) for i, data in enumerate(files)]


def inspect_photo(data: bytes, field: str = "photos",
                  settings: PhotoSettings = DEFAULT_SETTINGS) -> StoredPhoto:
    """Check that ``data`` is an accepted image within the limits; describe it."""
    return prepare(data, field, settings).photo


# --- EXIF ---------------------------------------------------------------------------------------


def _exif_time(raw: Any, offset: Any) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        naive = datetime.strptime(raw.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    if not 1990 <= naive.year <= 2100:
        return None
    tz: Any = GOVERNANCE_TZ  # cameras in China without an offset tag keep local time
    if isinstance(offset, str) and len(offset.strip("\x00")) == 6:
        try:
            sign = -1 if offset[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
        except ValueError:
            pass
    return naive.replace(tzinfo=tz)


def _degrees(value: Any, ref: Any, negative: str) -> float | None:
    try:
        d, m, s = (float(x) for x in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    deg = d + m / 60 + s / 3600
    if not math.isfinite(deg):
        return None
    return -deg if isinstance(ref, str) and ref.strip("\x00").upper() == negative else deg


def exif_evidence(exif: Image.Exif) -> tuple[datetime | None, float | None, float | None]:
    """Return EXIF DateTimeOriginal and the GPS position (lon, lat), where present and sane."""
    sub = exif.get_ifd(_EXIF_IFD)
    taken = _exif_time(sub.get(36867) or exif.get(306), sub.get(36881))
    gps = exif.get_ifd(_GPS_IFD)
    lat = _degrees(gps.get(2), gps.get(1), "S")
    lon = _degrees(gps.get(4), gps.get(3), "W")
    # Receivers without a fix write zeros; (0, 0) is in the Gulf of Guinea, not in Wenzhou.
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180) or (
            lat == 0 and lon == 0):
        return taken, None, None
    return taken, round(lon, 7), round(lat, 7)


def _without_gps(exif: Image.Exif) -> bytes:
    exif.get_ifd(_EXIF_IFD)  # loaded sub-IFDs are written back by tobytes()
    exif.pop(_GPS_IFD, None)
    return exif.tobytes()


def _splice_jpeg_exif(data: bytes, exif: bytes) -> bytes | None:
    """Return the JPEG with its APP1 Exif segment replaced, image data untouched (lossless)."""
    if len(exif) > 65533 or data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF and data[i + 1] != 0xDA:
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if data[i + 1] == 0xE1 and data[i + 4:i + 10] == b"Exif\x00\x00":
            segment = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
            return data[:i] + segment + data[i + 2 + length:]
        i += 2 + length
    return None


def _reencode(img: Image.Image, fmt: str, exif: bytes | None) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        rgb = img if img.mode in ("RGB", "L") else _flatten(img)
        rgb.save(out, "JPEG", quality=90, exif=exif or b"")
    elif fmt == "PNG":
        img.save(out, "PNG", exif=exif or b"")
    else:
        img.save(out, "WEBP", quality=90, exif=exif or b"")
    return out.getvalue()


def _served_copy(data: bytes, img: Image.Image, fmt: str, exif: Image.Exif, *,
                 has_gps: bool) -> tuple[bytes | None, str]:
    """Return the copy readers get (None: the original) and its content type."""
    content_type = FORMATS[fmt]
    if content_type in SHOWABLE and not has_gps and _GPS_IFD not in exif:
        return None, content_type
    clean = _without_gps(exif)
    if fmt == "JPEG":
        spliced = _splice_jpeg_exif(data, clean)
        if spliced is not None:
            return spliced, content_type
    img.load()
    if content_type in SHOWABLE:
        return _reencode(img, fmt, clean), content_type
    return _reencode(img, "JPEG", clean), "image/jpeg"


def _flatten(img: Image.Image) -> Image.Image:
    """Return an RGB image, transparent parts on white (JPEG has no alpha)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        base = Image.new("RGB", rgba.size, "white")
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base
    return img.convert("RGB")


def _thumbnail(img: Image.Image, settings: PhotoSettings) -> bytes:
    """Return a small JPEG, upright (EXIF orientation applied) and without metadata."""
    px = settings.thumbnail_px
    if img.format == "JPEG":
        img.draft("RGB", (px * 2, px * 2))  # decode at a reduced scale: fast, little memory
    small = ImageOps.exif_transpose(img)
    small = _flatten(small) if small.mode not in ("RGB", "L") else small
    small.thumbnail((px, px))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=settings.thumbnail_quality, optimize=True)
    return out.getvalue()


# --- the store ----------------------------------------------------------------------------------


def _atomic_write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename: a reader never sees half a file, two writers the same bytes.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_on_rollback(session: Session, paths: list[Path]) -> None:
    """Delete ``paths`` if the session's transaction rolls back.

    The listener runs *before* the ROLLBACK reaches the database, so the advisory lock on the
    photo's hash is still held: a concurrent upload of the same bytes, waiting on that lock,
    finds the file gone and writes it again rather than trusting a file about to vanish.
    """
    conn = session.connection()
    pending = _PENDING.get(conn)
    if pending is None:
        pending = _PENDING[conn] = _track(conn)
    pending.extend(paths)


def _track(conn: Connection) -> list[Path]:
    """Return a list of files that the connection's rollback removes and its commit keeps."""
    files: list[Path] = []

    def on_rollback(_: Connection) -> None:
        for p in files:
            p.unlink(missing_ok=True)
        files.clear()

    sa_event.listen(conn, "rollback", on_rollback)
    sa_event.listen(conn, "commit", lambda _: files.clear())
    return files


class PhotoStore:
    """Content-addressed photo files under ``<data_dir>/files/photos`` (part of backups)."""

    def __init__(self, data_dir: Path, settings: PhotoSettings | None = None) -> None:
        self.root = Path(data_dir) / "files" / "photos"
        self.settings = settings or DEFAULT_SETTINGS

    def path_of(self, sha256: str) -> Path:
        """Return where the original with this hash lives (two-level fan-out)."""
        return self.root / sha256[:2] / f"{sha256}.bin"

    def thumbnail_path(self, sha256: str) -> Path:
        """Return where the photo's thumbnail lives."""
        return self.root / sha256[:2] / f"{sha256}.thumb.jpg"

    def served_path(self, sha256: str) -> Path:
        """Return where the photo's served copy (without GPS) lives."""
        return self.root / sha256[:2] / f"{sha256}.served"

    def prepare(self, data: bytes, field: str = "photos") -> PhotoUpload:
        """Check an upload against this store's limits (see ``prepare``)."""
        return prepare(data, field, self.settings)

    def prepare_all(self, files: Sequence[bytes]) -> list[PhotoUpload]:
        """Check the photos of one request against this store's limits."""
        return prepare_all(files, self.settings)

    def write(self, upload: PhotoUpload, session: Session | None = None) -> list[Path]:
        """Write the photo's files that are missing; return those written.

        With a session, the photo's hash is locked until the transaction ends, and the files
        written are removed if it rolls back.
        """
        sha = upload.photo.sha256
        if session is not None:
            session.execute(text("SELECT pg_advisory_xact_lock(:ns, hashtext(:h))"),
                            {"ns": _LOCK_NAMESPACE, "h": sha})
        files = [(self.path_of(sha), upload.data),
                 (self.thumbnail_path(sha), upload.thumbnail)]
        if upload.served is not None:
            files.append((self.served_path(sha), upload.served))
        written = []
        for path, data in files:
            if not path.exists():
                _atomic_write(path, data)
                written.append(path)
        if session is not None and written:
            _remove_on_rollback(session, written)
        return written

    def put(self, data: bytes, field: str = "photos") -> StoredPhoto:
        """Check and store a photo once, outside any transaction; return what was stored."""
        upload = self.prepare(data, field)
        self.write(upload)
        return upload.photo

    def read(self, sha256: str) -> bytes:
        """Return a stored original's bytes."""
        try:
            return self.path_of(sha256).read_bytes()
        except FileNotFoundError:
            raise NotFound("the photo file is missing from the data directory") from None

    def read_thumbnail(self, sha256: str) -> bytes:
        """Return the thumbnail, making it first for photos stored before thumbnails were."""
        path = self.thumbnail_path(sha256)
        if not path.exists():
            upload = self._remade(sha256)
            _atomic_write(path, upload.thumbnail)
            return upload.thumbnail
        return path.read_bytes()

    def read_served(self, sha256: str) -> bytes:
        """Return the served copy (no GPS), making it again if it went missing."""
        path = self.served_path(sha256)
        if not path.exists():
            upload = self._remade(sha256)
            data = upload.served if upload.served is not None else upload.data
            _atomic_write(path, data)
            return data
        return path.read_bytes()

    def _remade(self, sha256: str) -> PhotoUpload:
        # Limits were checked at upload; a stored file is re-derived whatever they are now.
        lenient = self.settings.model_copy(update={"max_photo_bytes": 2**31,
                                                   "max_pixels": 200_000_000})
        return prepare(self.read(sha256), "photo", lenient)


# --- linking to events --------------------------------------------------------------------------


def _check_quotas(session: Session, actor: Principal, event_id: int,
                  photos: Sequence[StoredPhoto], settings: PhotoSettings) -> None:
    adding = sum(p.stored_bytes or p.bytes for p in photos)
    used = session.execute(text(
        "SELECT coalesce(sum(stored_bytes), 0) FROM event_photo WHERE event_id = :e"),
        {"e": event_id}).scalar_one()
    if used + adding > settings.max_event_bytes:
        raise _too_large(f"the photos of one event may take at most {settings.max_event_bytes} "
                         f"bytes ({used} used)", "photos")
    if actor.user_id is not None:
        mine = session.execute(text(
            "SELECT coalesce(sum(stored_bytes), 0) FROM event_photo WHERE uploaded_by = :u "
            "AND uploaded_at > now() - interval '1 day'"), {"u": actor.user_id}).scalar_one()
        if mine + adding > settings.max_user_bytes_per_day:
            raise _too_large(f"you may upload at most {settings.max_user_bytes_per_day} bytes of "
                             "photos a day", "photos")
    total = session.execute(text("SELECT gridgov_meta.photo_store_bytes()")).scalar_one()
    if total + adding > settings.quota_bytes:
        raise _too_large("the photo store is full (its quota is reached): tell the "
                         "administrator", "photos")


_LINK = """
INSERT INTO event_photo (event_id, history_id, stage, sha256, content_type, bytes, width, height,
    served_content_type, stripped, stored_bytes, taken_at, taken_geom, taken_distance_m,
    uploaded_by)
SELECT e.id,
       (SELECT max(h.id) FROM event_history h WHERE h.event_id = e.id AND h.action = :s),
       :s, :h, :ct, :b, :w, :ht, :sct, :strip, :sb, :at,
       CASE WHEN CAST(:x AS float8) IS NULL THEN NULL ELSE ST_SetSRID(ST_Point(:x, :y), 4490) END,
       CASE WHEN CAST(:x AS float8) IS NULL OR e.geom IS NULL THEN NULL
            ELSE ST_Distance(e.geom::geography, ST_SetSRID(ST_Point(:x, :y), 4490)::geography)
       END,
       :u
FROM event e WHERE e.id = :e
ON CONFLICT (event_id, stage, sha256) DO NOTHING
"""


def link(session: Session, *, actor: Principal, event_id: int, stage: str,
         photos: Sequence[StoredPhoto], settings: PhotoSettings = DEFAULT_SETTINGS) -> None:
    """Record stored photos as evidence of an event's action (quotas checked first)."""
    if photos:
        _check_quotas(session, actor, event_id, photos, settings)
        _insert(session, actor, event_id, stage, photos)


def _insert(session: Session, actor: Principal, event_id: int, stage: str,
            photos: Sequence[StoredPhoto]) -> None:
    for p in photos:
        session.execute(text(_LINK), {
            "e": event_id, "s": stage, "h": p.sha256, "ct": p.content_type, "b": p.bytes,
            "w": p.width, "ht": p.height, "sct": p.served_content_type, "strip": p.stripped,
            "sb": p.stored_bytes or p.bytes, "at": p.taken_at, "x": p.lon, "y": p.lat,
            "u": actor.user_id})


def attach(session: Session, *, actor: Principal, event_id: int, stage: str,
           uploads: Sequence[PhotoUpload], store: PhotoStore) -> None:
    """Store checked uploads and record them as evidence of an action, in the caller's
    transaction (a rollback removes the files it wrote).

    Raises:
        TooLarge: a quota (per event, per user per day, the whole store) would be exceeded.
    """
    if not uploads:
        return
    photos = [u.photo for u in uploads]
    _check_quotas(session, actor, event_id, photos, store.settings)
    for u in uploads:
        store.write(u, session)
    _insert(session, actor, event_id, stage, photos)


# --- reading ------------------------------------------------------------------------------------

_PHOTO_URL = "/api/v1/events/photos/{}"
_COLUMNS = ("id, event_id, stage, history_id, served_content_type, bytes, width, height, "
            "taken_at, ST_X(taken_geom) AS lon, ST_Y(taken_geom) AS lat, taken_distance_m, "
            "uploaded_by, uploaded_at, sha256, stripped")


def _need_read(actor: Principal) -> None:
    if not actor.can("event.read"):
        raise PermissionDenied("reading events needs the permission event.read")


def _public(row: Any, actor: Principal) -> PhotoPublic:
    shown = actor.can(ORIGINAL_PERMISSION)
    return PhotoPublic(
        id=row.id, event_id=row.event_id, stage=row.stage, history_id=row.history_id,
        content_type=row.served_content_type, bytes=row.bytes, width=row.width,
        height=row.height, taken_at=row.taken_at, has_position=row.lon is not None,
        taken_lon=row.lon if shown else None, taken_lat=row.lat if shown else None,
        taken_distance_m=row.taken_distance_m, uploaded_by=row.uploaded_by,
        uploaded_at=row.uploaded_at, url=_PHOTO_URL.format(row.id),
        thumbnail_url=_PHOTO_URL.format(row.id) + "/thumbnail")


def event_photos(session: Session, *, actor: Principal, event_id: int) -> list[PhotoPublic]:
    """List an event's photos in upload order (scope by row-level security; else NotFound)."""
    _need_read(actor)
    if session.execute(text("SELECT 1 FROM event WHERE id = :e"), {"e": event_id}).first() is None:
        raise NotFound(f"no event {event_id}")
    return photos_of(session, actor=actor, event_id=event_id)


def photos_of(session: Session, *, actor: Principal, event_id: int) -> list[PhotoPublic]:
    """List the photos of an event the caller has loaded already (no checks)."""
    rows = session.execute(text(f"SELECT {_COLUMNS} FROM event_photo WHERE event_id = :e "
                                "ORDER BY id"), {"e": event_id}).all()
    return [_public(r, actor) for r in rows]


def photo_file(session: Session, *, actor: Principal, photo_id: int, store: PhotoStore,
               variant: str = "full", context: AuditContext = NO_CONTEXT) -> PhotoFile:
    """Return a photo's bytes to send: ``full`` (no GPS), ``thumbnail`` or ``original``.

    Raises:
        NotFound: no such photo, or its event is outside the caller's jurisdiction.
        PermissionDenied: ``original`` without event.photo_original.
    """
    _need_read(actor)
    row = session.execute(text(
        "SELECT id, event_id, sha256, content_type, served_content_type, stripped "
        "FROM event_photo WHERE id = :i"), {"i": photo_id}).first()
    if row is None:
        raise NotFound(f"no photo {photo_id}")
    sha = str(row.sha256)
    if variant == "thumbnail":
        return PhotoFile(store.read_thumbnail(sha), "image/jpeg", f'"{sha}-t"')
    if variant == "original":
        if not actor.can(ORIGINAL_PERMISSION):
            raise PermissionDenied(f"the original photo needs the permission "
                                   f"{ORIGINAL_PERMISSION}")
        # The original may carry the photographer's position: a read of personal data.
        audit(session, actor=actor, action="event.photo_original", object_kind="event_photo",
              object_id=str(row.id), detail={"event_id": row.event_id}, context=context)
        return PhotoFile(store.read(sha), str(row.content_type), f'"{sha}"')
    if variant != "full":
        raise InvalidInput("variant must be full, thumbnail or original", field="variant")
    data = store.read_served(sha) if row.stripped else store.read(sha)
    return PhotoFile(data, str(row.served_content_type), f'"{sha}-s"')

