"""The files of a field run folder (``tagctl tag-folder DIR --out RUN_DIR/``), read and written.

- ``labels.csv``: the seed's CSV (``;``, Russian header, codes), unchanged;
- ``details.csv``: UTF-8, ``;``-separated, one row per photo: relative path, every attribute's
  code/label/score, the tags (English and Russian), EXIF capture time, latitude, longitude,
  altitude, camera, EXIF warnings and the model that tagged it;
- ``photos.geojson``: a FeatureCollection of the photos with GPS (Point ``[lon, lat(, alt)]``;
  properties: path, time, tags, tags_ru, scores, camera);
- ``failed.csv``: the photos that failed, with the reason (tried again by the next run);
- ``run.json``: the photo folder and the model, for the report;
- ``explanations/<photo path>.png`` (optional, ``tag-folder --explain``): an overlay the report
  shows over the photo.

Every file is rewritten whole (next to it, then renamed), so an interrupted write never leaves
half a file. Paths read from these files are checked by :func:`safe_relative` before anything
is read or written under them. No torch: this is client-side (``tagctl``).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from lizaalert_tagger.common.exif import PhotoExif
from lizaalert_tagger.common.spec import AttributeSpec, is_tag

LABELS_CSV = "labels.csv"
DETAILS_CSV = "details.csv"
GEOJSON = "photos.geojson"
FAILED_CSV = "failed.csv"
RUN_JSON = "run.json"
EXPLANATIONS_DIR = "explanations"
DELIMITER = ";"
WARNING_SEPARATOR = " | "


class RunFilesError(ValueError):
    """A run folder's file cannot be used; the message says which and why (one line)."""


def safe_relative(name: str) -> PurePosixPath | None:
    """A photo path read from a run folder's file, if it stays inside the folder it is relative to:
    no absolute path, no ``..`` (which a symlinked folder could carry anywhere), no backslash or NUL.

    The one check for every path from these files: the report's thumbnails and the overlays of
    ``tag-folder --explain`` are read and written only under paths it lets through."""
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts or not p.parts or "\\" in name or "\x00" in name:
        return None
    return p


def explanation_path(run_dir: Path, name: str) -> Path | None:
    """``RUN_DIR/explanations/<name>.png`` for a photo path that :func:`safe_relative` lets through."""
    relative = safe_relative(name)
    if relative is None:
        return None
    return run_dir.joinpath(EXPLANATIONS_DIR, *relative.parent.parts, f"{relative.name}.png")


# --- one photo's record -----------------------------------------------------------------------


@dataclass
class PhotoRecord:
    """One tagged photo: codes and scores per attribute, what its EXIF says, the model."""

    path: str  # relative to the tagged folder, POSIX
    codes: dict[str, int]
    scores: dict[str, float | None] = field(default_factory=dict)
    exif: PhotoExif = field(default_factory=PhotoExif)
    model: str = ""

    @classmethod
    def from_answer(cls, path: str, answer: Mapping[str, Any], spec: AttributeSpec, exif: PhotoExif) -> "PhotoRecord":
        """A served answer as a record; ``ValueError`` (with what arrived) for an answer of another model."""
        codes = spec.answer_codes(answer)
        attributes = answer["attributes"]
        scores = {a.key: _finite(attributes[a.key].get("score")) for a in spec.attributes}
        model = answer.get("model") or {}
        name = " ".join(str(model.get(k, "")) for k in ("name", "version")).strip() if isinstance(model, Mapping) else ""
        return cls(path, codes, scores, exif, name)

    def tags(self, spec: AttributeSpec, lang: str = "en") -> list[str]:
        """Labels of what the photo is tagged with, as the server's ``tags``."""
        return spec.tags(self.codes, lang)

    def objects(self, spec: AttributeSpec) -> list[str]:
        """The binary attributes (objects: a car, a drone, ...) the photo is tagged with."""
        return [a.key for a in spec.attributes if a.is_binary and is_tag(self.codes[a.key])]

    def object_score(self, spec: AttributeSpec) -> float | None:
        """The highest score of an object found; ``None`` with no object."""
        present = [self.scores.get(key) or 0.0 for key in self.objects(spec)]
        return max(present) if present else None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# --- details.csv --------------------------------------------------------------------------------


def details_columns(spec: AttributeSpec) -> list[str]:
    columns = ["path"]
    for a in spec.attributes:
        columns += [f"{a.key}_code", f"{a.key}_label", f"{a.key}_score"]
    return columns + ["tags", "tags_ru", "time", "latitude", "longitude", "altitude", "camera", "exif_warnings", "model"]


def _number_text(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}".rstrip("0").rstrip(".")


def details_row(record: PhotoRecord, spec: AttributeSpec) -> dict[str, str]:
    row = {"path": record.path}
    for a in spec.attributes:
        code = record.codes[a.key]
        row[f"{a.key}_code"] = str(code)
        row[f"{a.key}_label"] = a.class_for(code).label
        score = record.scores.get(a.key)
        row[f"{a.key}_score"] = "" if score is None else f"{score:.4f}"
    e = record.exif
    row.update(
        tags=", ".join(record.tags(spec)),
        tags_ru=", ".join(record.tags(spec, "ru")),
        time=e.time or "",
        latitude=_number_text(e.latitude, 7),
        longitude=_number_text(e.longitude, 7),
        altitude=_number_text(e.altitude, 2),
        camera=e.camera or "",
        exif_warnings=WARNING_SEPARATOR.join(e.warnings),
        model=record.model,
    )
    return row


def details_text(records: Iterable[PhotoRecord], spec: AttributeSpec) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, details_columns(spec), delimiter=DELIMITER, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(details_row(record, spec))
    return out.getvalue()


def record_from_row(row: Mapping[str, str], spec: AttributeSpec) -> PhotoRecord:
    """A ``details.csv`` row back as a record; ``ValueError`` with the reason for a row that is not usable."""
    path = (row.get("path") or "").strip()
    if not path:
        raise ValueError("empty path")
    codes, scores = {}, {}
    for a in spec.attributes:
        raw = (row.get(f"{a.key}_code") or "").strip()
        if not raw.lstrip("-").isdigit() or int(raw) not in a.codes:
            raise ValueError(f"{a.key}_code is {raw!r}, expected one of {a.codes}")
        codes[a.key] = int(raw)
        scores[a.key] = _finite((row.get(f"{a.key}_score") or "").strip() or None)
    latitude, longitude = _finite(row.get("latitude") or None), _finite(row.get("longitude") or None)
    if latitude is None or longitude is None or not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        latitude = longitude = None
    warnings = tuple(w for w in (row.get("exif_warnings") or "").split(WARNING_SEPARATOR) if w)
    exif = PhotoExif(
        time=(row.get("time") or "").strip() or None,
        latitude=latitude,
        longitude=longitude,
        altitude=_finite(row.get("altitude") or None),
        camera=(row.get("camera") or "").strip() or None,
        warnings=warnings,
    )
    return PhotoRecord(path, codes, scores, exif, (row.get("model") or "").strip())


def read_details(path: Path, spec: AttributeSpec) -> tuple[dict[str, PhotoRecord], list[str]]:
    """Records by photo path, and the problems of the rows left out (``line N: reason``).

    Raises :class:`RunFilesError` when the file is not UTF-8 or lacks the path or code columns.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RunFilesError(f"{path}: expected UTF-8 text (byte {e.start})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=DELIMITER)
    needed = ["path", *(f"{a.key}_code" for a in spec.attributes)]
    missing = [c for c in needed if c not in (reader.fieldnames or [])]
    if missing:
        raise RunFilesError(f"{path}: missing column(s) {', '.join(missing)}; not a details.csv of tagctl")
    records: dict[str, PhotoRecord] = {}
    problems: list[str] = []
    for row in reader:
        try:
            record = record_from_row(row, spec)
        except ValueError as e:
            problems.append(f"line {reader.line_num}: {e}")
            continue
        if record.path in records:
            problems.append(f"line {reader.line_num}: {record.path} appears twice")
            continue
        records[record.path] = record
    return records, problems


# --- photos.geojson, failed.csv, run.json -----------------------------------------------------------


def geojson_text(records: Iterable[PhotoRecord], spec: AttributeSpec) -> str:
    """RFC 7946 FeatureCollection of the photos with a position, one Point ``[lon, lat(, alt)]`` each."""
    features = []
    for r in records:
        e = r.exif
        if not e.has_position:
            continue
        coordinates = [e.longitude, e.latitude] + ([e.altitude] if e.altitude is not None else [])
        features.append({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": coordinates},
            "properties": {
                "path": r.path,
                "time": e.time,
                "tags": r.tags(spec),
                "tags_ru": r.tags(spec, "ru"),
                "scores": {a.key: None if r.scores.get(a.key) is None else round(r.scores[a.key], 4) for a in spec.attributes},
                "camera": e.camera,
            },
        })
    # one feature per line: readable, and diffs between runs stay small
    lines = ",\n".join(json.dumps(f, ensure_ascii=False, separators=(",", ":")) for f in features)
    return '{"type":"FeatureCollection","features":[\n' + lines + ("\n" if lines else "") + "]}\n"


def failed_text(failures: Mapping[str, str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=DELIMITER, lineterminator="\n")
    writer.writerow(["path", "reason"])
    for name in sorted(failures):
        writer.writerow([name, failures[name]])
    return out.getvalue()


def read_failed(path: Path) -> dict[str, str]:
    """``failed.csv`` as ``{path: reason}``; an unreadable or missing file is empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    rows = csv.DictReader(io.StringIO(text, newline=""), delimiter=DELIMITER)
    return {r["path"]: r.get("reason") or "" for r in rows if r.get("path")}


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """``run.json`` (the photo folder, the model); empty when missing or unreadable."""
    try:
        info = json.loads((run_dir / RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def write_text_atomically(path: Path, text: str) -> None:
    """Write next to ``path``, then rename: an interrupted write never leaves half a file."""
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline=""))


def write_atomically(path: Path, write) -> None:
    """``write(tmp)`` a file next to ``path``, then rename it to ``path``; the temp file never stays."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_labels_atomically(out: Path, rows: Mapping[str, Mapping[str, int]], spec: AttributeSpec) -> None:
    """The seed's CSV (``labels.csv``, or tag-folder's ``--out FILE.csv``), rows sorted by file name."""
    from lizaalert_tagger.common.labels_csv import write_labels

    write_atomically(out, lambda tmp: write_labels(tmp, sorted(rows.items()), spec))


# --- the run folder as a whole -------------------------------------------------------------------------


class RunFolder:
    """The files of ``tag-folder --out RUN_DIR/``: what an earlier run left (``details``,
    ``old_failed``) and :meth:`save`, which rewrites them all."""

    def __init__(self, run_dir: Path, folder: Path, spec: AttributeSpec, restart: bool) -> None:
        """Reads ``details.csv`` and ``failed.csv`` unless ``restart``; :class:`RunFilesError` (and
        ``OSError``) when ``details.csv`` cannot be read, ``problems`` lists the rows left out."""
        self.dir, self.folder, self.spec = run_dir, folder, spec
        self.labels_path = run_dir / LABELS_CSV
        self.details_path = run_dir / DETAILS_CSV
        self.failed_path = run_dir / FAILED_CSV
        self.details: dict[str, PhotoRecord] = {}
        self.old_failed: dict[str, str] = {}
        self.problems: list[str] = []
        self.model = ""
        if restart:
            return
        if self.details_path.exists():
            self.details, self.problems = read_details(self.details_path, spec)
        self.old_failed = read_failed(self.failed_path)

    def save(self, labels: Mapping[str, Mapping[str, int]], records: Mapping[str, PhotoRecord],
             failed: Mapping[str, str]) -> None:
        """labels.csv first (the seed's file), then the others; each one whole or not at all."""
        write_labels_atomically(self.labels_path, labels, self.spec)
        ordered = [records[name] for name in sorted(records)]
        models = [r.model for r in ordered if r.model]
        self.model = models[-1] if models else self.model
        info = {"folder": str(self.folder.resolve()), "model": self.model, "photos": len(ordered),
                "failed": len(failed), "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        write_text_atomically(self.details_path, details_text(ordered, self.spec))
        write_text_atomically(self.dir / GEOJSON, geojson_text(ordered, self.spec))
        write_text_atomically(self.failed_path, failed_text(failed))
        write_text_atomically(self.dir / RUN_JSON, json.dumps(info, ensure_ascii=False, indent=1) + "\n")
