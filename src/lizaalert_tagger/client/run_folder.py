"""A field run folder (``tagctl tag-folder DIR --out RUN_DIR/``) and its offline HTML report.

The run folder holds:

- ``labels.csv``: the seed's CSV (``;``, Russian header, codes), unchanged;
- ``details.csv``: UTF-8, ``;``-separated, one row per photo: relative path, every attribute's
  code/label/score, the tags (English and Russian), EXIF capture time, latitude, longitude,
  altitude, camera, EXIF warnings and the model that tagged it;
- ``photos.geojson``: a FeatureCollection of the photos with GPS (Point ``[lon, lat(, alt)]``;
  properties: path, time, tags, tags_ru, scores, camera);
- ``failed.csv``: the photos that failed permanently, with the reason;
- ``run.json``: the photo folder and the model, for the report;
- ``explanations/<photo path>.png`` (optional, made by whatever can explain a prediction):
  an overlay the report shows over the photo.

``build_report`` writes ``RUN_DIR/report/``: ``index.html`` (CSS and JS inline, no network:
its Content-Security-Policy allows only the folder's own images) with thumbnails and previews
made in parallel with Pillow's draft mode, EXIF orientation applied. Every string from the
files (names, EXIF text) goes through Jinja2 with autoescape on.

No torch: this is client-side (``tagctl``).
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
import os
import shutil
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from lizaalert_tagger.common.exif import PhotoExif
from lizaalert_tagger.common.spec import AttributeSpec

LABELS_CSV = "labels.csv"
DETAILS_CSV = "details.csv"
GEOJSON = "photos.geojson"
FAILED_CSV = "failed.csv"
RUN_JSON = "run.json"
REPORT_DIR = "report"
EXPLANATIONS_DIR = "explanations"
DELIMITER = ";"
WARNING_SEPARATOR = " | "

THUMB_SIZE = 320
PREVIEW_SIZE = 1280


class RunFilesError(ValueError):
    """A run folder's file cannot be used; the message says which and why (one line)."""


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
        codes = spec.answer_codes(dict(answer))
        scores: dict[str, float | None] = {}
        for a in spec.attributes:
            raw = answer["attributes"][a.key].get("score") if isinstance(answer["attributes"][a.key], Mapping) else None
            scores[a.key] = _finite(raw)
        model = answer.get("model") or {}
        name = " ".join(str(model.get(k, "")) for k in ("name", "version")).strip() if isinstance(model, Mapping) else ""
        return cls(path, codes, scores, exif, name)

    def tags(self, spec: AttributeSpec, lang: str = "en") -> list[str]:
        """Labels of what is present, as the server's ``tags``: categorical values other than
        "not visible" and binary attributes that are present."""
        out = []
        for a in spec.attributes:
            code = self.codes[a.key]
            if code != 0:
                cls = a.class_for(code)
                out.append(cls.label_ru if lang == "ru" else cls.label)
        return out

    def object_score(self, spec: AttributeSpec) -> float | None:
        """The highest score of a present object (binary attribute); ``None`` with no object."""
        present = [self.scores.get(a.key) or 0.0 for a in spec.attributes if a.is_binary and self.codes[a.key] == 1]
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


def write_text_atomically(path: Path, text: str) -> None:
    """Write next to ``path``, then rename: an interrupted write never leaves half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8", newline="")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- the report -------------------------------------------------------------------------------


@dataclass
class ReportSummary:
    index: Path
    photos: int
    thumbnails_made: int
    thumbnails_failed: dict[str, str]


def _safe_relative(name: str) -> PurePosixPath | None:
    """A photo path from a CSV, if it stays inside the folder (no absolute path, no ``..``)."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts or "\\" in name or "\x00" in name:
        return None
    return p


def _thumbnail(source: Path, thumb: Path, preview: Path | None, thumb_size: int, preview_size: int) -> None:
    """Thumbnail (and preview) of one photo: draft-mode decode at the smallest JPEG scale that
    still covers the larger size, EXIF orientation applied, RGB JPEG out."""
    from PIL import Image, ImageOps

    target = max(thumb_size, preview_size if preview else 0)
    with Image.open(source) as img:
        w, h = img.size
        scale = target / max(w, h)
        if scale < 1:
            img.draft("RGB", (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))
        img.load()
        try:
            oriented = ImageOps.exif_transpose(img)
        except Exception:  # noqa: BLE001 - a hostile Orientation: show the photo as stored
            oriented = img
        rgb = oriented.convert("RGB")
    if preview is not None:
        big = rgb.copy()
        big.thumbnail((preview_size, preview_size), Image.Resampling.BICUBIC)
        big.save(preview, "JPEG", quality=85)
    rgb.thumbnail((thumb_size, thumb_size), Image.Resampling.BICUBIC)
    rgb.save(thumb, "JPEG", quality=80)


def _file_key(relative: str, source: Path, *params: int) -> str:
    """A name for a photo's derived files: changes when the photo or the sizes change."""
    try:
        stat = source.stat()
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    digest = hashlib.sha256(f"{relative}\0{stamp}\0{params}".encode("utf-8", "surrogateescape")).hexdigest()
    return digest[:24]


def _image_size(path: Path) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size
    except Exception:  # noqa: BLE001
        return None


def _display_time(iso: str | None) -> str:
    """``2024-07-14T15:03:22+03:00`` -> ``14.07.2024 15:03:22 +03:00`` (as read; no conversion)."""
    if not iso or len(iso) < 19 or iso[10] != "T":
        return iso or ""
    date, clock, offset = iso[:10], iso[11:19], iso[19:]
    y, m, d = date.split("-") if date.count("-") == 2 else ("", "", "")
    return f"{d}.{m}.{y} {clock}" + (f" {offset}" if offset else "")


def _asset(name: str) -> str:
    from importlib.resources import files

    return files("lizaalert_tagger.client").joinpath("templates", name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def render_html(context: dict[str, Any]) -> str:
    """``report.html.j2`` with ``context``; autoescape on, whatever the file name says."""
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lizaalert_tagger.client", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    style, script = _asset("report.css"), _asset("report.js")
    csp = ("default-src 'none'; img-src 'self'; "
           f"style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; base-uri 'none'; form-action 'none'")
    return env.get_template("report.html.j2").render(
        **context, style=Markup(style), script=Markup(script), csp=csp)


def _tag_options(spec: AttributeSpec) -> list[dict[str, Any]]:
    """Every tag a photo can have, objects first: token (for the filters), Russian and English label."""
    objects, scene = [], []
    for a in spec.attributes:
        for cls in a.classes:
            if cls.code == 0:
                continue
            token = a.key if a.is_binary else f"{a.key}-{cls.code}"
            (objects if a.is_binary else scene).append(
                {"token": token, "key": a.key, "code": cls.code, "ru": cls.label_ru or cls.label, "en": cls.label,
                 "object": a.is_binary})
    return objects + scene


def build_report(
    run_dir: Path,
    spec: AttributeSpec,
    photos_dir: Path | None = None,
    thumb_size: int = THUMB_SIZE,
    preview_size: int = PREVIEW_SIZE,
    jobs: int | None = None,
    progress: bool = False,
) -> ReportSummary:
    """Write ``run_dir/report/index.html`` with thumbnails (and previews, unless ``preview_size`` is 0).

    The photos are read from ``photos_dir``, else from the folder named in ``run.json``.
    Thumbnails are kept between runs while the photo is unchanged; files no longer used are removed.
    """
    run_dir = Path(run_dir)
    details = run_dir / DETAILS_CSV
    if not details.is_file():
        raise RunFilesError(f"no {DETAILS_CSV} in {run_dir}: tag the photos first with `tagctl tag-folder PHOTOS --out {run_dir}/`")
    records, problems = read_details(details, spec)
    run_info: dict[str, Any] = {}
    try:
        run_info = json.loads((run_dir / RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    if photos_dir is None:
        folder = run_info.get("folder") if isinstance(run_info, dict) else None
        if not isinstance(folder, str) or not folder:
            raise RunFilesError(f"{run_dir / RUN_JSON} does not name the photo folder: give it with --photos DIR")
        photos_dir = Path(folder)
    photos_dir = Path(photos_dir)
    failed = read_failed(run_dir / FAILED_CSV)

    out = run_dir / REPORT_DIR
    dirs = {name: out / name for name in ("thumbs", "previews", "overlays")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)

    ordered = sorted(records.values(), key=lambda r: (r.object_score(spec) is None, -(r.object_score(spec) or 0.0), r.path))
    jobs_todo: list[tuple[str, Path, Path, Path | None]] = []
    cards: list[dict[str, Any]] = []
    used: set[Path] = set()
    not_found: dict[str, str] = {}
    options = _tag_options(spec)
    by_token = {o["token"]: o for o in options}
    for order, r in enumerate(ordered):
        relative = _safe_relative(r.path)
        source = photos_dir.joinpath(*relative.parts) if relative else None
        key = _file_key(r.path, source or photos_dir, thumb_size, preview_size)
        thumb = dirs["thumbs"] / f"{key}.jpg"
        preview = dirs["previews"] / f"{key}.jpg" if preview_size else None
        if source is None:
            not_found[r.path] = "path leaves the photo folder"
        elif not source.is_file():
            not_found[r.path] = f"not found under {photos_dir}"
        elif not thumb.exists() or (preview is not None and not preview.exists()):
            jobs_todo.append((r.path, source, thumb, preview))
        overlay = None
        explanation = run_dir / EXPLANATIONS_DIR / f"{r.path}.png" if relative else None
        if explanation is not None and explanation.is_file():
            with open(explanation, "rb") as f:
                is_png = f.read(8) == b"\x89PNG\r\n\x1a\n"
            if is_png:
                overlay = dirs["overlays"] / f"{key}.png"
                if not overlay.exists() or overlay.stat().st_size != explanation.stat().st_size:
                    shutil.copyfile(explanation, overlay)
        used.update(p for p in (thumb, preview, overlay) if p is not None)
        chips = []
        for a in spec.attributes:
            code = r.codes[a.key]
            if code == 0:
                continue
            token = a.key if a.is_binary else f"{a.key}-{code}"
            score = r.scores.get(a.key)
            chips.append({**by_token[token], "score": "" if score is None else f"{score:.2f}"})
        e = r.exif
        cards.append({
            "order": order,
            "path": r.path,
            "thumb": thumb, "preview": preview, "overlay": overlay,
            "chips": chips,
            "tokens": " ".join(c["token"] for c in chips),
            "object_score": r.object_score(spec),
            "time": e.time or "",
            "time_shown": _display_time(e.time),
            "position": (f"{e.latitude:.5f}, {e.longitude:.5f}" if e.has_position else ""),
            "altitude": ("" if e.altitude is None else f"{e.altitude:.0f} м"),
            "camera": e.camera or "",
            "warnings": list(e.warnings),
        })

    made, thumb_failures = 0, {}
    if jobs_todo:
        from tqdm import tqdm

        with ThreadPoolExecutor(max_workers=jobs or min(8, os.cpu_count() or 1)) as pool, \
                tqdm(total=len(jobs_todo), desc="thumbnails", unit="photo", disable=not progress) as bar:
            futures = {pool.submit(_thumbnail, src, thumb, preview, thumb_size, preview_size): name
                       for name, src, thumb, preview in jobs_todo}
            for future, name in futures.items():
                try:
                    future.result()
                    made += 1
                except Exception as e:  # noqa: BLE001 - one unreadable photo gets a placeholder
                    thumb_failures[name] = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
                bar.update(1)
    for d in dirs.values():  # derived files of photos no longer in the run, or of old sizes
        for f in d.iterdir():
            if f not in used and f.is_file():
                f.unlink()

    def url(p: Path | None) -> str | None:
        return None if p is None or not p.exists() else p.relative_to(out).as_posix()

    for card in cards:
        size = _image_size(card["thumb"]) if card["thumb"].exists() else None
        card["thumb_size"] = size
        card["thumb"], card["preview"], card["overlay"] = url(card["thumb"]), url(card["preview"]), url(card["overlay"])
        card["preview"] = card["preview"] or card["thumb"]
        problem = not_found.get(card["path"]) or thumb_failures.get(card["path"])
        card["problem"] = problem or ""

    counts = {o["token"]: 0 for o in options}
    for card in cards:
        for chip in card["chips"]:
            counts[chip["token"]] += 1
    times = sorted(c["time"][:16] for c in cards if c["time"])
    context = {
        "title": f"LizaAlert: {run_dir.resolve().name}",
        "run_name": run_dir.resolve().name,
        "photos_dir": str(photos_dir),
        "model": run_info.get("model", "") if isinstance(run_info, dict) else "",
        "cards": cards,
        "options": [{**o, "count": counts[o["token"]]} for o in options],
        "total": len(cards),
        "with_objects": sum(1 for c in cards if c["object_score"] is not None),
        "with_position": sum(1 for c in cards if c["position"]),
        "with_time": len(times),
        "time_min": times[0] if times else "",
        "time_max": times[-1] if times else "",
        "failed": sorted(failed.items()),
        "problems": problems,
        "with_warnings": sum(1 for c in cards if c["warnings"]),
    }
    index = out / "index.html"
    write_text_atomically(index, render_html(context))
    return ReportSummary(index, len(cards), made, {**not_found, **thumb_failures})
