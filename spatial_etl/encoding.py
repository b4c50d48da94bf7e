"""Text encodings of analysts' files: Shapefile .dbf (GBK by tradition) and CSV.

A Shapefile without a .cpg is read by GDAL as ISO-8859-1 whatever it holds, which turns GBK
Chinese into mojibake without a single error. So the .dbf's text fields are checked here before
reading: the encoding a .cpg (or the header's language driver byte) names is verified; with none,
UTF-8 is tried, then GBK, and the choice is reported. Text that fits no candidate is an error
naming the row and the column.
"""

from __future__ import annotations

import codecs
import csv
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spatial_etl.problems import EtlInputError

#: .cpg spellings (upper-cased) → Python codec. GBK files are often labelled with a code page.
_CPG = {
    "UTF-8": "utf-8", "UTF8": "utf-8", "65001": "utf-8",
    "GBK": "gbk", "CP936": "gbk", "936": "gbk", "ANSI 936": "gbk", "GB2312": "gbk",
    "GB18030": "gb18030", "54936": "gb18030",
    "BIG5": "big5", "950": "big5", "CP950": "big5",
    "ISO-8859-1": "latin-1", "8859-1": "latin-1", "88591": "latin-1", "LATIN1": "latin-1",
    "1252": "cp1252", "CP1252": "cp1252", "ANSI 1252": "cp1252",
}
#: dBase language driver ids that name a Chinese code page.
_LDID = {0x4D: "gbk", 0x7A: "gbk", 0x78: "big5"}
#: The names GDAL (iconv) understands, for pyogrio's ``encoding=``.
GDAL_NAME = {"utf-8": "UTF-8", "gbk": "CP936", "gb18030": "GB18030", "big5": "CP950",
             "latin-1": "ISO-8859-1", "cp1252": "CP1252"}
_RECORDS_PER_BLOCK = 50_000
_CSV_BLOCK = 4 * 1024 * 1024


@dataclass(frozen=True)
class TextEncoding:
    """The codec to read text with, and a note for the analyst when it was guessed."""

    codec: str
    note: str | None = None

    @property
    def gdal(self) -> str:
        """Return the encoding name GDAL understands."""
        return GDAL_NAME.get(self.codec, self.codec.upper())


@dataclass(frozen=True)
class _DbfLayout:
    records: int
    header_len: int
    record_len: int
    ldid: int
    #: (name, offset in the record, width) of character fields.
    text_fields: list[tuple[str, int, int]]


def _dbf_layout(path: Path) -> _DbfLayout:
    """Read a .dbf header: record count and size, and where its character fields are."""
    with path.open("rb") as fh:
        head = fh.read(32)
        if len(head) < 32:
            raise EtlInputError(f"{path.name}: not a dBase file (too short)")
        records, header_len, record_len = struct.unpack("<IHH", head[4:12])
        descriptors = fh.read(max(0, header_len - 32))
    fields: list[tuple[str, int, int]] = []
    offset = 1  # each record starts with its deletion flag
    for i in range(0, len(descriptors) - 31, 32):
        d = descriptors[i:i + 32]
        if d[0] == 0x0D:
            break
        name = d[:11].split(b"\x00", 1)[0].decode("ascii", "replace")
        kind, width = chr(d[11]), d[16]
        if kind == "C":
            fields.append((name, offset, width))
        offset += width
    return _DbfLayout(records, header_len, record_len, head[29], fields)


def _first_bad(path: Path, layout: _DbfLayout, codec: str) -> tuple[int, str] | None:
    """Return (1-based row, column) of the first text that codec cannot decode, or None."""
    if not layout.text_fields:
        return None
    columns = np.concatenate([np.arange(o, o + w) for _, o, w in layout.text_fields])
    widths = np.cumsum([w for _, _, w in layout.text_fields])
    width = int(widths[-1])
    with path.open("rb") as fh:
        fh.seek(layout.header_len)
        row = 0
        while row < layout.records:
            n = min(_RECORDS_PER_BLOCK, layout.records - row)
            raw = fh.read(n * layout.record_len)
            n = len(raw) // layout.record_len
            if n == 0:
                break
            block = np.frombuffer(raw[: n * layout.record_len], dtype=np.uint8)
            # Only the character fields, record after record: numbers and flags are ASCII anyway.
            text = block.reshape(n, layout.record_len)[:, columns].tobytes()
            try:
                text.decode(codec)
            except UnicodeDecodeError as exc:
                rec, pos = divmod(exc.start, width)
                field = int(np.searchsorted(widths, pos, side="right"))
                return row + rec + 1, layout.text_fields[field][0]
            row += n
    return None


def _declared(path: Path, layout: _DbfLayout) -> tuple[str | None, str]:
    """Return the codec a .cpg (or the language driver byte) declares, and where it came from."""
    cpg = path.with_suffix(".cpg")
    if not cpg.exists():
        cpg = path.with_suffix(".CPG")
    if cpg.exists():
        label = cpg.read_text("ascii", "replace").strip()
        codec = _CPG.get(label.upper())
        if codec is None:
            try:
                codec = codecs.lookup(label).name
            except LookupError:
                raise EtlInputError(
                    f"{cpg.name}: unknown code page {label!r}; write UTF-8 or GBK in it"
                ) from None
        return codec, f"{cpg.name} says {label}"
    if layout.ldid in _LDID:
        return _LDID[layout.ldid], f"the .dbf header's language driver (0x{layout.ldid:02X})"
    return None, ""


def dbf_encoding(shp: Path) -> TextEncoding:
    """Return the text encoding of a Shapefile's .dbf, verified against every record."""
    dbf = shp.with_suffix(".dbf")
    if not dbf.exists():
        dbf = shp.with_suffix(".DBF")
    if not dbf.exists():
        raise EtlInputError(f"{shp.name}: the .dbf next to it is missing")
    layout = _dbf_layout(dbf)
    codec, source = _declared(shp, layout)
    if codec is not None:
        bad = _first_bad(dbf, layout, codec)
        if bad is not None:
            hint = "GBK" if codec == "utf-8" else "UTF-8"
            raise EtlInputError(
                f"{dbf.name} row {bad[0]}, column {bad[1]}: the text is not valid {codec.upper()}"
                f" although {source}; is it {hint}? Fix the .cpg")
        return TextEncoding(codec)
    bad = _first_bad(dbf, layout, "utf-8")
    if bad is None:
        return TextEncoding("utf-8")
    bad_gbk = _first_bad(dbf, layout, "gbk")
    if bad_gbk is None:
        return TextEncoding("gbk", f"{shp.name} has no .cpg and its text is not UTF-8 (row "
                                   f"{bad[0]}, column {bad[1]}): read as GBK")
    raise EtlInputError(
        f"{dbf.name} row {bad_gbk[0]}, column {bad_gbk[1]}: the text is neither UTF-8 nor GBK; "
        "add a .cpg naming its code page")


def _csv_position(path: Path, offset: int, codec: str) -> tuple[int, str]:
    """Return (1-based data row, column name) of a byte offset in a CSV file."""
    with path.open("rb") as fh:
        head = fh.read(offset)
        line_start = head.rfind(b"\n") + 1
        line_no = head.count(b"\n")  # 0 = the header line
        rest = fh.readline()
    line = head[line_start:] + rest
    with path.open("rb") as fh:
        header_raw = fh.readline()
    # latin-1 maps bytes 1:1, so a field's character offsets are its byte offsets.
    header = next(csv.reader([header_raw.decode(codec if codec else "latin-1",
                                                "replace").lstrip("\ufeff")]), [])
    fields = next(csv.reader([line.decode("latin-1")]), [])
    pos, column = offset - line_start, "?"
    start = 0
    for i, value in enumerate(fields):
        start = line.decode("latin-1").find(value, start)
        if start <= pos < start + max(1, len(value)):
            column = header[i] if i < len(header) else f"#{i + 1}"
            break
        start += len(value)
    return line_no, column


def _csv_first_bad(path: Path, codec: str) -> int | None:
    """Return the byte offset of the first text codec cannot decode, or None."""
    decoder = codecs.getincrementaldecoder(codec)()
    done = 0
    with path.open("rb") as fh:
        while True:
            block = fh.read(_CSV_BLOCK)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                return done + exc.start - len(decoder.getstate()[0])
            if not block:
                return None
            done += len(block)


def csv_encoding(path: Path) -> TextEncoding:
    """Return a CSV file's encoding: UTF-8 (with or without BOM), else GBK, said so."""
    bad = _csv_first_bad(path, "utf-8")
    if bad is None:
        return TextEncoding("utf-8-sig")
    row, column = _csv_position(path, bad, "gbk")
    bad_gbk = _csv_first_bad(path, "gbk")
    if bad_gbk is None:
        return TextEncoding("gbk", f"{path.name} is not UTF-8 ({_where(row, column)}): "
                                   "read as GBK")
    row, column = _csv_position(path, bad_gbk, "gbk")
    raise EtlInputError(f"{path.name} {_where(row, column)}: the text is neither UTF-8 nor "
                        "GBK; save it as UTF-8")


def _where(row: int, column: str) -> str:
    """Name a CSV position as messages do (row 0 is the header line)."""
    return f"header, column {column}" if row == 0 else f"row {row}, column {column}"
