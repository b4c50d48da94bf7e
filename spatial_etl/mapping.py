"""Column mapping: which source column fills which of our fields.

A mapping file (JSON or YAML) looks like::

    columns:            # source column → our field; attributes.<key> keeps it in attributes;
      BLDG_NO: code     # null drops the column
      MC: name
      JZLB: category
      OLD_ID: attributes.old_id
    values:             # our field → {value in the file: our value}
      category: {住宅: residential, 商业: commercial}
    constants:          # our field → the value for every row
      floors: 6
    unmapped: error     # other columns: error (default) | ignore | attributes

Without a mapping, a column fills the field of the same name (case-insensitive), and
``lon``/``lat`` (经度/纬度, longitude/latitude, lng), ``wkt`` and ``geocode`` (address text
used only to place the row) are read as the row's location. Any other column is an error that
names it, so a misspelt column never goes silently missing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from spatial_etl.problems import EtlInputError

#: Location roles a column may play besides our fields.
GEOMETRY_ROLES = ("lon", "lat", "wkt", "geocode")
_ROLE_ALIASES = {"lon": "lon", "lng": "lon", "long": "lon", "longitude": "lon", "经度": "lon",
                 "lat": "lat", "latitude": "lat", "纬度": "lat",
                 "wkt": "wkt", "geometry_wkt": "wkt", "geom_wkt": "wkt",
                 "geocode": "geocode"}
_POLICIES = ("error", "ignore", "attributes")
_LIST_SPLIT = re.compile(r"[;,，；、|]")


@dataclass(frozen=True)
class ColumnMapping:
    """A mapping file's content (empty: match columns by name)."""

    columns: Mapping[str, str | None] = field(default_factory=dict)
    values: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    constants: Mapping[str, Any] = field(default_factory=dict)
    unmapped: str = "error"
    source: str = "(no mapping file)"


def load_mapping(path: Path | None) -> ColumnMapping:
    """Read a JSON or YAML mapping file; raise EtlInputError naming what is wrong in it."""
    if path is None:
        return ColumnMapping()
    if not path.exists():
        raise EtlInputError(f"no such mapping file: {path}")
    text = path.read_text(encoding="utf-8-sig")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml and json raise different things; both mean "fix the file"
        raise EtlInputError(f"{path.name}: cannot be parsed ({exc})") from None
    if not isinstance(data, dict):
        raise EtlInputError(f"{path.name}: expected a mapping with 'columns', 'values', "
                            "'constants', 'unmapped'")
    unknown = sorted(set(data) - {"columns", "values", "constants", "unmapped"})
    if unknown:
        raise EtlInputError(f"{path.name}: unknown section(s) {', '.join(unknown)}")
    unmapped = data.get("unmapped", "error")
    if unmapped not in _POLICIES:
        raise EtlInputError(f"{path.name}: unmapped must be one of {', '.join(_POLICIES)}")
    for section in ("columns", "values", "constants"):
        if not isinstance(data.get(section, {}), dict):
            raise EtlInputError(f"{path.name}: '{section}' must be a mapping")
    values = {str(k): {str(a): b for a, b in (v or {}).items()}
              for k, v in data.get("values", {}).items()}
    return ColumnMapping({str(k): (None if v is None else str(v))
                          for k, v in data.get("columns", {}).items()},
                         values, dict(data.get("constants", {})), unmapped, path.name)


@dataclass(frozen=True)
class FieldSpec:
    """One of our fields: its name, whether it is required, and its Python kind."""

    name: str
    required: bool = False
    kind: str = "str"  # str | int | float | bool | date | datetime | list | dict | any


@dataclass(frozen=True)
class Resolved:
    """Which source column fills which field, and the location roles."""

    fields: Mapping[str, str]  # our field → source column
    attributes: Mapping[str, str]  # attributes key → source column
    roles: Mapping[str, str]  # lon/lat/wkt/geocode → source column
    mapping: ColumnMapping

    def used_columns(self) -> set[str]:
        """Return the source columns read."""
        return {*self.fields.values(), *self.attributes.values(), *self.roles.values()}


def _target_of(name: str, fields: Mapping[str, FieldSpec], where: str) -> tuple[str, str]:
    """Return (kind, name) for a mapping target: field, attribute or location role."""
    if name.startswith("attributes."):
        key = name.split(".", 1)[1]
        if not key:
            raise EtlInputError(f"{where}: 'attributes.' needs a key")
        return "attribute", key
    if name in GEOMETRY_ROLES:
        return "role", name
    if name not in fields:
        raise EtlInputError(f"{where}: {name!r} is not one of our fields; fields: "
                            f"{', '.join(sorted(fields))}, or lon/lat/wkt/geocode, "
                            "or attributes.<key>")
    return "field", name


def resolve(mapping: ColumnMapping, columns: Sequence[str], fields: Mapping[str, FieldSpec],
            *, file_label: str, implied: Sequence[str] = ()) -> Resolved:
    """Match the file's columns to our fields; raise EtlInputError for any unknown column.

    ``implied`` names fields the importer fills itself (a grid's level, the geometry).
    """
    present = {c: c for c in columns}
    out: dict[str, dict[str, str]] = {"field": {}, "attribute": {}, "role": {}}
    for col, target in mapping.columns.items():
        if col not in present:
            raise EtlInputError(f"{mapping.source} names column {col!r}, which {file_label} does "
                                f"not have; its columns: {', '.join(columns)}")
        if target is not None:
            kind, name = _target_of(target, fields, f"{mapping.source}, column {col!r}")
            out[kind][name] = col
    by_lower = {f.lower(): f for f in fields}
    unknown = []
    for col in columns:
        if col in mapping.columns or col == "":
            continue
        low = col.strip().lower()
        if low in by_lower and by_lower[low] not in out["field"]:
            out["field"][by_lower[low]] = col
        elif low in _ROLE_ALIASES and _ROLE_ALIASES[low] not in out["role"]:
            out["role"][_ROLE_ALIASES[low]] = col
        elif mapping.unmapped == "attributes":
            out["attribute"][col] = col
        elif mapping.unmapped == "error":
            unknown.append(col)
    if unknown:
        raise EtlInputError(
            f"{file_label}: unknown column(s) {', '.join(repr(c) for c in unknown)}; our fields "
            f"are {', '.join(sorted(fields))} (and lon/lat/wkt/geocode): map them in a "
            "--mapping file (columns: {COLUMN: field}, or 'unmapped: ignore|attributes')")
    for name in mapping.constants:
        _target_of(name, fields, f"{mapping.source}, constants")
    missing = [f.name for f in fields.values() if f.required and f.name not in out["field"]
               and f.name not in mapping.constants and f.name not in implied]
    if missing:
        raise EtlInputError(f"{file_label} has no column for the required field(s) "
                            f"{', '.join(missing)}; name a column so or map one with --mapping")
    if ("lon" in out["role"]) != ("lat" in out["role"]):
        raise EtlInputError(f"{file_label}: lon and lat columns come together")
    return Resolved(out["field"], out["attribute"], out["role"], mapping)


# --- values --------------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def plain(value: Any) -> Any:
    """Return a pandas/numpy cell as a plain Python value; blanks and NaN as None."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if _missing(value):
        return None
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def convert(value: Any, kind: str) -> Any:
    """Convert a plain cell to what the field's model expects (pydantic checks the rest)."""
    if value is None:
        return None
    if kind == "str" and isinstance(value, int | float) and not isinstance(value, bool):
        # A numeric .dbf or Excel column holding codes: 330302.0 → "330302".
        return str(int(value)) if float(value).is_integer() else str(value)
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "list" and isinstance(value, str):
        return [v.strip() for v in _LIST_SPLIT.split(value) if v.strip()]
    if kind == "dict" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if kind == "date" and isinstance(value, datetime):
        return value.date()
    if kind == "datetime" and isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)
    return value


def column_values(frame: pd.DataFrame, column: str, values: Mapping[str, Any] | None,
                  kind: str) -> list[Any]:
    """Return one column's cells converted for a field, with the mapping's value table."""
    cells = [plain(v) for v in frame[column].tolist()]
    if values:
        cells = [values.get(str(v), v) if v is not None else None for v in cells]
    return [convert(v, kind) for v in cells]
