"""Input files, read in chunks: Shapefile, GeoPackage, GeoJSON, KML (GDAL, through pyogrio),
CSV and xlsx (attribute tables whose geometry is lon/lat, WKT or address columns).

``open_source`` inspects a file once (format, layer, columns, row count, text encoding, CRS);
``iter_chunks`` then yields at most ``chunk`` rows at a time (pyogrio ``skip_features`` /
``max_features``, pandas ``chunksize``, openpyxl's read-only rows), so memory holds one chunk
whatever the file's size. Rows are numbered from 1 in file order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyogrio

from spatial_etl.crs import SourceCRS, resolve_crs
from spatial_etl.encoding import TextEncoding, csv_encoding, dbf_encoding
from spatial_etl.problems import EtlInputError

GDAL_SUFFIXES = {".shp": "Shapefile", ".gpkg": "GeoPackage", ".geojson": "GeoJSON",
                 ".json": "GeoJSON", ".geojsonl": "GeoJSONSeq", ".geojsons": "GeoJSONSeq",
                 ".kml": "KML", ".kmz": "KML", ".gml": "GML", ".fgb": "FlatGeobuf"}
TABLE_SUFFIXES = {".csv": "CSV", ".txt": "CSV", ".xlsx": "xlsx"}


@dataclass
class SourceInfo:
    """What a file holds, decided once before reading."""

    path: Path
    format: str
    layer: str | None
    columns: tuple[str, ...]
    rows: int | None
    crs: SourceCRS
    encoding: TextEncoding | None = None
    geometry_type: str | None = None
    notes: list[str] = field(default_factory=list)

    #: How messages name the file: its name, and the layer when it has several.
    label: str = ""

    def __post_init__(self) -> None:
        self.label = self.label or self.path.name

    @property
    def has_geometry(self) -> bool:
        """Return whether the format carries geometries of its own (not lon/lat columns)."""
        return self.format not in ("CSV", "xlsx")


@dataclass
class Chunk:
    """Up to ``chunk`` consecutive rows: attributes and, for GIS formats, geometries."""

    first_row: int
    frame: pd.DataFrame
    geometry: npt.NDArray[np.object_] | None = None

    @property
    def row_numbers(self) -> range:
        """Return the 1-based row numbers of the chunk's rows."""
        return range(self.first_row, self.first_row + len(self.frame))


def _layers(path: Path) -> list[str]:
    try:
        return [str(name) for name, _ in pyogrio.list_layers(path)]
    except Exception as exc:  # GDAL's errors name the file but not what to do
        raise EtlInputError(f"{path.name}: cannot be read as a GIS file ({exc})") from None


def _open_gdal(path: Path, fmt: str, layer: str | None, crs_option: str | None) -> SourceInfo:
    layers = _layers(path)
    if layer is not None and layer not in layers:
        raise EtlInputError(f"{path.name} has no layer {layer!r}; its layers: {', '.join(layers)}")
    if layer is None and len(layers) > 1:
        raise EtlInputError(f"{path.name} has several layers ({', '.join(layers)}): "
                            "say which with --layer")
    layer = layer or (layers[0] if layers else None)
    encoding = dbf_encoding(path) if fmt == "Shapefile" else None
    info = pyogrio.read_info(path, layer=layer,
                             **({"encoding": encoding.gdal} if encoding else {}))
    label = path.name if len(layers) <= 1 else f"{path.name}:{layer}"
    crs, note = resolve_crs(label, info.get("crs"), crs_option)
    source = SourceInfo(path, fmt, layer, tuple(str(c) for c in info["fields"]),
                        int(info["features"]) if info.get("features", -1) >= 0 else None, crs,
                        encoding, info.get("geometry_type"), label=label)
    source.notes += [n for n in (note, encoding.note if encoding else None) if n]
    return source


def _open_csv(path: Path, crs_option: str | None) -> SourceInfo:
    encoding = csv_encoding(path)
    try:
        header = pd.read_csv(path, nrows=0, encoding=encoding.codec, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise EtlInputError(f"{path.name}: not a CSV table ({exc})") from None
    rows, last = -1, b"\n"  # the header line is not a row
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            rows, last = rows + block.count(b"\n"), block[-1:]
    rows += int(last != b"\n")  # a last line without its newline is a row too
    crs, _ = resolve_crs(path.name, None, crs_option) if crs_option else (None, None)
    source = SourceInfo(path, "CSV", None, tuple(str(c) for c in header.columns), max(rows, 0),
                        crs or _NO_CRS, encoding)
    if encoding.note:
        source.notes.append(encoding.note)
    return source


def _open_xlsx(path: Path, layer: str | None, crs_option: str | None) -> SourceInfo:
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True, data_only=True)
    try:
        if layer is not None and layer not in wb.sheetnames:
            raise EtlInputError(f"{path.name} has no sheet {layer!r}; its sheets: "
                                f"{', '.join(wb.sheetnames)}")
        ws = wb[layer] if layer else wb.worksheets[0]
        header = next(ws.iter_rows(max_row=1, values_only=True), ())
        rows = (ws.max_row or 1) - 1
        sheet = ws.title
    finally:
        wb.close()
    columns = tuple("" if c is None else str(c).strip() for c in header)
    crs, _ = resolve_crs(path.name, None, crs_option) if crs_option else (None, None)
    return SourceInfo(path, "xlsx", sheet, columns, rows, crs or _NO_CRS)


#: Tables without coordinates (address text only) need no CRS; this marks "none given".
_NO_CRS = SourceCRS("none")


def open_source(path: Path, *, layer: str | None = None,
                crs_option: str | None = None) -> SourceInfo:
    """Inspect an input file: format, layer, columns, rows, encoding and CRS."""
    if not path.exists():
        raise EtlInputError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in GDAL_SUFFIXES:
        return _open_gdal(path, GDAL_SUFFIXES[suffix], layer, crs_option)
    if suffix in (".csv", ".txt"):
        return _open_csv(path, crs_option)
    if suffix == ".xlsx":
        return _open_xlsx(path, layer, crs_option)
    known = ", ".join(sorted({*GDAL_SUFFIXES, *TABLE_SUFFIXES}))
    raise EtlInputError(f"{path.name}: unknown file type {suffix!r}; expected one of {known}")


def _gdal_chunks(source: SourceInfo, chunk: int, start: int,
                 stop: int | None) -> Iterator[Chunk]:
    kwargs: dict[str, Any] = {"layer": source.layer}
    if source.encoding is not None:
        kwargs["encoding"] = source.encoding.gdal
    skip = start
    while stop is None or skip < stop:
        size = chunk if stop is None else min(chunk, stop - skip)
        frame = pyogrio.read_dataframe(source.path, skip_features=skip, max_features=size,
                                       **kwargs)
        if len(frame) == 0:
            return
        geometry = np.asarray(frame.geometry.array, dtype=object) if "geometry" in frame else None
        attrs = pd.DataFrame(frame.drop(columns="geometry", errors="ignore"))
        yield Chunk(skip + 1, attrs.reset_index(drop=True), geometry)
        skip += len(frame)
        if len(frame) < size:
            return


def _csv_chunks(source: SourceInfo, chunk: int) -> Iterator[Chunk]:
    assert source.encoding is not None
    first = 1
    # dtype=str keeps codes such as 007 and long ID numbers exactly as written.
    with pd.read_csv(source.path, chunksize=chunk, encoding=source.encoding.codec, dtype=str,
                     keep_default_na=False, skipinitialspace=True) as reader:
        for frame in reader:
            yield Chunk(first, frame.reset_index(drop=True))
            first += len(frame)


def _xlsx_chunks(source: SourceInfo, chunk: int) -> Iterator[Chunk]:
    from openpyxl import load_workbook

    wb = load_workbook(source.path, read_only=True, data_only=True)
    try:
        ws = wb[source.layer] if source.layer else wb.worksheets[0]
        rows = ws.iter_rows(min_row=2, values_only=True)
        first = 1
        while True:
            batch = [r for _, r in zip(range(chunk), rows, strict=False)]
            if not batch:
                return
            frame = pd.DataFrame([list(r)[:len(source.columns)] for r in batch],
                                 columns=list(source.columns), dtype=object)
            yield Chunk(first, frame)
            first += len(batch)
    finally:
        wb.close()


def iter_chunks(source: SourceInfo, chunk: int, *, start: int = 0,
                stop: int | None = None) -> Iterator[Chunk]:
    """Yield the file's rows ``chunk`` at a time (GIS formats: rows [start, stop) only)."""
    if chunk < 1:
        raise EtlInputError("--chunk must be at least 1")
    if source.format == "CSV":
        return _csv_chunks(source, chunk)
    if source.format == "xlsx":
        return _xlsx_chunks(source, chunk)
    return _gdal_chunks(source, chunk, start, stop)
