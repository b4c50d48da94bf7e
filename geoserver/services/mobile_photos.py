"""Photos taken on the phone (现场照片): the phone page's names for the one photo store.

Every photo of an event lives in ``geoserver.services.photos`` (checked from its bytes, stored
once by content with a thumbnail, EXIF time and position kept as evidence, linked to the
action it documents). This module keeps the names the phone page was built with.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from geoserver.config import PhotoSettings
from geoserver.domain.principal import Principal
from geoserver.services import photos as evidence
from geoserver.services.photos import PhotoPublic, PhotoStore, StoredPhoto

__all__ = ["MAX_PHOTOS", "MAX_PHOTO_BYTES", "MAX_PIXELS", "PhotoPublic", "PhotoStore",
           "StoredPhoto", "event_photos", "inspect_photo", "link_photos", "photo_content",
           "read_uploads"]

_DEFAULTS = PhotoSettings.model_fields
MAX_PHOTO_BYTES: int = _DEFAULTS["max_photo_bytes"].default
MAX_PHOTOS: int = _DEFAULTS["max_photos_per_request"].default
#: Larger images are refused before decoding (a small file can claim a huge canvas).
MAX_PIXELS: int = _DEFAULTS["max_pixels"].default


def inspect_photo(data: bytes, field: str = "photos") -> StoredPhoto:
    """Check that ``data`` is an accepted image within the default limits; describe it."""
    return evidence.inspect_photo(data, field)


def read_uploads(store: PhotoStore, files: list[bytes]) -> list[StoredPhoto]:
    """Check and store the photos of one request, outside any transaction."""
    uploads = store.prepare_all(files)
    for upload in uploads:
        store.write(upload)
    return [u.photo for u in uploads]


def link_photos(session: Session, *, actor: Principal, event_id: int, stage: str,
                photos: Sequence[StoredPhoto]) -> None:
    """Attach stored photos to an event action (the event's path locates them)."""
    evidence.link(session, actor=actor, event_id=event_id, stage=stage, photos=photos)


def event_photos(session: Session, *, actor: Principal, event_id: int) -> list[PhotoPublic]:
    """List an event's photos in the order they were taken (scope by row-level security)."""
    return evidence.event_photos(session, actor=actor, event_id=event_id)


def photo_content(session: Session, *, actor: Principal, photo_id: int,
                  store: PhotoStore) -> tuple[bytes, str]:
    """Return a photo's bytes (without GPS) and content type, if its event is in scope."""
    found = evidence.photo_file(session, actor=actor, photo_id=photo_id, store=store)
    return found.data, found.content_type
