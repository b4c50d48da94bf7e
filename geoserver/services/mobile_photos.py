"""Photos taken on the phone (现场照片): checked, stored once by content under the data
directory, and linked to the event action they document.

The phone resizes photos before sending (a 12-megapixel original is ~4 MB; 1600 px JPEG is
~250 kB), but the server trusts nothing: the bytes must decode as JPEG, PNG or WebP within
the size and pixel limits. Files are named by their SHA-256, so a photo retried from the
phone's offline queue, or attached twice, is stored once. A file written for a transaction
that then rolls back is left unreferenced; it is harmless and a clean-up can remove it.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput, NotFound, PermissionDenied, TooLarge

#: Pillow format name → stored content type.
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
MAX_PHOTO_BYTES = 5 * 1024 * 1024
MAX_PHOTOS = 6
#: Larger images are refused before decoding (a small file can claim a huge canvas).
MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class StoredPhoto:
    """A photo on disk: its content hash, type and size."""

    sha256: str
    content_type: str
    bytes: int
    width: int
    height: int


@dataclass(frozen=True)
class PhotoPublic:
    """A photo of an event as the phone lists it."""

    id: int
    stage: str
    content_type: str
    bytes: int
    width: int
    height: int
    uploaded_by: int | None
    uploaded_at: str
    url: str


def inspect_photo(data: bytes, field: str = "photos") -> StoredPhoto:
    """Check that ``data`` is a JPEG, PNG or WebP image within the limits; describe it.

    Raises:
        TooLarge: more than MAX_PHOTO_BYTES, or more than MAX_PIXELS pixels.
        InvalidInput: empty, or not a readable image of an accepted type.
    """
    if not data:
        raise InvalidInput("the photo is empty", field=field)
    if len(data) > MAX_PHOTO_BYTES:
        raise TooLarge(f"a photo may have at most {MAX_PHOTO_BYTES} bytes, got {len(data)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt, (width, height) = img.format, img.size
                if width * height > MAX_PIXELS:
                    raise TooLarge(f"a photo may have at most {MAX_PIXELS} pixels")
                img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InvalidInput("not a readable JPEG, PNG or WebP image", field=field) from None
    if fmt not in FORMATS:
        raise InvalidInput(f"photos must be JPEG, PNG or WebP, not {fmt}", field=field)
    return StoredPhoto(hashlib.sha256(data).hexdigest(), FORMATS[fmt], len(data), width, height)


class PhotoStore:
    """Content-addressed photo files under ``<data_dir>/files/photos`` (part of backups)."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "files" / "photos"

    def path_of(self, sha256: str) -> Path:
        """Return where the photo with this hash lives (two-level fan-out)."""
        return self.root / sha256[:2] / f"{sha256}.bin"

    def put(self, data: bytes, field: str = "photos") -> StoredPhoto:
        """Check and store a photo once; return what was stored."""
        photo = inspect_photo(data, field)
        target = self.path_of(photo.sha256)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a reader never sees half a file, two writers the same bytes.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        return photo

    def read(self, sha256: str) -> bytes:
        """Return a stored photo's bytes."""
        try:
            return self.path_of(sha256).read_bytes()
        except FileNotFoundError:
            raise NotFound("the photo file is missing from the data directory") from None


def read_uploads(store: PhotoStore, files: list[bytes]) -> list[StoredPhoto]:
    """Check and store the photos of one request (at most MAX_PHOTOS)."""
    if len(files) > MAX_PHOTOS:
        raise InvalidInput(f"at most {MAX_PHOTOS} photos per request", field="photos")
    return [store.put(data, f"photos[{i}]") for i, data in enumerate(files)]


def link_photos(session: Session, *, actor: Principal, event_id: int, stage: str,
                photos: list[StoredPhoto]) -> None:
    """Attach stored photos to an event action (the event's path locates them)."""
    for p in photos:
        session.execute(text(
            "INSERT INTO mobile_photo (event_id, stage, sha256, content_type, bytes, width, "
            "height, uploaded_by, path) SELECT e.id, :s, :h, :ct, :b, :w, :ht, :u, e.path "
            "FROM event e WHERE e.id = :e ON CONFLICT (event_id, stage, sha256) DO NOTHING"),
            {"e": event_id, "s": stage, "h": p.sha256, "ct": p.content_type, "b": p.bytes,
             "w": p.width, "ht": p.height, "u": actor.user_id})


_PHOTO_URL = "/api/v1/mobile/photos/{}"


def event_photos(session: Session, *, actor: Principal, event_id: int) -> list[PhotoPublic]:
    """List an event's photos in the order they were taken (scope by row-level security)."""
    if not actor.can("event.read"):
        raise PermissionDenied("reading events needs the permission event.read")
    if session.execute(text("SELECT 1 FROM event WHERE id = :e"), {"e": event_id}).first() is None:
        raise NotFound(f"no event {event_id}")
    rows = session.execute(text(
        "SELECT id, stage, content_type, bytes, width, height, uploaded_by, uploaded_at "
        "FROM mobile_photo WHERE event_id = :e ORDER BY id"), {"e": event_id}).all()
    return [PhotoPublic(r.id, r.stage, r.content_type, r.bytes, r.width, r.height,
                        r.uploaded_by, r.uploaded_at.isoformat(), _PHOTO_URL.format(r.id))
            for r in rows]


def photo_content(session: Session, *, actor: Principal, photo_id: int,
                  store: PhotoStore) -> tuple[bytes, str]:
    """Return a photo's bytes and content type, if its event is in the caller's scope."""
    if not actor.can("event.read"):
        raise PermissionDenied("reading events needs the permission event.read")
    row = session.execute(text("SELECT sha256, content_type FROM mobile_photo WHERE id = :i"),
                          {"i": photo_id}).first()
    if row is None:
        raise NotFound(f"no photo {photo_id}")
    return store.read(row.sha256), row.content_type
