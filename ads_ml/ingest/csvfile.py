"""Reading user CSV files: header matching, streaming in bounded batches, precise errors.

Every problem is an :class:`InputFileError` naming the file, the row (as a spreadsheet shows it:
the header is row 1) and the column.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SNIFF_BYTES = 64 * 1024


class InputFileError(ValueError):
    """Bad input in a user file, with where it is."""

    def __init__(self, path: Path | str, message: str, *, row: int | None = None, column: str | None = None):
        self.path = str(path)
        self.row = row
        self.column = column
        self.message = message
        where = [Path(self.path).name]
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f'column "{column}"')
        super().__init__(f"{', '.join(where)}: {message}")


def normalise_header(name: str) -> str:
    """Header key ignoring case, spacing and punctuation: 'Amount spent (BRL)' -> 'amountspentbrl'."""
    return re.sub(r"[^0-9a-z]", "", name.strip().lower())


@dataclass(frozen=True)
class Field:
    """A canonical column and the header spellings that mean it (normalised, in preference order)."""

    name: str
    aliases: tuple[str, ...]
    required: bool = True
    pattern: str | None = None  # regex on the normalised header, e.g. a currency suffix
    label: str = ""  # how the column is written in the files we accept, for error messages

    def display(self) -> str:
        return self.label or self.name


@dataclass
class HeaderMap:
    """Which file column feeds which canonical field."""

    columns: dict[str, str]  # canonical name -> header as written in the file (stripped)
    positions: dict[str, int]  # canonical name -> column index in the file
    delimiter: str
    extras: dict[str, str]  # e.g. {"currency": "BRL"}


def check_text_file(path: Path) -> bytes:
    """Refuse missing, empty and binary files; return the first bytes."""
    if not path.exists():
        raise InputFileError(path, "file not found")
    if not path.is_file():
        raise InputFileError(path, "not a file")
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head.strip():
        raise InputFileError(path, "file is empty")
    if b"\x00" in head:
        raise InputFileError(path, "not a CSV file (binary content)")
    text = head.decode("utf-8", errors="replace")
    if text.count("\ufffd") > 0:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            # a multi-byte character cut at the sniff boundary is fine; anything earlier is not
            if exc.start < len(head) - 4:
                raise InputFileError(path, "not a CSV file (not UTF-8 text)") from None
    return head


def read_header(path: Path, fields: Sequence[Field]) -> HeaderMap:
    head = check_text_file(path)
    first_line = head.decode("utf-8", errors="ignore").lstrip("\ufeff").splitlines()[0]
    delimiter = max([",", ";", "\t"], key=first_line.count)
    header = next(csv.reader([first_line], delimiter=delimiter))
    header = [h.strip() for h in header]
    if len(header) < 2:
        raise InputFileError(path, "not a CSV file (no delimited header row)", row=1)
    by_key: dict[str, str] = {}
    position: dict[str, int] = {}
    for index, name in enumerate(header):
        key = normalise_header(name)
        if not key:
            continue
        if key in by_key:
            raise InputFileError(path, f'duplicate column (same as "{by_key[key]}")', row=1, column=name)
        by_key[key] = name
        position[name] = index

    columns: dict[str, str] = {}
    extras: dict[str, str] = {}
    for field in fields:
        match = next((by_key[a] for a in field.aliases if a in by_key), None)
        if match is None and field.pattern:
            candidates = [k for k in by_key if re.fullmatch(field.pattern, k)]
            if len(candidates) > 1:
                names = ", ".join(f'"{by_key[k]}"' for k in candidates)
                raise InputFileError(path, f"several columns could be {field.name}: {names}", row=1)
            if candidates:
                match = by_key[candidates[0]]
                suffix = re.fullmatch(field.pattern, candidates[0]).groupdict().get("currency")
                if suffix:
                    extras["currency"] = suffix.upper()
        if match is None:
            if field.required:
                raise InputFileError(
                    path, f"required column is missing (expected {field.display()})", row=1, column=field.name
                )
            continue
        columns[field.name] = match
    positions = {field: position[name] for field, name in columns.items()}
    return HeaderMap(columns=columns, positions=positions, delimiter=delimiter, extras=extras)


def iter_batches(path: Path, header: HeaderMap, batch_rows: int) -> Iterator[tuple[int, pd.DataFrame]]:
    """Yield ``(first_row_number, frame)`` with canonical column names, all values as stripped
    strings ('' for empty). Memory is bounded by ``batch_rows``."""
    by_position = sorted((index, field) for field, index in header.positions.items())
    reader = pd.read_csv(
        path,
        sep=header.delimiter,
        header=0,
        names=None,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        usecols=[index for index, _field in by_position],
        chunksize=batch_rows,
        encoding="utf-8-sig",
        skipinitialspace=True,
        skip_blank_lines=False,
    )
    next_row = 2
    try:
        for chunk in reader:
            if chunk.empty:
                continue
            chunk.columns = [field for _index, field in by_position]
            chunk = chunk.apply(lambda s: s.str.strip())
            chunk.index = pd.RangeIndex(next_row, next_row + len(chunk))
            next_row += len(chunk)
            yield int(chunk.index[0]), chunk
    except pd.errors.ParserError as exc:
        match = re.search(r"line (\d+)", str(exc))
        row = int(match.group(1)) if match else None
        raise InputFileError(path, f"malformed CSV ({exc})", row=row) from None
    except UnicodeDecodeError:
        raise InputFileError(path, "not a CSV file (not UTF-8 text)", row=next_row) from None


def first_bad(mask: np.ndarray | pd.Series, index: pd.Index) -> int | None:
    positions = np.flatnonzero(np.asarray(mask))
    return int(index[positions[0]]) if len(positions) else None


def parse_numbers(
    path: Path,
    frame: pd.DataFrame,
    column: str,
    header_name: str,
    *,
    integer: bool,
    allow_missing: bool = False,
) -> pd.Series:
    """Numbers of one column; empty cells are 0 (Meta leaves zero metrics blank) or, when
    ``allow_missing``, NaN. Refuses text, negatives and, for counts, fractions."""
    raw = frame[column]
    empty = raw == ""
    values = pd.to_numeric(raw.where(~empty, None), errors="coerce")
    bad = values.isna() & ~empty
    row = first_bad(bad, frame.index)
    if row is not None:
        raise InputFileError(path, f"{raw.loc[row]!r} is not a number", row=row, column=header_name)
    values = values.astype("float64")
    infinite = ~np.isfinite(values.fillna(0.0))
    row = first_bad(infinite, frame.index)
    if row is not None:
        raise InputFileError(path, f"{raw.loc[row]!r} is not a finite number", row=row, column=header_name)
    row = first_bad(values < 0, frame.index)
    if row is not None:
        raise InputFileError(path, f"negative value {raw.loc[row]}", row=row, column=header_name)
    if integer:
        row = first_bad(values.notna() & (values != np.round(values)), frame.index)
        if row is not None:
            raise InputFileError(path, f"{raw.loc[row]!r} is not a whole number", row=row, column=header_name)
    if not allow_missing:
        values = values.fillna(0.0)
    return values


def parse_dates(path: Path, frame: pd.DataFrame, column: str, header_name: str) -> pd.Series:
    raw = frame[column]
    parsed = pd.to_datetime(raw, format="ISO8601", errors="coerce")
    bad = parsed.isna()
    row = first_bad(bad, frame.index)
    if row is not None:
        shown = raw.loc[row] or "(empty)"
        raise InputFileError(path, f"{shown!r} is not a date (expected YYYY-MM-DD)", row=row, column=header_name)
    return parsed.dt.normalize()


def require_values(path: Path, frame: pd.DataFrame, columns: Mapping[str, str]) -> None:
    """Refuse empty cells in the given canonical columns (display names as values)."""
    for column, header_name in columns.items():
        row = first_bad(frame[column] == "", frame.index)
        if row is not None:
            raise InputFileError(path, "empty value", row=row, column=header_name)
