"""Reduced copies (``tagctl --send-size``) against the originals (``--send-original``), for ``lizaalert-field-bench``.

- :class:`SendMode`: one way of sending, as tagctl's flags and as :class:`~lizaalert_tagger.client.upload.Upload`;
- :func:`input_sweep`: per copy size and JPEG quality, the bytes sent per photo, the client's time per
  photo and how far the model's input (the pixels the server's preprocessing makes of the bytes) moves
  from the original's, in 8-bit levels. No server and no model: what the size and quality were chosen by;
- :func:`server_cpu_seconds`: the CPU time of a TorchServe's processes (launcher, Java frontend, Python
  workers), with psutil;
- :func:`tag_agreement`: the share of tags on which two runs' CSVs agree.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lizaalert_tagger.client.upload import ORIGINAL, SEND_QUALITY, Upload, reduced_copy
from lizaalert_tagger.common.spec import AttributeSpec

SWEEP_SIZES = (512, 768, 1024, 1536)
SWEEP_QUALITIES = (75, 85, 90, 95)


@dataclass(frozen=True)
class SendMode:
    """``original`` or a copy's long side in px (``1024``)."""

    name: str

    @classmethod
    def parse(cls, text: str) -> "SendMode":
        text = text.strip()
        if text != "original" and not (text.isdigit() and int(text) >= 1):
            raise ValueError(f"expected 'original' or a copy's long side in px (e.g. 1024), got {text!r}")
        return cls(text)

    @property
    def upload(self) -> Upload:
        return ORIGINAL if self.name == "original" else Upload(long_side=int(self.name))

    @property
    def flags(self) -> list[str]:
        """What tells ``tagctl tag-folder`` to send this way."""
        return ["--send-original"] if self.name == "original" else ["--send-size", self.name]

    @property
    def label(self) -> str:
        return "original" if self.name == "original" else f"copy {self.name} px"


def bytes_per_photo(photos: Sequence[Path], upload: Upload) -> float:
    """Mean request body of ``photos`` sent as ``upload`` says."""
    return sum(len(upload.body(p.read_bytes())) for p in photos) / max(1, len(photos))


def input_sweep(photos: Sequence[Path], spec: AttributeSpec, sizes: Sequence[int] = SWEEP_SIZES,
                qualities: Sequence[int] = SWEEP_QUALITIES) -> list[dict]:
    """One row per (size, quality): bytes per photo, client ms per photo, and the model's input from the
    copy against the original's (the server's decode and squash-resize of each): the mean absolute
    difference in 8-bit levels, its worst photo, and the worst photo's 99th percentile."""
    import numpy as np

    from lizaalert_tagger.vision.preprocess import decode_image, resize_for_model

    pre = spec.preprocessing
    height, width = pre.size

    def model_input(data: bytes):
        decoded = decode_image(data, target_size=(width, height))
        return resize_for_model(decoded.image, pre).numpy().astype(np.int16)

    originals = [(p.read_bytes(), None) for p in photos]
    originals = [(data, model_input(data)) for data, _ in originals]
    rows = []
    for size in sizes:
        for quality in qualities:
            sent, seconds, means, tails = 0, 0.0, [], []
            for data, reference in originals:
                t0 = time.perf_counter()
                body = reduced_copy(data, size, quality) or data
                seconds += time.perf_counter() - t0
                sent += len(body)
                difference = np.abs(model_input(body) - reference)
                means.append(float(difference.mean()))
                tails.append(float(np.percentile(difference, 99)))
            count = max(1, len(originals))
            rows.append({"size": size, "quality": quality, "bytes": sent / count, "client_ms": 1000 * seconds / count,
                         "mean_levels": sum(means) / count, "worst_mean_levels": max(means, default=0.0),
                         "worst_p99_levels": max(tails, default=0.0)})
    return rows


def print_sweep(rows: list[dict], photos: int, original_bytes: float) -> None:
    print(f"\nthe model's input made from a copy vs from the original ({photos} photos, {original_bytes / 1e6:.2f} MB "
          f"each on average; |d|: difference in 8-bit levels; the default is quality {SEND_QUALITY}):")
    print(f"{'long side':>9} {'quality':>7} {'KB/photo':>9} {'client ms':>9} {'mean |d|':>9} {'worst mean':>10} {'worst p99':>9}")
    for r in rows:
        print(f"{r['size']:>9} {r['quality']:>7} {r['bytes'] / 1e3:>9.0f} {r['client_ms']:>9.1f} {r['mean_levels']:>9.2f} "
              f"{r['worst_mean_levels']:>10.2f} {r['worst_p99_levels']:>9.0f}")


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and all its descendants (those alive now)."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def tag_agreement(csv_a: Path, csv_b: Path, spec: AttributeSpec) -> tuple[int, int]:
    """(tags equal, tags compared) over the photos in both CSVs (the seed's format), each attribute a tag."""
    from lizaalert_tagger.common.labels_csv import read_labels

    a = dict(read_labels(csv_a, spec).pairs())
    b = dict(read_labels(csv_b, spec).pairs())
    common = sorted(set(a) & set(b))
    same = sum(a[name][key] == b[name][key] for name in common for key in (x.key for x in spec.attributes))
    return same, len(common) * len(spec.attributes)
