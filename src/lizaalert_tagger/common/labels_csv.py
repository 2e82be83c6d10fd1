"""Labels CSV in the seed's format, derived from the attribute spec.

The submission format (SEED.md) is UTF-8, ``;``-separated, one row per photo::

    filename;Время суток;Время года;Местность;Шерп;Авто;Вертолет;БПЛА;Кони;Кинолог;Водолаз;Объятия
    1.jpg;1;4;0;0;1;0;0;0;0;0;0

``write_labels`` writes exactly that header (the spec's first spelling of every
column). ``read_labels`` accepts every spelling the spec lists (the training
sheet's ``Названия``, ``Автомобили``, ``Авиа``), any column order, a UTF-8 BOM
and a ``,`` separator; rows it cannot use are reported, not fatal.
``resolve_images`` then drops rows whose file is missing or is not a photo, and
summarises what it dropped in one line.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lizaalert_tagger.common.formats import FORMATS_TEXT, file_format, is_photo_name
from lizaalert_tagger.common.spec import AttributeSpec, load_spec

__all__ = [
    "LabelRow",
    "LabelsFormatError",
    "LabelsTable",
    "Problem",
    "ResolvedImages",
    "SkippedRow",
    "read_labels",
    "resolve_images",
    "write_labels",
]

DELIMITER = ";"

_INTEGER = re.compile(r"[+-]?\d+(?:\.0*)?")  # "1" and, as spreadsheets export it, "1.0"


class LabelsFormatError(ValueError):
    """The file is not a labels table this spec can read (bad encoding, missing columns)."""


@dataclass(frozen=True)
class LabelRow:
    """One usable row: the file it names and a code for every attribute of the spec."""

    line: int  # 1-based line of the file (the header is line 1)
    filename: str
    labels: dict[str, int]


@dataclass(frozen=True)
class Problem:
    """A row that was left out, and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class LabelsTable:
    """What ``read_labels`` found: usable rows, rejected rows, and the header as read."""

    path: Path
    header: list[str]
    delimiter: str
    rows: list[LabelRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    def pairs(self) -> list[tuple[str, dict[str, int]]]:
        """Rows as ``(filename, {key: code})``, the shape ``write_labels`` takes."""
        return [(r.filename, dict(r.labels)) for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)


def _normalise(name: str) -> str:
    """Header cells compare without case, surrounding space or the ё/е distinction."""
    return name.strip().casefold().replace("ё", "е")


def _expected_columns(spec: AttributeSpec) -> str:
    parts = [" or ".join(repr(c) for c in spec.filename_columns)]
    parts += [" or ".join(repr(c) for c in a.columns) for a in spec.attributes]
    return ", ".join(parts)


def header_row(spec: AttributeSpec) -> list[str]:
    """The header ``write_labels`` writes: the first spelling of every column."""
    return [spec.filename_columns[0], *(a.column for a in spec.attributes)]


def write_labels(path: str | Path, rows: Iterable[tuple[str, Mapping[str, int]]], spec: AttributeSpec) -> int:
    """Write ``(filename, {attribute_key: code})`` rows in the seed's format; returns the row count.

    Every row must give a valid code for every attribute of the spec and no other key:
    a bad row is our bug, so it raises ``ValueError`` instead of writing a file the
    reader would reject.
    """
    keys = spec.keys
    out = io.StringIO()
    writer = csv.writer(out, delimiter=DELIMITER, lineterminator="\n")
    writer.writerow(header_row(spec))
    count = 0
    for index, (filename, labels) in enumerate(rows):
        if not filename or not isinstance(filename, str):
            raise ValueError(f"row {index}: expected a non-empty file name, got {filename!r}")
        missing = [k for k in keys if k not in labels]
        extra = sorted(set(labels) - set(keys))
        if missing or extra:
            raise ValueError(
                f"row {index} ({filename}): expected codes for exactly {', '.join(keys)}; "
                f"missing {missing or 'none'}, unknown {extra or 'none'}"
            )
        codes = []
        for attribute in spec.attributes:
            code = labels[attribute.key]
            if isinstance(code, bool) or not isinstance(code, int) or code not in attribute.codes:
                raise ValueError(
                    f"row {index} ({filename}): {attribute.key} must be one of {attribute.codes}, got {code!r}"
                )
            codes.append(code)
        writer.writerow([filename, *codes])
        count += 1
    Path(path).write_text(out.getvalue(), encoding="utf-8", newline="")
    return count


def _sniff_delimiter(header_line: str, spec: AttributeSpec) -> str:
    """``;`` unless the header has no ``;`` and its ``,``-separated cells name known columns."""
    if DELIMITER in header_line or "," not in header_line:
        return DELIMITER
    known = {_normalise(c) for c in spec.filename_columns}
    known |= {_normalise(c) for a in spec.attributes for c in a.columns}
    cells = [_normalise(c) for c in header_line.split(",")]
    return "," if sum(c in known for c in cells) >= 2 else DELIMITER


def _parse_code(raw: str) -> int | None:
    raw = raw.strip()
    if not _INTEGER.fullmatch(raw):
        return None
    return int(float(raw)) if "." in raw else int(raw)


def read_labels(path: str | Path, spec: AttributeSpec | None = None) -> LabelsTable:
    """Read a labels CSV (either spelling of the header, any column order).

    Rows with a non-integer or unknown code, a missing file name, the wrong
    number of cells or a repeated file name go to ``problems`` (with their line
    number and reason); the others to ``rows``. Raises ``LabelsFormatError``
    if the file is not UTF-8 or a required column is missing.
    """
    spec = spec or load_spec()
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # tolerates the BOM spreadsheet programs write
    except UnicodeDecodeError as e:
        raise LabelsFormatError(
            f"{path}: expected UTF-8 text, but byte {e.start} is {data[e.start : e.start + 1]!r} "
            "(re-save the sheet as 'CSV UTF-8')"
        ) from None
    first_line = text.split("\n", 1)[0].rstrip("\r")
    delimiter = _sniff_delimiter(first_line, spec)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if not header or not any(cell.strip() for cell in header):
        raise LabelsFormatError(f"{path}: the file is empty; expected a header with {_expected_columns(spec)}")
    file_column, attribute_columns = _header_columns(path, header, delimiter, spec)
    used = {file_column, *attribute_columns.values()}
    table = LabelsTable(
        path=path,
        header=header,
        delimiter=delimiter,
        ignored_columns=[c for i, c in enumerate(header) if i not in used and c.strip()],
    )
    _read_rows(reader, table, file_column, attribute_columns, spec)
    return table


def _header_columns(path: Path, header: list[str], delimiter: str, spec: AttributeSpec) -> tuple[int, dict[str, int]]:
    """The positions of the file-name column and of each attribute's column; ``LabelsFormatError``
    when a column is missing, given twice, or given in two spellings."""
    positions = {_normalise(cell): i for i, cell in reversed(list(enumerate(header)))}
    duplicates = [cell for cell, n in Counter(_normalise(c) for c in header).items() if n > 1 and cell]
    if duplicates:
        raise LabelsFormatError(f"{path}: header {header} repeats column(s) {duplicates}")

    def find(spellings: tuple[str, ...], what: str) -> int | None:
        found = [(s, positions[_normalise(s)]) for s in spellings if _normalise(s) in positions]
        if len(found) > 1:
            raise LabelsFormatError(
                f"{path}: header {header} has {len(found)} columns for {what} "
                f"({', '.join(repr(s) for s, _ in found)}); expected one of them"
            )
        return found[0][1] if found else None

    file_column = find(spec.filename_columns, "the file name")
    attribute_columns = {a.key: find(a.columns, a.key) for a in spec.attributes}
    missing = []
    if file_column is None:
        missing.append(" or ".join(repr(c) for c in spec.filename_columns))
    missing += [" or ".join(repr(c) for c in spec[k].columns) for k, i in attribute_columns.items() if i is None]
    if missing:
        raise LabelsFormatError(
            f"{path}: missing column(s) {', '.join(missing)}. Found header {header} "
            f"(separator {delimiter!r}); expected the columns {_expected_columns(spec)} in any order"
        )
    return file_column, attribute_columns


def _read_rows(reader, table: LabelsTable, file_column: int, attribute_columns: dict[str, int], spec: AttributeSpec) -> None:
    """Every row after the header into ``table.rows``, or with its reasons into ``table.problems``."""
    header = table.header
    first_seen: dict[str, int] = {}
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue  # blank lines (often at the end of a sheet) are not rows
        while len(cells) > len(header) and not cells[-1].strip():
            cells.pop()  # a trailing separator, as spreadsheets sometimes write
        if len(cells) != len(header):
            table.problems.append(Problem(line, f"expected {len(header)} cells as in the header, got {len(cells)}"))
            continue
        reasons = []
        filename = cells[file_column].strip()
        if not filename:
            reasons.append(f"empty file name in column {header[file_column]!r}")
        labels: dict[str, int] = {}
        for attribute in spec.attributes:
            column = attribute_columns[attribute.key]
            raw = cells[column]
            code = _parse_code(raw)
            if code is None:
                reasons.append(f"column {header[column]!r} is {raw!r}, expected an integer code {attribute.codes}")
            elif code not in attribute.codes:
                reasons.append(f"column {header[column]!r} has code {code}, expected one of {attribute.codes}")
            else:
                labels[attribute.key] = code
        if filename and not reasons and filename in first_seen:
            reasons.append(f"{filename} is already labelled on line {first_seen[filename]}")
        if reasons:
            table.problems.append(Problem(line, "; ".join(reasons)))
            continue
        first_seen[filename] = line
        table.rows.append(LabelRow(line, filename, labels))


@dataclass(frozen=True)
class SkippedRow:
    row: LabelRow
    reason: str  # "missing" or "not an image"
    detail: str


@dataclass
class ResolvedImages:
    """Rows split into usable ``(row, path)`` pairs and skipped ones."""

    usable: list[tuple[LabelRow, Path]]
    skipped: list[SkippedRow]
    bad_rows: list[Problem]  # the table's problems, so that one line can report everything

    @property
    def total(self) -> int:
        return len(self.usable) + len(self.skipped) + len(self.bad_rows)

    def summary(self, examples: int = 3) -> str:
        """One line for a log, e.g. ``skipped 7 of 2500 rows: 5 missing files, 2 not images (e.g. a.mp4, b.mov)``."""
        skipped = len(self.skipped) + len(self.bad_rows)
        if not skipped:
            return f"all {self.total} rows usable"
        parts = []
        if self.bad_rows:
            parts.append(f"{len(self.bad_rows)} bad labels (e.g. {self.bad_rows[0]})")
        for reason, noun in (("missing", "missing files"), ("not an image", "not images")):
            names = [s.row.filename for s in self.skipped if s.reason == reason]
            if names:
                shown = ", ".join(names[:examples]) + (", ..." if len(names) > examples else "")
                parts.append(f"{len(names)} {noun} (e.g. {shown})")
        return f"skipped {skipped} of {self.total} rows: " + ", ".join(parts)


def resolve_images(table: LabelsTable, images_dir: str | Path, check_magic: bool = True) -> ResolvedImages:
    """Pair every row with its file under ``images_dir``; skip missing files and non-photos.

    A non-photo extension (``.mp4``, ``.mov``, ...) is skipped whether or not the file
    exists; an existing file is also checked by its leading bytes unless ``check_magic``
    is false.
    """
    images_dir = Path(images_dir)
    usable: list[tuple[LabelRow, Path]] = []
    skipped: list[SkippedRow] = []
    for row in table.rows:
        path = images_dir / row.filename
        if not is_photo_name(path):
            suffix = path.suffix.lower()
            skipped.append(SkippedRow(row, "not an image", f"extension {suffix or '(none)'!r} is not a photo format"))
        elif not path.is_file():
            skipped.append(SkippedRow(row, "missing", f"{path} does not exist"))
        elif check_magic and file_format(path) is None:
            skipped.append(SkippedRow(row, "not an image", f"{path} does not start like a photo ({FORMATS_TEXT})"))
        else:
            usable.append((row, path))
    return ResolvedImages(usable, skipped, list(table.problems))
