"""``etl export``: a layer to GeoPackage, Shapefile, GeoJSON, CSV or xlsx, scoped, watermarked
and audited like the API's exports.

Rows come from the OGC API Features service (``geoserver.services.features``): the same
collections, CQL2 filters, permissions and masking of personal fields as ``/ogc``, under the
actor's scope (``--region`` narrows it), 10,000 features a page by keyset, so memory holds one
page. Output CRS: CGCS2000 (EPSG:4490, the storage numbers), WGS84 (EPSG:4326, the same numbers
at metre level) or GCJ-02 (converted; no EPSG code exists, so GIS files carry the WGS84 label
and say GCJ-02 in their metadata). Every file carries the watermark (who exported, when): the
first line of a CSV, the first row of an xlsx, a ``watermark`` member of the GeoJSON, the
layer metadata of a GeoPackage, a ``.txt`` beside a Shapefile (which has no metadata); the
Shapefile's ``.cpg`` says UTF-8.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from shapely.geometry import shape

from geoserver.domain.watermark import watermark
from geoserver.errors import PermissionDenied
from geoserver.geo.crs import InputCRS, from_storage, parse_input_crs
from geoserver.services import features
from geoserver.services.audit import audit
from spatial_etl.db import EtlEnv
from spatial_etl.problems import EtlInputError

#: ``--layer`` names and the feature collections they read.
LAYERS = {"buildings": "buildings", "grids": "grids", "villages": "villages",
          "townships": "townships", "counties": "counties", "addresses": "standard_addresses",
          "places": "key_places", "components": "city_components",
          "enterprises": "enterprises", "events": "events"}
FORMATS = ("gpkg", "shp", "geojson", "csv", "xlsx")
PAGE = 10_000
#: Excel refuses longer cells; such geometries are left out of the WKT column (and counted).
_XLSX_CELL = 32_767
_GEOMETRY_TYPES = {"MultiPolygon": "MultiPolygon", "Point": "Point", "Geometry": "Unknown"}
_DTYPES = {"integer": "Int64", "number": "Float64", "boolean": "boolean"}


@dataclass
class ExportResult:
    """What an export wrote."""

    layer: str
    format: str
    crs: str
    rows: int = 0
    files: list[Path] = field(default_factory=list)
    watermark: str = ""
    skipped_wkt: int = 0
    seconds: float = 0.0


def output_crs(value: str) -> InputCRS:
    """Parse ``--crs`` of an export (CGCS2000, WGS84, GCJ-02, BD-09 and their spellings)."""
    try:
        return parse_input_crs(value)
    except ValueError as exc:
        raise EtlInputError(f"--crs: {exc}") from None


def _label(crs: InputCRS) -> str:
    return {InputCRS.CGCS2000: "EPSG:4490"}.get(crs, "EPSG:4326")


def _pages(session: Any, q: features.ItemsQuery) -> Iterator[list[features.Feature]]:
    """Yield every page of an items query (keyset paging, one page in memory)."""
    while True:
        result = features.PageResult()
        page = list(features.iter_items(session, q, result))
        if page:
            yield page
        if result.next_cursor is None:
            return
        q = dataclasses.replace(q, cursor=result.next_cursor)


def _geometries(page: list[features.Feature], crs: InputCRS) -> np.ndarray:
    geoms = np.array([None if g is None else shape(json.loads(g)) for _, g, _ in page],
                     dtype=object)
    if crs in (InputCRS.GCJ02, InputCRS.BD09):
        has = np.array([g is not None for g in geoms], dtype=bool)
        geoms[has] = shapely.transform(geoms[has], lambda c: np.column_stack(
            from_storage(c[:, 0], c[:, 1], crs)))
    return geoms


def _frame(page: list[features.Feature], spec: features.CollectionSpec) -> pd.DataFrame:
    """Return a page's properties with one dtype per property type (stable across pages)."""
    data: dict[str, Any] = {}
    for prop in spec.properties:
        values = [props.get(prop.name) for _, _, props in page]
        if prop.type == "date-time":
            data[prop.name] = [None if v is None else v.isoformat() for v in values]
        elif prop.type in _DTYPES:
            data[prop.name] = pd.array(values, dtype=_DTYPES[prop.type])
        else:
            data[prop.name] = pd.Series(values, dtype=object)
    return pd.DataFrame(data)


class _Writer:
    """One output file; ``write`` takes a page, ``close`` finishes it."""

    files: list[Path]
    skipped_wkt = 0

    def write(self, page: list[features.Feature], geoms: np.ndarray) -> None:
        """Write one page."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish the file."""


class _GisWriter(_Writer):
    def __init__(self, out: Path, fmt: str, spec: features.CollectionSpec, crs: InputCRS,
                 mark: str) -> None:
        if fmt == "shp" and spec.geometry_type == "Geometry":
            raise EtlInputError(f"a Shapefile holds one geometry type, and {spec.id} mixes "
                                "points and outlines: export to gpkg or geojson")
        self.out, self.fmt, self.spec, self.crs, self.mark = out, fmt, spec, crs, mark
        self.first = True
        self.files = [out]

    def write(self, page: list[features.Feature], geoms: np.ndarray) -> None:
        frame = gpd.GeoDataFrame(_frame(page, self.spec), geometry=list(geoms),
                                 crs=_label(self.crs))
        kwargs: dict[str, Any] = {"layer": self.spec.id, "append": not self.first,
                                  "geometry_type": _GEOMETRY_TYPES[self.spec.geometry_type]}
        if self.fmt == "shp":
            kwargs.update(driver="ESRI Shapefile", encoding="UTF-8")
        else:
            kwargs["driver"] = "GPKG"
            if self.first:
                kwargs["layer_metadata"] = {"WATERMARK": self.mark, "DESCRIPTION": self.mark,
                                            "COORDINATES": self.crs.value}
        pyogrio.write_dataframe(frame, self.out, **kwargs)
        self.first = False

    def close(self) -> None:
        if self.fmt == "shp":
            # Shapefiles have no metadata: the watermark travels beside them.
            note = self.out.with_suffix(".txt")
            note.write_text(f"{self.mark}\ncoordinates: {self.crs.value}\n", encoding="utf-8")
            self.files = [self.out.with_suffix(s) for s in (".shp", ".shx", ".dbf", ".prj",
                                                            ".cpg", ".txt")]


class _GeoJsonWriter(_Writer):
    def __init__(self, out: Path, spec: features.CollectionSpec, crs: InputCRS,
                 mark: str) -> None:
        self.fh: TextIO = out.open("w", encoding="utf-8")
        self.fh.write('{"type":"FeatureCollection","watermark":' + json.dumps(
            mark, ensure_ascii=False) + ',"coordinates":' + json.dumps(crs.value)
            + ',"features":[\n')
        self.first, self.spec, self.files = True, spec, [out]

    def write(self, page: list[features.Feature], geoms: np.ndarray) -> None:
        for (fid, _, props), geom in zip(page, geoms, strict=True):
            feature = {"type": "Feature", "id": fid,
                       "geometry": None if geom is None else shapely.geometry.mapping(geom),
                       "properties": props}
            self.fh.write(("" if self.first else ",\n")
                          + json.dumps(feature, ensure_ascii=False, default=str))
            self.first = False

    def close(self) -> None:
        self.fh.write("\n]}\n")
        self.fh.close()


def _wkt(geom: Any) -> str:
    return "" if geom is None else str(shapely.to_wkt(geom, rounding_precision=7))


class _CsvWriter(_Writer):
    def __init__(self, out: Path, spec: features.CollectionSpec, mark: str) -> None:
        # BOM first so that Excel reads UTF-8 Chinese; then the watermark line, as the API does.
        self.fh = out.open("w", newline="", encoding="utf-8-sig")
        self.fh.write(f"# {mark}\n")
        self.names = [p.name for p in spec.properties]
        self.csv = csv.writer(self.fh)
        self.csv.writerow(["id", *self.names, "wkt"])
        self.files = [out]

    def write(self, page: list[features.Feature], geoms: np.ndarray) -> None:
        for (fid, _, props), geom in zip(page, geoms, strict=True):
            self.csv.writerow([fid, *(_cell(props.get(n)) for n in self.names), _wkt(geom)])

    def close(self) -> None:
        self.fh.close()


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


class _XlsxWriter(_Writer):
    def __init__(self, out: Path, spec: features.CollectionSpec, mark: str) -> None:
        from openpyxl import Workbook

        self.out = out
        self.wb = Workbook(write_only=True)
        self.ws = self.wb.create_sheet(spec.id[:31])
        self.ws.append([mark])
        self.names = [p.name for p in spec.properties]
        self.ws.append(["id", *self.names, "wkt"])
        self.files = [out]

    def write(self, page: list[features.Feature], geoms: np.ndarray) -> None:
        for (fid, _, props), geom in zip(page, geoms, strict=True):
            wkt = _wkt(geom)
            if len(wkt) > _XLSX_CELL:
                wkt = ""
                self.skipped_wkt += 1
            self.ws.append([fid, *(_cell(props.get(n)) for n in self.names), wkt])

    def close(self) -> None:
        self.wb.save(self.out)


def _writer(fmt: str, out: Path, spec: features.CollectionSpec, crs: InputCRS,
            mark: str) -> _Writer:
    if fmt in ("gpkg", "shp"):
        return _GisWriter(out, fmt, spec, crs, mark)
    if fmt == "geojson":
        return _GeoJsonWriter(out, spec, crs, mark)
    if fmt == "csv":
        return _CsvWriter(out, spec, mark)
    return _XlsxWriter(out, spec, mark)


def run_export(env: EtlEnv, *, layer: str, fmt: str, crs: str, out: Path,
               cql_filter: str | None = None,
               progress: Callable[[int], None] | None = None) -> ExportResult:
    """Export a layer the actor may read (in their scope) to a file; audit it."""
    if layer not in LAYERS:
        raise EtlInputError(f"--layer must be one of {', '.join(LAYERS)}")
    if fmt not in FORMATS:
        raise EtlInputError(f"--format must be one of {', '.join(FORMATS)}")
    out_crs = output_crs(crs)
    started = time.perf_counter()
    actor = env.actor
    if not actor.can("export"):
        raise PermissionDenied(f"{actor.username} may not export (needs the permission export)")
    mark = watermark(actor)
    result = ExportResult(layer, fmt, out_crs.value, watermark=mark)
    out.parent.mkdir(parents=True, exist_ok=True)
    with env.session() as session:
        spec = features.collection_for(session, actor=actor, collection_id=LAYERS[layer])
        params = {"limit": str(PAGE)}
        if cql_filter:
            params.update({"filter": cql_filter, "filter-lang": "cql2-text"})
        query = features.parse_items_query(spec, params)
        writer = _writer(fmt, out, spec, out_crs, mark)
        try:
            for page in _pages(session, query):
                writer.write(page, _geometries(page, out_crs))
                result.rows += len(page)
                if progress is not None:
                    progress(len(page))
        finally:
            writer.close()
        result.files = [f for f in writer.files if f.exists()]
        result.skipped_wkt = writer.skipped_wkt
        audit(session, actor=actor, action="export", object_kind=layer, object_id=out.name,
              detail={"format": fmt, "crs": out_crs.value, "filter": cql_filter,
                      "scope": list(actor.scope), "rows": result.rows, "via": "etl"})
        session.commit()
    result.seconds = time.perf_counter() - started
    return result
