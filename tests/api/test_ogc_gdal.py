"""GDAL's OAPIF driver (Debian gdal-bin: ogrinfo, ogr2ogr) and OWSLib against the live /ogc."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import httpx
import pytest

from tests.support import users
from tests.support.users import make_user

pytestmark = pytest.mark.skipif(shutil.which("ogrinfo") is None or
                                shutil.which("ogr2ogr") is None,
                                reason="GDAL command-line tools (Debian gdal-bin) not installed")

WUMA = "330302006"


@pytest.fixture(scope="module")
def ogc_url(live_server) -> str:
    return live_server + "/ogc"


@pytest.fixture(scope="module")
def analyst(module_engine) -> users.TestUser:
    return make_user(module_engine, "gdal_analyst", roles=["analyst"], scope=["330300"])


@pytest.fixture(scope="module")
def township(module_engine) -> users.TestUser:
    return make_user(module_engine, "gdal_wuma", roles=["township_commander"], scope=[WUMA])


def gdal(tool: str, user: users.TestUser, *args: str, debug: bool = False) -> str:
    """Run a GDAL tool with the user's token in GDAL_HTTP_HEADERS; return stdout (+stderr)."""
    env = dict(os.environ, CPL_DEBUG="ON" if debug else "OFF", GDAL_HTTP_TIMEOUT="60")
    proc = subprocess.run(
        [tool, "--config", "GDAL_HTTP_HEADERS", f"Authorization: Bearer {user.token}", *args],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + (proc.stderr if debug else "")


def server_ids(ogc_url: str, user: users.TestUser, **params: str) -> set[str]:
    r = httpx.get(f"{ogc_url}/collections/grids/items", headers=user.headers,
                  params={"limit": "10000", **params}, timeout=60)
    assert r.status_code == 200, r.text
    return {f["id"] for f in r.json()["features"]}


def feature_ids(ogrinfo_out: str) -> set[str]:
    return set(re.findall(r"^\s+id \(String\) = (\S+)$", ogrinfo_out, re.M))


def test_ogrinfo_lists_collections(ogc_url, analyst) -> None:
    out = gdal("ogrinfo", analyst, "-ro", "-q", f"OAPIF:{ogc_url}")
    for layer in ("counties", "townships", "villages", "grids"):
        assert re.search(rf"^\d+: {layer}\b", out, re.M), out


def test_ogrinfo_pages_through_items_with_page_size(ogc_url, analyst) -> None:
    out = gdal("ogrinfo", analyst, "-ro", "-oo", "PAGE_SIZE=7", f"OAPIF:{ogc_url}", "grids",
               debug=True)
    ids = feature_ids(out)
    assert ids == server_ids(ogc_url, analyst)
    pages = re.findall(r"Fetch\(\S+/collections/grids/items\?\S*limit=7\S*cursor=", out)
    assert len(pages) >= len(ids) // 7  # it followed our next links page by page


def test_ogrinfo_spatial_and_attribute_filters(ogc_url, analyst) -> None:
    all_ids = server_ids(ogc_url, analyst)
    bbox = ("120.69", "28.01", "120.70", "28.02")
    spat = feature_ids(gdal("ogrinfo", analyst, "-ro", "-spat", *bbox, f"OAPIF:{ogc_url}",
                            "grids"))
    assert spat == server_ids(ogc_url, analyst, bbox=",".join(bbox))
    assert 0 < len(spat) < len(all_ids)
    one = sorted(all_ids)[3]
    name = httpx.get(f"{ogc_url}/collections/grids/items/{one}", headers=analyst.headers,
                     timeout=60).json()["properties"]["name"]
    out = gdal("ogrinfo", analyst, "-ro", "-where", f"name = '{name}'", f"OAPIF:{ogc_url}",
               "grids", debug=True)
    assert feature_ids(out) == {one}
    assert re.search(r"Fetch\(\S+/collections/grids/items\?\S*name=", out)  # done server-side
    big = feature_ids(gdal("ogrinfo", analyst, "-ro", "-where", "households > 600",
                           f"OAPIF:{ogc_url}", "grids"))
    assert big == server_ids(ogc_url, analyst, filter="households > 600")


def test_ogr2ogr_writes_a_geopackage(ogc_url, township, tmp_path) -> None:
    target = tmp_path / "grids.gpkg"
    gdal("ogr2ogr", township, "-f", "GPKG", str(target), f"OAPIF:{ogc_url}", "grids",
         "-oo", "PAGE_SIZE=7")
    info = gdal("ogrinfo", township, "-ro", "-so", str(target), "grids")
    count = int(re.search(r"Feature Count: (\d+)", info).group(1))  # type: ignore[union-attr]
    mine = server_ids(ogc_url, township)
    assert count == len(mine) > 0
    assert all(i.startswith(WUMA) for i in mine)  # the token's scope, not the whole city


def test_owslib_lists_collections_and_fetches_items(ogc_url, analyst, monkeypatch) -> None:
    import owslib.ogcapi
    from owslib.ogcapi.features import Features

    # OWSLib adds our headers to its module-wide default dict: keep the token out of it
    monkeypatch.setattr(owslib.ogcapi, "REQUEST_HEADERS", dict(owslib.ogcapi.REQUEST_HEADERS))
    api = Features(ogc_url + "/", headers=dict(analyst.headers))
    assert "grids" in api.feature_collections()
    assert "grids" in {c["id"] for c in api.collections()["collections"]}
    page = api.collection_items("grids", limit=5)
    assert page["numberReturned"] == 5 and len(page["features"]) == 5
    assert page["numberMatched"] == len(server_ids(ogc_url, analyst))
    found = api.collection_items("grids", bbox=[120.69, 28.01, 120.70, 28.02], limit=100)
    assert {f["id"] for f in found["features"]} == server_ids(
        ogc_url, analyst, bbox="120.69,28.01,120.7,28.02")
    queryables = api.collection_queryables("grids")
    assert "households" in queryables["properties"]
