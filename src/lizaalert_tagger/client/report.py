"""The offline HTML report of a field run folder (``tagctl report RUN_DIR``, ``tag-folder --report``).

``build_report`` writes ``RUN_DIR/report/``: ``index.html`` (CSS and JS inline, no network: its
Content-Security-Policy allows only the folder's own images) with thumbnails and previews made in
parallel with Pillow's draft mode, EXIF orientation applied, and the overlays of ``--explain``.
Every string from the files (names, EXIF text) goes through Jinja2 with autoescape on. The run
folder's files themselves are read by :mod:`lizaalert_tagger.client.run_folder`.

The page is also where a reviewer corrects the tags (report.js): each card carries its codes, its
scores and its decision margin (:mod:`lizaalert_tagger.common.certainty`) as data; the viewer has one
control per attribute; corrections stay in the browser's localStorage under the run's id
(``report/run-id.txt``, made once, so a rebuilt report keeps them) and are exported as
``reviewed.csv`` (the seed's CSV, header from the spec) and ``review.json``.

No torch: this is client-side (``tagctl``).
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lizaalert_tagger.client.run_folder import (
    DETAILS_CSV,
    FAILED_CSV,
    RUN_JSON,
    PhotoRecord,
    RunFilesError,
    explanation_path,
    read_details,
    read_failed,
    read_run_info,
    safe_relative,
    write_text_atomically,
)
from lizaalert_tagger.common.certainty import decision_margin
from lizaalert_tagger.common.formats import open_image
from lizaalert_tagger.common.labels_csv import header_row
from lizaalert_tagger.common.spec import Attribute, AttributeSpec, is_tag

REPORT_DIR = "report"
THUMB_SIZE = 320
PREVIEW_SIZE = 1280
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RUN_ID_FILE = "run-id.txt"
DIGIT_KEYS = 9  # the viewer's keys 1..9 toggle the first nine binary attributes, in the spec's order


@dataclass
class ReportSummary:
    index: Path
    photos: int
    thumbnails_made: int
    thumbnails_failed: dict[str, str]


@dataclass
class _Job:
    """One photo's derived files still to make."""

    path: str
    source: Path
    thumb: Path
    preview: Path | None


# --- derived files: thumbnails, previews, overlays --------------------------------------------------


def _thumbnail(source: Path, thumb: Path, preview: Path | None, thumb_size: int, preview_size: int) -> None:
    """Thumbnail (and preview) of one photo: draft-mode decode at the smallest JPEG scale that
    still covers the larger size, EXIF orientation applied, RGB JPEG out."""
    from PIL import Image, ImageOps

    target = max(thumb_size, preview_size if preview else 0)
    with open_image(source) as img:
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
    try:
        with open_image(path) as img:
            return img.size
    except Exception:  # noqa: BLE001
        return None


def _copy_overlay(run_dir: Path, name: str, overlay: Path) -> Path | None:
    """The photo's ``--explain`` overlay copied into the report (if it has one and it is a PNG)."""
    explanation = explanation_path(run_dir, name)
    if explanation is None or not explanation.is_file():
        return None
    with open(explanation, "rb") as f:
        if f.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            return None
    if not overlay.exists() or overlay.stat().st_size != explanation.stat().st_size:
        shutil.copyfile(explanation, overlay)
    return overlay


def _make_thumbnails(jobs_todo: list[_Job], thumb_size: int, preview_size: int, jobs: int | None,
                     progress: bool) -> tuple[int, dict[str, str]]:
    """Thumbnails and previews in parallel; the count made and the photos that failed, with the reason."""
    made, failures = 0, {}
    if not jobs_todo:
        return made, failures
    from tqdm import tqdm

    with ThreadPoolExecutor(max_workers=jobs or min(8, os.cpu_count() or 1)) as pool, \
            tqdm(total=len(jobs_todo), desc="thumbnails", unit="photo", disable=not progress) as bar:
        futures = {pool.submit(_thumbnail, job.source, job.thumb, job.preview, thumb_size, preview_size): job.path
                   for job in jobs_todo}
        for future, name in futures.items():
            try:
                future.result()
                made += 1
            except Exception as e:  # noqa: BLE001 - one unreadable photo gets a placeholder
                failures[name] = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
            bar.update(1)
    return made, failures


def _remove_unused(dirs: dict[str, Path], used: set[Path]) -> None:
    """Derived files of photos no longer in the run, or of old sizes."""
    for d in dirs.values():
        for f in d.iterdir():
            if f not in used and f.is_file():
                f.unlink()


# --- the page ------------------------------------------------------------------------------------------


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


def _token(a: Attribute, code: int) -> str:
    """A tag's name in the page's filters: the key of an object, ``key-code`` of a scene value."""
    return a.key if a.is_binary else f"{a.key}-{code}"


def _tag_options(spec: AttributeSpec) -> list[dict[str, Any]]:
    """Every tag a photo can have, objects first: token (for the filters), Russian and English label."""
    objects, scene = [], []
    for a in spec.attributes:
        for cls in a.classes:
            if not is_tag(cls.code):
                continue
            (objects if a.is_binary else scene).append(
                {"token": _token(a, cls.code), "key": a.key, "code": cls.code, "ru": cls.label_ru or cls.label,
                 "en": cls.label, "object": a.is_binary})
    return objects + scene


def _card(order: int, r: PhotoRecord, spec: AttributeSpec, by_token: dict[str, dict], files: dict[str, Path | None]) -> dict[str, Any]:
    """One photo's card: its chips (tags with scores), EXIF time and place, its derived files."""
    chips = []
    for a in spec.attributes:
        code = r.codes[a.key]
        if is_tag(code):
            score = r.scores.get(a.key)
            chips.append({**by_token[_token(a, code)], "score": "" if score is None else f"{score:.2f}"})
    e = r.exif
    return {
        "order": order,
        "path": r.path,
        **files,
        "chips": chips,
        "tokens": " ".join(c["token"] for c in chips),
        "object_score": r.object_score(spec),
        # for the review, in the spec's order: the served codes and scores, and how close the answer is to changing
        "codes": _json([r.codes[a.key] for a in spec.attributes]),
        "scores": _json([r.scores.get(a.key) for a in spec.attributes]),
        "margin": f"{decision_margin(r.codes, r.scores, spec):.4f}",
        "time": e.time or "",
        "time_shown": _display_time(e.time),
        "position": (f"{e.latitude:.5f}, {e.longitude:.5f}" if e.has_position else ""),
        "altitude": ("" if e.altitude is None else f"{e.altitude:.0f} м"),
        "camera": e.camera or "",
        "warnings": list(e.warnings),
    }


def _json(value: Any) -> str:
    """Compact JSON for a ``data-`` attribute (autoescaped there; the page reads it with ``JSON.parse``)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _review_attributes(spec: AttributeSpec) -> list[dict[str, Any]]:
    """The viewer's controls, in the spec's order: a toggle per binary attribute (keys 1..9, in order),
    a choice among the values of each categorical one; Russian labels, English on hover, and the
    filter token each value makes when it is a tag (none for "not visible")."""
    out, digit = [], 0
    for a in spec.attributes:
        name_en = a.key.replace("_", " ")
        if a.is_binary:
            digit += 1
            present = a.class_for(1)
            out.append({"key": a.key, "binary": True, "ru": present.label_ru or present.label, "en": present.label,
                        "token": _token(a, 1), "threshold": a.threshold, "digit": digit if digit <= DIGIT_KEYS else None})
        else:
            out.append({"key": a.key, "binary": False, "ru": a.column, "en": name_en,
                        "classes": [{"code": c.code, "ru": c.label_ru or c.label, "en": c.label,
                                     "token": _token(a, c.code) if is_tag(c.code) else ""} for c in a.classes]})
    return out


def _run_id(out: Path) -> str:
    """The run's id in the page (the key of its corrections in localStorage): made once, kept in
    ``report/run-id.txt``, so that rebuilding the report keeps the reviewer's corrections."""
    path = out / RUN_ID_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    if re.fullmatch(r"[0-9a-f]{32}", text):
        return text
    run_id = uuid.uuid4().hex
    write_text_atomically(path, run_id + "\n")
    return run_id


def _finish_cards(cards: list[dict[str, Any]], out: Path, problems: dict[str, str]) -> None:
    """Derived files as URLs relative to the report (``None`` where none was made), and each card's problem."""
    def url(p: Path | None) -> str | None:
        return None if p is None or not p.exists() else p.relative_to(out).as_posix()

    for card in cards:
        card["thumb_size"] = _image_size(card["thumb"]) if card["thumb"].exists() else None
        card["thumb"], card["preview"], card["overlay"] = url(card["thumb"]), url(card["preview"]), url(card["overlay"])
        card["preview"] = card["preview"] or card["thumb"]
        card["problem"] = problems.get(card["path"]) or ""


def _page_context(run_dir: Path, photos_dir: Path, run_info: dict[str, Any], cards: list[dict[str, Any]],
                  options: list[dict[str, Any]], failed: dict[str, str], problems: list[str],
                  spec: AttributeSpec) -> dict[str, Any]:
    counts = {o["token"]: 0 for o in options}
    for card in cards:
        for chip in card["chips"]:
            counts[chip["token"]] += 1
    times = sorted(c["time"][:16] for c in cards if c["time"])
    review_attributes = _review_attributes(spec)
    return {
        "title": f"LizaAlert: {run_dir.resolve().name}",
        "run_name": run_dir.resolve().name,
        "photos_dir": str(photos_dir),
        "model": run_info.get("model", ""),
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
        "run_id": _run_id(run_dir / REPORT_DIR),
        "csv_header": _json(header_row(spec)),
        "keys": _json(list(spec.keys)),
        "review_attributes": review_attributes,
        "digit_keys": sum(1 for a in review_attributes if a.get("digit")),
    }


# --- the report ------------------------------------------------------------------------------------------


def _photos_dir(run_dir: Path, photos_dir: Path | None, run_info: dict[str, Any]) -> Path:
    if photos_dir is not None:
        return Path(photos_dir)
    folder = run_info.get("folder")
    if not isinstance(folder, str) or not folder:
        raise RunFilesError(f"{run_dir / RUN_JSON} does not name the photo folder: give it with --photos DIR")
    return Path(folder)


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
    run_info = read_run_info(run_dir)
    photos_dir = _photos_dir(run_dir, photos_dir, run_info)

    out = run_dir / REPORT_DIR
    dirs = {name: out / name for name in ("thumbs", "previews", "overlays")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)

    ordered = sorted(records.values(), key=lambda r: (r.object_score(spec) is None, -(r.object_score(spec) or 0.0), r.path))
    options = _tag_options(spec)
    by_token = {o["token"]: o for o in options}
    jobs_todo: list[_Job] = []
    cards: list[dict[str, Any]] = []
    not_found: dict[str, str] = {}
    for order, r in enumerate(ordered):
        relative = safe_relative(r.path)
        source = photos_dir.joinpath(*relative.parts) if relative else None
        key = _file_key(r.path, source or photos_dir, thumb_size, preview_size)
        thumb = dirs["thumbs"] / f"{key}.jpg"
        preview = dirs["previews"] / f"{key}.jpg" if preview_size else None
        if source is None:
            not_found[r.path] = "path leaves the photo folder"
        elif not source.is_file():
            not_found[r.path] = f"not found under {photos_dir}"
        elif not thumb.exists() or (preview is not None and not preview.exists()):
            jobs_todo.append(_Job(r.path, source, thumb, preview))
        overlay = _copy_overlay(run_dir, r.path, dirs["overlays"] / f"{key}.png")
        cards.append(_card(order, r, spec, by_token, {"thumb": thumb, "preview": preview, "overlay": overlay}))

    made, thumb_failures = _make_thumbnails(jobs_todo, thumb_size, preview_size, jobs, progress)
    _remove_unused(dirs, {p for c in cards for p in (c["thumb"], c["preview"], c["overlay"]) if p is not None})
    _finish_cards(cards, out, {**not_found, **thumb_failures})
    context = _page_context(run_dir, photos_dir, run_info, cards, options, read_failed(run_dir / FAILED_CSV), problems,
                            spec)
    index = out / "index.html"
    write_text_atomically(index, render_html(context))
    return ReportSummary(index, len(cards), made, {**not_found, **thumb_failures})
