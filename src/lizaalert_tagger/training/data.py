"""Training data: labelled photos decoded once with the serving preprocessing, targets, crops' labels.

Every photo goes through ``lizaalert_tagger.vision.preprocess`` (the same decode, EXIF, RGB and
squash resize with the spec's interpolation as the server) and is cached as 256x256 uint8
pixels, so training and serving cannot drift apart.
"""
from __future__ import annotations

import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lizaalert_tagger.common.errors import InvalidInput
from lizaalert_tagger.common.labels_csv import read_labels, resolve_images
from lizaalert_tagger.common.spec import AttributeSpec, Preprocessing
from lizaalert_tagger.vision.preprocess import decode_image, resize_for_model


def _load_pixels(args: tuple[str, Preprocessing]) -> np.ndarray | str:
    """One photo through the serving decode and resize (the spec's size and interpolation)."""
    path, pre = args
    try:
        decoded = decode_image(Path(path).read_bytes(), target_size=(pre.size[1], pre.size[0]))
        return resize_for_model(decoded.image, pre).numpy()
    except (OSError, InvalidInput) as e:
        return f"{Path(path).name}: {e}"


def load_pixels(paths: list[Path], spec: AttributeSpec, jobs: int) -> tuple[torch.Tensor, list[int], list[str]]:
    """Decode photos with the serving preprocessing into a ``[N, 3, H, W]`` uint8 tensor;
    also the indexes of the photos kept and a message per photo that did not decode."""
    pre = spec.preprocessing
    out = torch.empty((len(paths), 3, *pre.size), dtype=torch.uint8)
    kept, problems = [], []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        results = pool.map(_load_pixels, [(str(p), pre) for p in paths], chunksize=16)
        for i, result in enumerate(tqdm(results, total=len(paths), desc="decode", unit="img", leave=False,
                                          disable=not sys.stderr.isatty())):
            if isinstance(result, str):
                problems.append(result)
            else:
                out[len(kept)] = torch.from_numpy(result)
                kept.append(i)
    return out[: len(kept)], kept, problems


def load_labelled(images: Path, labels: Path, spec: AttributeSpec, jobs: int) -> tuple[torch.Tensor, list[dict[str, int]], list[str]]:
    """Read a CSV in the seed's format and decode its usable photos; report what was skipped in one line."""
    resolved = resolve_images(read_labels(labels, spec), images)
    if resolved.skipped or resolved.bad_rows:
        print(f"warning: {labels}: {resolved.summary()}", file=sys.stderr)
    if not resolved.usable:
        raise ValueError(f"no usable rows in {labels} (images in {images})")
    pixels, kept, problems = load_pixels([path for _, path in resolved.usable], spec, jobs)
    if problems:
        print(f"warning: skipped {len(problems)} photos that did not decode (e.g. {problems[0]})", file=sys.stderr)
    return pixels, [resolved.usable[i][0].labels for i in kept], [resolved.usable[i][1].name for i in kept]


def load_boxes(path: Path, names: list[str]) -> list[list[list]]:
    """Per photo, the tagged objects' boxes from the scene generator's boxes.json."""
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read the objects' boxes {path}: {e}") from None
    missing = [n for n in names if n not in table]
    if missing:
        raise ValueError(f"{path} has no boxes for {len(missing)} photos (e.g. {missing[0]}): not the boxes of these labels")
    return [table[n] for n in names]


def targets_from_codes(rows: list[dict[str, int]], spec: AttributeSpec) -> dict[str, torch.Tensor]:
    """Per attribute: class indexes (categorical) or 0/1 floats (binary)."""
    targets = {}
    for a in spec.attributes:
        if a.is_binary:
            targets[a.key] = torch.tensor([float(r[a.key]) for r in rows])
        else:
            index = {code: i for i, code in enumerate(a.codes)}
            targets[a.key] = torch.tensor([index[r[a.key]] for r in rows], dtype=torch.long)
    return targets


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded split of ``n`` photos into training and held-out indexes."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(n * val_fraction))) if n > 1 else 0
    return order[n_val:], order[:n_val]


def crop_targets(
    targets: dict[str, torch.Tensor],
    boxes: list[list[list]],
    window: torch.Tensor,
    spec: AttributeSpec,
    keep: float = 0.5,
    drop: float = 0.15,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Binary targets and loss masks for crops ``window [B, 4]`` (x0, y0, x1, y1 as fractions).

    A tag is present in a crop when at least ``keep`` of one of its boxes is inside it,
    absent when no box has more than ``drop`` inside, and left out of the loss otherwise
    (half an object is neither a clear yes nor a clear no). Categorical targets are kept:
    the light and the ground that carry them fill the whole photo.
    """
    out = dict(targets)
    masks = {}
    for a in spec.attributes:
        if not a.is_binary:
            continue
        target = torch.zeros(len(boxes))
        mask = torch.ones(len(boxes))
        for i, drawn in enumerate(boxes):
            if not targets[a.key][i]:
                continue
            inside = 0.0
            for tag, x0, y0, x1, y1 in drawn:
                if tag != a.key:
                    continue
                area = max(1e-9, (x1 - x0) * (y1 - y0))
                w = max(0.0, min(x1, float(window[i, 2])) - max(x0, float(window[i, 0])))
                h = max(0.0, min(y1, float(window[i, 3])) - max(y0, float(window[i, 1])))
                inside = max(inside, w * h / area)
            if inside >= keep:
                target[i] = 1.0
            elif inside > drop:
                mask[i] = 0.0
        out[a.key], masks[a.key] = target, mask
    return out, masks
