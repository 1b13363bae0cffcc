"""Reading user CSV files: header matching, streaming in bounded batches, precise errors.

Every problem is an :class:`InputFileError` naming the file, the row (as a spreadsheet shows it:
the header is row 1) and the column.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import tempfile
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
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


def strip_accents(text: str) -> str:
    """'Impressões' -> 'Impressoes', 'Día' -> 'Dia'."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def normalise_header(name: str) -> str:
    """Header key ignoring case, accents, spacing and punctuation: 'Amount spent (BRL)' ->
    'amountspentbrl', 'Impressões' -> 'impressoes'."""
    return re.sub(r"[^0-9a-z]", "", strip_accents(name.strip().lower()))


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
    width: int = 0  # number of columns in the header
    raw: dict[str, str] | None = None  # normalised key -> header as written, for every column


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
    if len(head) > 8 and (head[1:8:2] == b"\x00" * 4 or head[0:8:2] == b"\x00" * 4):
        # UTF-16 without its byte-order mark: which byte order cannot be told for sure
        raise InputFileError(path, f"UTF-16 text without a byte-order mark, not UTF-8: {EXPORT_UTF8}", row=1)
    if b"\x00" in head:
        raise InputFileError(path, "not a CSV file (binary content)")
    text = head.decode("utf-8", errors="replace")
    if text.count("\ufffd") > 0:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            # a multi-byte character cut at the sniff boundary is fine; anything earlier is not
            if exc.start < len(head) - 4:
                raise InputFileError(path, f"not UTF-8 text{_guess_encoding(head[:exc.start + 1])}: {EXPORT_UTF8}",
                                     row=_row_at(head, exc.start)) from None
    return head


#: How to write a file this import reads, said wherever one is refused for its encoding.
EXPORT_UTF8 = 'save it as "CSV UTF-8 (Comma delimited) (*.csv)" in Excel, or export CSV from Ads Manager'


def _cell_text(value: object) -> str:
    """A workbook cell as an export writes it: dates YYYY-MM-DD, whole numbers without ".0", a
    number of 15 digits and more in scientific notation (a spreadsheet has rounded it: an id in it
    is refused as such, never stored with its last digits lost)."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return str(value).upper()
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value).strip()


def _utf8_copy(path: Path, out: Path) -> None:
    """Write a UTF-16 file with a byte-order mark (Excel's "Unicode text") to ``out`` as UTF-8, a
    chunk at a time; bytes that are not UTF-16 are refused naming their row."""
    row = 1
    with path.open("r", encoding="utf-16", newline="") as source, out.open("w", encoding="utf-8", newline="") as target:
        while True:
            try:
                chunk = source.read(1 << 16)
            except UnicodeDecodeError:
                raise InputFileError(path, f"UTF-16 text with bytes that are not UTF-16 after row {row}: {EXPORT_UTF8}",
                                     row=row + 1) from None
            if not chunk:
                return
            target.write(chunk)
            row += max(chunk.count("\n"), chunk.count("\r"))


@contextmanager
def readable_csv(path: Path) -> Iterator[Path]:
    """The file as CSV: itself; for UTF-16 text with a byte-order mark (Excel's "Unicode text",
    tab-separated) its UTF-8 copy; for an Excel workbook (.xlsx, e.g. Ads Manager's download) its
    first sheet written as a UTF-8 CSV (read with openpyxl's streaming read-only mode, so a large
    workbook is not held in memory) — copies of the same name in a temporary directory, so every
    check and message of a CSV import applies, rows numbered as the file numbers them."""
    start = b""
    if path.is_file():
        with path.open("rb") as handle:
            start = handle.read(4)
    if start.startswith((b"\xff\xfe", b"\xfe\xff")):  # the mark says UTF-16: nothing to guess
        with tempfile.TemporaryDirectory(prefix="ads_ml_utf16_") as folder:
            out = Path(folder) / path.name
            _utf8_copy(path, out)
            yield out
        return
    if start != b"PK\x03\x04":
        yield path
        return
    import openpyxl

    source = path.open("rb")  # a handle: openpyxl would judge a path by its extension (".csv")
    try:
        workbook = openpyxl.load_workbook(source, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable workbook is one message
        source.close()
        raise InputFileError(path, f"an Excel workbook that cannot be read ({type(exc).__name__}): {EXPORT_UTF8}",
                             row=1) from None
    try:
        with tempfile.TemporaryDirectory(prefix="ads_ml_xlsx_") as folder:
            out = Path(folder) / path.name
            with out.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                for row in workbook.worksheets[0].iter_rows(values_only=True):
                    writer.writerow([_cell_text(v) for v in row])
            yield out
    finally:
        workbook.close()
        source.close()


def _row_at(data: bytes, offset: int) -> int:
    """The spreadsheet row (header = 1) of a byte offset, any line ending."""
    before = data[:offset]
    return max(before.count(b"\n"), before.count(b"\r")) + 1


def _guess_encoding(data: bytes) -> str:
    """" (Windows-1252, e.g. Excel's \"CSV (Comma delimited)\")" when the bytes read as that."""
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return ""
    return ' (it looks like Windows-1252, e.g. Excel\'s "CSV (Comma delimited)")'


def _binary_lines(handle) -> Iterator[bytes]:  # noqa: ANN001
    """The file's lines, each with its ending: \n and \r\n (the file's own iteration), or \r alone
    (old Mac / some Excel exports), found by the first line ending in the file."""
    start = handle.read(SNIFF_BYTES)
    first_n, first_r = start.find(b"\n"), start.find(b"\r")
    handle.seek(0)
    if first_r < 0 or (0 <= first_n <= first_r + 1):
        yield from handle
        return
    pending = b""
    while chunk := handle.read(1 << 20):
        parts = (pending + chunk).split(b"\r")
        pending = parts.pop()
        for part in parts:
            yield part + b"\r"
    if pending:
        yield pending


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
    return HeaderMap(columns=columns, positions=positions, delimiter=delimiter, extras=extras,
                     width=len(header), raw=by_key)


def iter_batches(path: Path, header: HeaderMap, batch_rows: int) -> Iterator[tuple[int, pd.DataFrame]]:
    """Yield ``(first_row_number, frame)`` with canonical column names, all values as stripped
    strings ('' for empty), indexed by row number as a spreadsheet shows it (header = row 1).
    Memory is bounded by ``batch_rows``.

    Refused, naming the row: a row with fewer fields than the header (a file cut short, or a
    broken row) or with more non-empty fields, a NUL byte, bytes that are not UTF-8, and a file
    whose last row does not end with a line break (it may have been cut inside its last value)."""
    by_position = sorted((index, field) for field, index in header.positions.items())
    wanted = [index for index, _field in by_position]
    names = [field for _index, field in by_position]
    state = {"row": 1, "ends_with_newline": True}

    def lines() -> Iterator[str]:
        with path.open("rb") as handle:
            first = True
            for raw in _binary_lines(handle):
                if first:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                    first = False
                state["ends_with_newline"] = raw.endswith((b"\n", b"\r"))
                if b"\x00" in raw:
                    raise InputFileError(path, "NUL byte in the row (not a text CSV file)", row=state["row"] + 1)
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise InputFileError(
                        path, f"not UTF-8 text{_guess_encoding(raw)}: {EXPORT_UTF8}", row=state["row"] + 1
                    ) from None

    reader = csv.reader(lines(), delimiter=header.delimiter)
    try:
        next(reader)  # the header, already read
        rows: list[list[str]] = []
        numbers: list[int] = []
        width = header.width
        for record in reader:
            state["row"] += 1
            if not record or (not record[0].strip() and all(not cell.strip() for cell in record)):
                continue  # blank line
            if len(record) < width:
                raise InputFileError(
                    path, f"row has {len(record)} fields, the header has {width}: the file looks cut short "
                    "or the row is broken", row=state["row"],
                )
            if len(record) > width and any(cell.strip() for cell in record[width:]):
                raise InputFileError(path, f"row has {len(record)} fields, the header has {width}", row=state["row"])
            rows.append([record[i].strip() for i in wanted])
            numbers.append(state["row"])
            if len(rows) >= batch_rows:
                yield numbers[0], _frame(rows, names, numbers)
                rows, numbers = [], []
        if not state["ends_with_newline"] and state["row"] > 1:
            raise InputFileError(
                path, "the file does not end with a line break: its last row may be cut short (re-export it)",
                row=state["row"],
            )
        if rows:
            yield numbers[0], _frame(rows, names, numbers)
    except csv.Error as exc:
        raise InputFileError(path, f"malformed CSV ({exc})", row=state["row"] + 1) from None


def _frame(rows: list[list[str]], names: list[str], numbers: list[int]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=names, index=pd.Index(numbers), dtype=object)


def first_bad(mask: np.ndarray | pd.Series, index: pd.Index) -> int | None:
    positions = np.flatnonzero(np.asarray(mask))
    return int(index[positions[0]]) if len(positions) else None


#: How a number is written: a decimal point (1191.50, 1,191.50) or a decimal comma (1191,50,
#: 1.191,50 — Brazilian and most European exports). "1.191" and "1,191" (one group of three after
#: the separator) can be either; a file's other numbers tell which.
_PLAIN = r"\d+"
_DOT_GROUPS = r"[1-9]\d{0,2}(?:\.\d{3})+"  # 1.191 / 1.191.000: thousands dots (or one decimal point)
_COMMA_GROUPS = r"[1-9]\d{0,2}(?:,\d{3})+"
_DECIMAL_COMMA = r"(?:[1-9]\d{0,2}(?:\.\d{3})+|\d+),\d+"
_DECIMAL_POINT = r"(?:[1-9]\d{0,2}(?:,\d{3})+|\d*)\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+"


def number_styles(text: pd.Series) -> pd.Series:
    """Per cell: "plain" (digits only, or empty), "comma" (only a decimal comma reads it), "point"
    (only a decimal point), "ambiguous" (1.191 or 1,191) or "other" (not a number either way)."""
    t = text.astype(str).str.strip().str.lstrip("+-")
    out = pd.Series("other", index=text.index, dtype=object)
    out[(t == "") | t.str.fullmatch(_PLAIN)] = "plain"
    one_dot = t.str.fullmatch(r"[1-9]\d{0,2}\.\d{3}")
    one_comma = t.str.fullmatch(r"[1-9]\d{0,2},\d{3}")
    out[t.str.fullmatch(_DECIMAL_POINT) | (t.str.fullmatch(_COMMA_GROUPS) & ~one_comma)] = "point"
    out[t.str.fullmatch(_DECIMAL_COMMA) | (t.str.fullmatch(_DOT_GROUPS) & ~one_dot)] = "comma"
    out[one_dot | one_comma] = "ambiguous"
    return out


@dataclass
class NumberFormat:
    """A file's way of writing numbers, and the cell that showed it (for messages)."""
    decimal: str  # "." or ","
    evidence: str = ""  # e.g. "'11,91' in row 3, column Amount spent (BRL)"

    def describe(self) -> str:
        return "a decimal comma" if self.decimal == "," else "a decimal point"


def detect_number_format(path: Path, batches: Iterator[tuple[int, pd.DataFrame]], columns: Mapping[str, str],
                         counts: Sequence[str] = ()) -> NumberFormat:
    """The decimal separator of a file from its numeric ``columns`` (canonical -> header as written):
    the first cell only one way reads — in a column of ``counts`` (impressions, clicks: whole
    numbers) "1.500" can only be 1500, so it tells too. A file with cells read either way (1.191)
    and none that tells is refused, naming the first such cell; a file of whole numbers reads
    either way (a point)."""
    ambiguous = None
    for _first, frame in batches:
        for column, header_name in columns.items():
            if column not in frame.columns:
                continue
            styles = number_styles(frame[column])
            if column in counts:  # a count has no decimals: its one separator groups thousands
                text = frame[column].astype(str).str.strip()
                styles = styles.mask((styles == "ambiguous") & text.str.contains(".", regex=False), "comma")
                styles = styles.mask((styles == "ambiguous") & text.str.contains(",", regex=False), "point")
            decided = styles.isin(["comma", "point"])
            if decided.any():
                row = int(styles.index[np.flatnonzero(decided.to_numpy())[0]])
                decimal = "," if styles.loc[row] == "comma" else "."
                return NumberFormat(decimal, f"{frame.at[row, column]!r} in row {row}, column {header_name}")
            if ambiguous is None and (styles == "ambiguous").any():
                row = int(styles.index[np.flatnonzero((styles == "ambiguous").to_numpy())[0]])
                ambiguous = (row, header_name, frame.at[row, column])
    if ambiguous is not None:
        row, header_name, value = ambiguous
        raise InputFileError(
            path, f"{value!r} reads as {value.replace('.', '').replace(',', '')} with a thousands separator or as "
            f"{value.replace(',', '.')} with a decimal one, and no other number in the file tells which: re-export "
            "it with decimals written (e.g. 1191,00 or 1191.00)", row=row, column=header_name)
    return NumberFormat(".")


def as_point_decimal(path: Path, raw: pd.Series, header_name: str, number_format: NumberFormat | None) -> pd.Series:
    """The column's text with a decimal point and no thousands separator (what ``to_numeric``
    reads); a cell written the other way than the file's is refused, naming it and the evidence."""
    fmt = number_format or NumberFormat(".")
    separators = raw.str.contains(",", regex=False) if fmt.decimal == "." else raw.str.contains("[.,]", regex=True)
    if not separators.any():
        return raw
    styles = number_styles(raw.where(separators, ""))
    wrong = styles == ("point" if fmt.decimal == "," else "comma")
    row = first_bad(wrong, raw.index)
    if row is not None:
        other = "a decimal point" if fmt.decimal == "," else "a decimal comma"
        seen = f" ({fmt.evidence})" if fmt.evidence else ""
        raise InputFileError(path, f"{raw.loc[row]!r} is written with {other}, but this file writes numbers with "
                             f"{fmt.describe()}{seen}: the numbers cannot be read one way only", row=row, column=header_name)
    if fmt.decimal == ",":
        return raw.where(~separators, raw.str.replace(".", "", regex=False).str.replace(",", ".", regex=False))
    return raw.where(~separators, raw.str.replace(",", "", regex=False))


def parse_numbers(
    path: Path,
    frame: pd.DataFrame,
    column: str,
    header_name: str,
    *,
    integer: bool,
    allow_missing: bool = False,
    number_format: NumberFormat | None = None,
) -> pd.Series:
    """Numbers of one column; empty cells are 0 (Meta leaves zero metrics blank) or, when
    ``allow_missing``, NaN. Written as the file writes them (``number_format``: a decimal point by
    default, or a decimal comma with thousands dots). Refuses text, negatives and, for counts, fractions."""
    raw = frame[column]
    empty = raw == ""
    values = pd.to_numeric(as_point_decimal(path, raw, header_name, number_format).where(~empty, None), errors="coerce")
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


ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_dates(
    path: Path, frame: pd.DataFrame, column: str, header_name: str,
    *, earliest: dt.date | None = None, latest: dt.date | None = None,
) -> pd.Series:
    """Whole dates written YYYY-MM-DD, nothing else: a year or a month alone ('2026', '2026-08'),
    a time or a timezone offset is refused rather than read as some day. Dates outside
    ``earliest``..``latest`` are refused too (e.g. a row dated 2099)."""
    raw = frame[column]
    shaped = raw.str.fullmatch(ISO_DATE.pattern).fillna(False).astype(bool)
    parsed = pd.to_datetime(raw.where(shaped, None), format="%Y-%m-%d", errors="coerce")
    row = first_bad(parsed.isna(), frame.index)
    if row is not None:
        shown = raw.loc[row] or "(empty)"
        raise InputFileError(path, f"{shown!r} is not a date (expected YYYY-MM-DD, one day per row)",
                             row=row, column=header_name)
    if earliest is not None:
        row = first_bad(parsed < pd.Timestamp(earliest), frame.index)
        if row is not None:
            raise InputFileError(path, f"date {raw.loc[row]} is before {earliest}: not a plausible insight date",
                                 row=row, column=header_name)
    if latest is not None:
        row = first_bad(parsed > pd.Timestamp(latest), frame.index)
        if row is not None:
            raise InputFileError(path, f"date {raw.loc[row]} is in the future (after {latest})",
                                 row=row, column=header_name)
    return parsed


def require_values(path: Path, frame: pd.DataFrame, columns: Mapping[str, str]) -> None:
    """Refuse empty cells in the given canonical columns (display names as values)."""
    for column, header_name in columns.items():
        row = first_bad(frame[column] == "", frame.index)
        if row is not None:
            raise InputFileError(path, "empty value", row=row, column=header_name)
