"""From a chunk of source rows to rows of our fields: mapping, values, geometry, validation.

Used by the single-process import and, unchanged, by each Dask partition, so both paths check
rows the same way. Problems go to a ``Sink`` (the import's ProblemLog, or a list a worker sends
back to the driver).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import shapely
from pydantic import BaseModel, ValidationError

from geoserver.geo.h3cells import cells_at_resolutions
from spatial_etl.geometry import chunk_geometry
from spatial_etl.mapping import Resolved, column_values
from spatial_etl.sources import Chunk, SourceInfo
from spatial_etl.targets import Target, field_model

#: Fields that exports and API answers show masked (脱敏: 138****5678, 张*丰). A value with a
#: ``*`` in one of them came from such an output; writing it back would replace the real number
#: or name with its mask, so the row is refused. A person's name is masked too.
PERSONAL_FIELDS = frozenset({"leader_name", "leader_phone", "phone", "contact_name",
                             "contact_phone", "legal_representative", "document_number",
                             "reporter_name", "reporter_phone"})


def masked_field(target: Target, values: Mapping[str, Any]) -> str | None:
    """Return the first personal field whose value is masked, or None."""
    personal = PERSONAL_FIELDS | ({"name"} if target.name == "persons" else set())
    for name in sorted(personal & set(values)):
        value = values[name]
        if isinstance(value, str) and "*" in value:
            return name
    return None


class Sink(Protocol):
    """Where problems go."""

    def reject(self, file: str, row: int | None, column: str, reason: str, *,
               values: Mapping[str, Any] | None = None, wkt: str | None = None) -> None:
        """Record a rejected row."""

    def repair(self, file: str, row: int, column: str, reason: str) -> None:
        """Record a repair."""

    def note(self, file: str, row: int | None, column: str, reason: str) -> None:
        """Record a note."""


@dataclass
class ProblemList:
    """A Sink that keeps problems as plain tuples (to send from a worker to the driver)."""

    items: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)

    def reject(self, file: str, row: int | None, column: str, reason: str, *,
               values: Mapping[str, Any] | None = None, wkt: str | None = None) -> None:
        """Record a rejected row."""
        self.items.append(("reject", (file, row, column, reason),
                           {"values": dict(values or {}), "wkt": wkt}))

    def repair(self, file: str, row: int, column: str, reason: str) -> None:
        """Record a repair."""
        self.items.append(("repair", (file, row, column, reason), {}))

    def note(self, file: str, row: int | None, column: str, reason: str) -> None:
        """Record a note."""
        self.items.append(("note", (file, row, column, reason), {}))

    def replay(self, sink: Sink) -> None:
        """Send every recorded problem to another sink, in order."""
        for kind, args, kwargs in self.items:
            getattr(sink, kind)(*args, **kwargs)


@dataclass
class Rows:
    """A chunk's rows as our fields, with storage geometries; rejected rows already removed."""

    chunk: Chunk
    #: Positions of the kept rows in the chunk.
    index: list[int]
    rows: list[int]
    values: list[dict[str, Any]]
    geoms: npt.NDArray[np.object_]
    geocode: list[str | None]

    def source(self, k: int) -> dict[str, Any]:
        """Return the k-th kept row's source values (for the rejects file)."""
        return _source_values(self.chunk, self.index[k])


def _column_of(resolved: Resolved, name: str) -> str:
    return resolved.fields.get(name, name)


def field_values(chunk: Chunk, resolved: Resolved, target: Target) -> list[dict[str, Any]]:
    """Return each row's fields (mapped, converted, constants and defaults filled in)."""
    n = len(chunk.frame)
    specs = target.fields
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    mapping = resolved.mapping
    for name, column in resolved.fields.items():
        values = column_values(chunk.frame, column, mapping.values.get(name),
                               specs[name].kind)
        for row, value in zip(out, values, strict=True):
            if value is not None:
                row[name] = value
    if resolved.attributes:
        cols = {key: column_values(chunk.frame, col, None, "any")
                for key, col in resolved.attributes.items()}
        for i, row in enumerate(out):
            attrs = {k: v[i] for k, v in cols.items() if v[i] is not None}
            if attrs:
                row["attributes"] = {**(row.get("attributes") or {}), **attrs}
    fill = {**target.defaults, **mapping.constants}
    for row in out:
        for name, value in fill.items():
            row.setdefault(name, value)
    return out


def _source_values(chunk: Chunk, i: int) -> dict[str, Any]:
    values = {str(k): v for k, v in chunk.frame.iloc[i].to_dict().items()}
    if chunk.geometry is not None and chunk.geometry[i] is not None:
        values["geometry"] = shapely.to_wkt(chunk.geometry[i], rounding_precision=7)
    return values


def prepare_rows(chunk: Chunk, source: SourceInfo, resolved: Resolved, target: Target,
                 sink: Sink, seen_types: set[str],
                 only: Sequence[bool] | None = None) -> Rows:
    """Return a chunk's rows with checked, repaired storage geometries; report the rest.

    ``only`` (a mask over the chunk) keeps the rows of the current pass.
    """
    values = field_values(chunk, resolved, target)
    if only is not None:
        keep = np.flatnonzero(np.asarray(only, dtype=bool)).tolist()
        chunk = Chunk(chunk.first_row, chunk.frame.iloc[keep].reset_index(drop=True),
                      None if chunk.geometry is None else chunk.geometry[keep])
        rows = [chunk.first_row + i for i in keep]
        values = [values[i] for i in keep]
    else:
        rows = list(chunk.row_numbers)
    geo = _geometry(chunk, source, resolved, target, seen_types)
    geocode = _geocode_texts(chunk, resolved, target, values)
    out = Rows(chunk, [], [], [], np.empty(0, dtype=object), [])
    for i, row in enumerate(rows):
        if geo is not None and i in geo.rejected:
            sink.reject(source.label, row, geo.column, geo.rejected[i],
                        values=_source_values(chunk, i))
            continue
        masked = masked_field(target, values[i])
        if masked is not None:
            sink.reject(source.label, row, _column_of(resolved, masked),
                        f"{values[i][masked]!r} is masked (脱敏), as exports and lists show it; "
                        "give the full value or leave the column out",
                        values=_source_values(chunk, i))
            continue
        has_geom = geo is not None and geo.geoms[i] is not None
        if target.geometry_required and not has_geom and not geocode[i]:
            column = geo.column if geo is not None else "geometry"
            sink.reject(source.label, row, column, "no geometry (and no address to place it)",
                        values=_source_values(chunk, i))
            continue
        if geo is not None:
            for warning in geo.repaired.get(i, []):
                sink.repair(source.label, row, geo.column, warning)
        out.index.append(i)
        out.rows.append(row)
        out.values.append(values[i])
        out.geocode.append(None if has_geom else geocode[i])
    geoms = geo.geoms if geo is not None else np.full(len(rows), None, dtype=object)
    out.geoms = geoms[out.index] if out.index else np.empty(0, dtype=object)
    return out


def _geometry(chunk: Chunk, source: SourceInfo, resolved: Resolved, target: Target,
              seen_types: set[str]) -> Any:
    if not target.geometry:
        return None
    return chunk_geometry(chunk, source, resolved, expected=target.geometry,
                          seen_types=seen_types)


def _geocode_texts(chunk: Chunk, resolved: Resolved, target: Target,
                   values: list[dict[str, Any]]) -> list[str | None]:
    """Return each row's address text for geocoding (geocode column, else the target's)."""
    if "geocode" in resolved.roles:
        texts = column_values(chunk.frame, resolved.roles["geocode"], None, "str")
        return [None if t is None else str(t) for t in texts]
    if target.geocode_field:
        return [v.get(target.geocode_field) for v in values]
    return [None] * len(values)


# --- bulk rows -----------------------------------------------------------------------------------


@cache
def _fields_model(model: type[BaseModel]) -> type[BaseModel]:
    return field_model(model)


@dataclass
class Staged:
    """Rows ready for the stage: validated fields, geometries, H3 cells."""

    rows: list[int]
    codes: list[str]
    props: list[dict[str, Any]]
    geoms: npt.NDArray[np.object_]
    cells: dict[int, npt.NDArray[np.int64]]


def validate_bulk(rows: Rows, source: SourceInfo, resolved: Resolved, target: Target,
                  sink: Sink) -> Staged:
    """Validate each row with the service's model; compute H3 cells of the kept rows."""
    assert target.bulk is not None
    model = _fields_model(target.model)
    keep: list[int] = []
    props: list[dict[str, Any]] = []
    for i, values in enumerate(rows.values):
        try:
            item = model.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = str(err["loc"][0]) if err["loc"] else "?"
            sink.reject(source.label, rows.rows[i], _column_of(resolved, name),
                        f"{name}: {err['msg']} (got {err.get('input')!r})",
                        values=rows.source(i))
            continue
        keep.append(i)
        props.append(item.model_dump(mode="json", exclude_none=True))
    geoms = rows.geoms[keep] if keep else np.empty(0, dtype=object)
    cells: dict[int, npt.NDArray[np.int64]] = {}
    if len(geoms):
        # The same point as the services use: the footprint's point on surface.
        xy = shapely.get_coordinates(shapely.point_on_surface(geoms))
        cells = cells_at_resolutions(xy[:, 0], xy[:, 1], target.bulk.resolutions)
    return Staged([rows.rows[i] for i in keep], [p["code"] for p in props], props, geoms,
                  cells)
