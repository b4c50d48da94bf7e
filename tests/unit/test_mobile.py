"""Pure pieces of the phone's server side: client keys, request hashes and the photo checks."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from geoserver.errors import InvalidInput, TooLarge
from geoserver.services.mobile import check_client_key, request_hash
from geoserver.services.mobile_photos import (
    MAX_PHOTO_BYTES,
    MAX_PHOTOS,
    PhotoStore,
    inspect_photo,
    read_uploads,
)


def image(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize("key", ["3f2b8a1c-0d4e-4c55-9a7b-1e2f3a4b5c6d", "abcdefgh", "A_b-" * 16])
def test_client_keys_accepted(key: str) -> None:
    assert check_client_key(key) == key


@pytest.mark.parametrize("key", ["short", "a" * 65, "with space12", "semi;colon12", "",
                                 "中文中文中文中文"])
def test_client_keys_refused(key: str) -> None:
    with pytest.raises(InvalidInput) as e:
        check_client_key(key)
    assert e.value.problems[0].field == "client_key"


def test_request_hash_ignores_key_order_but_not_content() -> None:
    a = request_hash("report", {"x": 1, "y": "二"}, [b"p1"])
    assert a == request_hash("report", {"y": "二", "x": 1}, [b"p1"])
    assert a != request_hash("report", {"x": 1, "y": "三"}, [b"p1"])
    assert a != request_hash("report", {"x": 1, "y": "二"}, [b"p2"])
    assert a != request_hash("handle", {"x": 1, "y": "二"}, [b"p1"])


@pytest.mark.parametrize(("fmt", "content_type"), [("JPEG", "image/jpeg"), ("PNG", "image/png"),
                                                   ("WEBP", "image/webp")])
def test_accepted_formats(fmt: str, content_type: str) -> None:
    photo = inspect_photo(image(fmt))
    assert (photo.content_type, photo.width, photo.height) == (content_type, 40, 30)
    assert len(photo.sha256) == 64


@pytest.mark.parametrize("data", [b"", b"GIF89a", image("GIF"), image("BMP"),
                                  image("JPEG")[:200]])
def test_refused_photos(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        inspect_photo(data)


def test_oversized_photo() -> None:
    with pytest.raises(TooLarge):
        inspect_photo(b"\xff\xd8" + b"0" * MAX_PHOTO_BYTES)


def test_too_many_pixels_refused_before_decoding() -> None:
    # A small file can claim a huge canvas: 7000 × 7000 one-bit pixels is ~50 kB of PNG.
    with pytest.raises(TooLarge):
        inspect_photo(image("PNG", (7000, 7000), mode="1"))


def test_store_is_content_addressed(tmp_path) -> None:
    store = PhotoStore(tmp_path)
    data = image("JPEG")
    first, again = store.put(data), store.put(data)
    assert first == again
    assert store.read(first.sha256) == data
    assert [p.name for p in (tmp_path / "files" / "photos").rglob("*.bin")] == [
        f"{first.sha256}.bin"]


def test_at_most_six_photos(tmp_path) -> None:
    with pytest.raises(InvalidInput):
        read_uploads(PhotoStore(tmp_path), [image("JPEG")] * (MAX_PHOTOS + 1))
