"""The data set: ``images/*.jpg``, ``labels.csv`` (the seed's CSV format) and ``boxes.json``
(where each tagged object was drawn), in one or several processes; the frequency table.
With ``exif_fraction`` > 0, that share of the photos carry EXIF time and GPS (``scenes.exif``)."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Sequence
from pathlib import Path

from lizaalert_tagger.common.labels_csv import write_labels
from lizaalert_tagger.common.spec import AttributeSpec, load_spec
from lizaalert_tagger.scenes.exif import with_exif
from lizaalert_tagger.scenes.plan import DEFAULT_MAX_SIZE, check_spec, default_min_size, tag_boxes
from lizaalert_tagger.scenes.render import generate
from lizaalert_tagger.scenes.weather import CLEAR, check_weather


def image_name(index: int) -> str:
    return f"{index:05d}.jpg"


BOXES_FILENAME = "boxes.json"


def _write_one(job: tuple[Path, int, int, int, int, float, float, AttributeSpec, str]) -> tuple[int, dict[str, int], list[list]]:
    images_dir, seed, index, min_size, max_size, tag_boost, exif_fraction, spec, weather = job
    data, plan = generate(seed, index, min_size, max_size, tag_boost, spec, weather)
    if exif_fraction > 0:
        data = with_exif(data, seed, index, plan.labels, exif_fraction)
    (images_dir / image_name(index)).write_bytes(data)
    return index, plan.labels, tag_boxes(plan)


def make_dataset(
    out: Path,
    count: int,
    seed: int,
    min_size: int | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    jobs: int = 1,
    spec: AttributeSpec | None = None,
    progress: bool = False,
    tag_boost: float = 1.0,
    exif_fraction: float = 0.0,
    weather: str = CLEAR,
) -> list[tuple[str, dict[str, int]]]:
    """Write ``out/images/*.jpg``, ``out/labels.csv`` and ``out/boxes.json`` (where each tagged
    object was drawn, see :func:`tag_boxes`) for the attributes of ``spec`` (default: the shipped
    spec); returns the rows written.

    ``min_size``: default :func:`default_min_size`.
    ``exif_fraction``: the share of photos given EXIF capture time and GPS (0: none, and the
    files are byte for byte what they were before the option existed).
    ``weather``: one of ``scenes.weather.WEATHER_CHOICES`` (``clear``: the photos as before the option existed)."""
    from tqdm import tqdm

    spec = spec if spec is not None else load_spec()
    check_spec(spec)
    check_weather(weather)
    min_size = min_size if min_size is not None else default_min_size(max_size)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    work = [(images_dir, seed, i, min_size, max_size, tag_boost, exif_fraction, spec, weather) for i in range(count)]
    labels: dict[int, dict[str, int]] = {}
    boxes: dict[int, list[list]] = {}
    bar = tqdm(total=count, unit="img", desc="scenes", disable=not progress, mininterval=1.0)
    if jobs > 1 and count > 1:
        with multiprocessing.Pool(jobs) as pool:
            for index, row, drawn in pool.imap_unordered(_write_one, work, chunksize=4):
                labels[index], boxes[index] = row, drawn
                bar.update()
    else:
        for job in work:
            index, row, drawn = _write_one(job)
            labels[index], boxes[index] = row, drawn
            bar.update()
    bar.close()
    rows = [(image_name(i), labels[i]) for i in range(count)]
    write_labels(out / "labels.csv", rows, spec)
    (out / BOXES_FILENAME).write_text(json.dumps({image_name(i): boxes[i] for i in range(count)}, separators=(",", ":")) + "\n")
    return rows


def frequency_table(rows: Sequence[tuple[str, dict[str, int]]], spec: AttributeSpec) -> str:
    """Per attribute, how many rows have each code."""
    lines = []
    total = len(rows)
    for a in spec.attributes:
        counts = {c: sum(1 for _, labels in rows if labels[a.key] == c) for c in a.codes}
        cells = ", ".join(
            f"{a.class_for(c).label} {n} ({100 * n / max(total, 1):.1f}%)"
            for c, n in counts.items()
            if not a.is_binary or c == 1
        )
        lines.append(f"  {a.key:<12} {cells}")
    return "\n".join(lines)
