"""What went wrong (or was fixed) with which row: the report file and the rejects file.

Every message names the file, the 1-based row (feature number; for CSV and xlsx the data row
after the header) and the column, so an analyst can find it in QGIS or Excel. Both files are
written as rows arrive, so memory stays bounded however many rows are reported.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

#: Problems kept in memory to show on the console (the report file has all of them).
SHOWN = 20


class EtlInputError(Exception):
    """The input cannot be imported at all (no CRS, unknown column, unreadable encoding …)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Problem:
    """One repair, rejected row or note about a row."""

    file: str
    row: int | None
    column: str
    kind: str  # "repair" | "reject" | "note"
    reason: str

    def __str__(self) -> str:
        where = self.file if self.row is None else f"{self.file} row {self.row}"
        return f"{where}, column {self.column}: {self.reason}"


class _LazyCsv:
    """A CSV file opened on the first row written (no empty files for clean imports)."""

    def __init__(self, path: Path, header: list[str], *, bom: bool = True) -> None:
        self.path = path
        self.header = header
        self.bom = bom
        self._fh: TextIO | None = None
        self._writer: Any = None

    def write(self, values: list[Any]) -> None:
        """Append one row, creating the file with its header first."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # utf-8-sig: Excel opens Chinese text correctly only with the BOM.
            self._fh = self.path.open("w", newline="", encoding="utf-8-sig" if self.bom
                                      else "utf-8")
            self._writer = csv.writer(self._fh)
            self._writer.writerow(self.header)
        self._writer.writerow(values)

    def touch(self) -> None:
        """Create the file (header only) if nothing was written."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", newline="", encoding="utf-8-sig") as fh:
                csv.writer(fh).writerow(self.header)

    @property
    def written(self) -> bool:
        """Return whether the file exists because a row was written."""
        return self._fh is not None

    def close(self) -> None:
        """Close the file if it was opened."""
        if self._fh is not None:
            self._fh.close()


@dataclass
class ProblemLog:
    """Collects repairs, rejects and notes; writes the report and rejects files as it goes."""

    report_path: Path
    rejects_path: Path | None = None
    #: Write the report file even when nothing went wrong (the user asked for one).
    always_report: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    shown: list[Problem] = field(default_factory=list)
    rejected_rows: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._report = _LazyCsv(self.report_path, ["file", "row", "column", "kind", "reason"])
        self._rejects = (_LazyCsv(self.rejects_path, ["_file", "_row", "_column", "_reason",
                                                      "_values", "_wkt"])
                         if self.rejects_path is not None else None)

    def add(self, problem: Problem, *, values: Mapping[str, Any] | None = None,
            wkt: str | None = None) -> None:
        """Record a problem; a rejected row also goes to the rejects file (once per row)."""
        self.counts[problem.kind] += 1
        if problem.kind != "note" and len(self.shown) < SHOWN:
            self.shown.append(problem)
        self._report.write([problem.file, problem.row, problem.column, problem.kind,
                            problem.reason])
        if problem.kind != "reject":
            return
        if problem.row is None:  # a whole file (a GPX track) rather than a row
            self.counts["reject_file"] += 1
            if self._rejects is not None:
                self._rejects.write([problem.file, "", problem.column, problem.reason,
                                     json.dumps(_plain(values or {}), ensure_ascii=False,
                                                default=str), ""])
            return
        first = problem.row not in self.rejected_rows
        # A set of ints: ~30 bytes a row, only for rows that were actually rejected.
        self.rejected_rows.add(problem.row)
        if first and self._rejects is not None:
            self._rejects.write([problem.file, problem.row, problem.column, problem.reason,
                                 json.dumps(_plain(values or {}), ensure_ascii=False,
                                            default=str), wkt or ""])

    def reject(self, file: str, row: int | None, column: str, reason: str, *,
               values: Mapping[str, Any] | None = None, wkt: str | None = None) -> None:
        """Record a rejected row."""
        self.add(Problem(file, row, column, "reject", reason), values=values, wkt=wkt)

    def repair(self, file: str, row: int, column: str, reason: str) -> None:
        """Record a repaired geometry or value."""
        self.add(Problem(file, row, column, "repair", reason))

    def note(self, file: str, row: int | None, column: str, reason: str) -> None:
        """Record something worth knowing that changed nothing (a geocoded address …)."""
        self.add(Problem(file, row, column, "note", reason))

    @property
    def rejected(self) -> int:
        """Return how many distinct rows were rejected."""
        return len(self.rejected_rows) + self.counts["reject_file"]

    def files(self) -> list[Path]:
        """Return the files written (report, rejects)."""
        out = [self._report.path] if self._report.written else []
        if self._rejects is not None and self._rejects.written:
            out.append(self._rejects.path)
        return out

    def close(self) -> None:
        """Close both files (creating the report if one was asked for)."""
        if self.always_report:
            self._report.touch()
        self._report.close()
        if self._rejects is not None:
            self._rejects.close()


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """Return values JSON can hold (NaN as null, numpy scalars as Python numbers)."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if hasattr(v, "item") and not isinstance(v, str | bytes):
            try:
                v = v.item()
            except (ValueError, AttributeError):
                v = str(v)
        if isinstance(v, float) and v != v:  # NaN
            v = None
        out[str(k)] = v
    return out
