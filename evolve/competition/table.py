"""A CSV file as a header and rows of text, read once; every competition file and submission goes through here.

Kaggle's files are CSV with a header. They are read as text (numbers are parsed by whoever needs them), so
an id such as `007` keeps its zeros and a label keeps what the file wrote. A submission is written by
model-made code, so it is read like any run output (`evolve.files.read_text`): a FIFO, a device, a huge file
or bytes that are not UTF-8 are one line naming the file, never a hang.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from evolve.files import FileFormatError, open_regular, read_text

MAX_CSV_BYTES = 1 << 30  # MLE-bench's largest answers are a few hundred MB
HEADER_BYTES = 1 << 20


class TableError(ValueError):
    """A CSV that cannot be read as a table (one line naming the file)."""


@dataclass(frozen=True)
class Table:
    path: Path
    header: list[str]
    rows: list[list[str]]  # every row has len(header) fields (read() refuses the others)

    def column(self, name: str) -> list[str]:
        i = self.header.index(name)
        return [row[i] for row in self.rows]


def read(path: Path, what: str = "file") -> Table:
    """The table in `path`; TableError (naming the file, and the line where one is at fault) when the file is
    missing, not a regular file, not UTF-8, empty, without a header, with a column named twice or blank, or
    with a row whose field count differs from the header's."""
    try:
        text = read_text(path, MAX_CSV_BYTES)
    except FileNotFoundError:
        raise TableError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise TableError(f"{path}: is a directory, expected a CSV {what}") from None
    except (FileFormatError, OSError) as e:
        raise TableError(str(e) if isinstance(e, FileFormatError) else f"{path}: cannot read it ({e})") from None
    return _parse(Path(path), text, what)


def read_header(path: Path, what: str = "file") -> list[str]:
    """Only the header of the table in `path` (a sample submission's columns), without reading its rows."""
    try:
        with open_regular(path) as f:
            head = f.read(HEADER_BYTES)
    except FileNotFoundError:
        raise TableError(f"{path}: no such {what}") from None
    except (FileFormatError, OSError) as e:
        raise TableError(str(e) if isinstance(e, FileFormatError) else f"{path}: cannot read it ({e})") from None
    first = head.split(b"\n", 1)[0]
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError:
        raise TableError(f"{path}: line 1: not UTF-8 text") from None
    return _parse(Path(path), text, what).header


def _parse(path: Path, text: str, what: str) -> Table:
    if text.startswith("\ufeff"):  # Excel's byte-order mark
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise TableError(f"{path}: empty, expected a CSV {what} with a header line")
        header = [h.strip() for h in header]
        seen: set[str] = set()
        for name in header:
            if not name:
                raise TableError(f"{path}: line 1: a column has no name; name every column in the header")
            if name in seen:
                raise TableError(f"{path}: line 1: column {name!r} is named twice; keep one")
            seen.add(name)
        rows = []
        for row in reader:
            if not row:  # a blank line, as many writers leave at the end
                continue
            if len(row) != len(header):
                raise TableError(f"{path}: line {reader.line_num}: {len(row)} fields, the header has "
                                 f"{len(header)}; quote values that hold commas")
            rows.append(row)
    except csv.Error as e:
        raise TableError(f"{path}: line {reader.line_num}: not valid CSV ({e})") from None
    return Table(path, header, rows)


def number(text: str) -> float | None:
    """`text` as a finite float, else None (empty, `nan`, `inf`, words)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def label(text: str) -> str:
    """A class label in one spelling: `1`, `1.0` and ` 1 ` are the same class, `cat` stays `cat`."""
    text = text.strip()
    value = number(text)
    if value is None:
        return text
    return str(int(value)) if value.is_integer() and abs(value) < 2 ** 53 else repr(value)
