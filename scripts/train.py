#!/usr/bin/env python3
"""Fine-tune (or train from scratch) the tagger on photos labelled in the seed's CSV format.

    python scripts/train.py --images DIR --labels labels.csv --out DIR [--weights imagenet.pth]

- Reads the seed's CSV (both header spellings); rows whose file is missing or
  not an image are skipped and counted in one warning line.
- Decodes every photo once with the serving preprocessing
  (``tagger_preprocess``: the same decode, EXIF, RGB, squash resize) and caches
  the 256x256 uint8 pixels, so training and serving cannot drift apart.
- Loss: cross-entropy for categorical heads, BCE-with-logits with positive
  weighting for the rare binary tags; AdamW with a one-cycle schedule, bf16
  autocast on CPUs that support it, channels_last.
- Resolution schedule: early epochs at a lower resolution (``--low-res``; the
  network is fully convolutional with global pooling), the last
  ``--final-epochs`` at the served 256x256.
- Holds out a validation split, tunes each binary tag's threshold for F1 on
  it, and writes into ``--out``: ``weights.pt`` (state dict),
  ``attributes.json`` (the spec with those thresholds) and ``metrics.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import _project  # noqa: F401
from labels_csv import read_labels, resolve_images
from scoring import score_codes
from tagger_model import LizaAlertTagger
from tagger_preprocess import ImageError, decode_image, normalize, resize_for_model
from tagger_service import run_inference
from tagger_spec import DEFAULT_SPEC_PATH, AttributeSpec, load_spec

IMAGENET_URL_HINT = "torchvision's ResNet34_Weights.IMAGENET1K_V1"


# --- data ---------------------------------------------------------------------


def _load_pixels(args: tuple[str, tuple[int, int]]) -> np.ndarray | str:
    path, size = args
    from tagger_spec import Preprocessing

    try:
        decoded = decode_image(Path(path).read_bytes(), target_size=(size[1], size[0]))
        return resize_for_model(decoded.image, Preprocessing(size=size)).numpy()
    except (OSError, ImageError) as e:
        return f"{Path(path).name}: {e}"


def load_pixels(paths: list[Path], spec: AttributeSpec, jobs: int) -> tuple[torch.Tensor, list[int], list[str]]:
    """Decode photos with the serving preprocessing into a ``[N, 3, H, W]`` uint8 tensor."""
    size = spec.preprocessing.size
    out = torch.empty((len(paths), 3, *size), dtype=torch.uint8)
    kept, problems = [], []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        results = pool.map(_load_pixels, [(str(p), size) for p in paths], chunksize=16)
        for i, result in enumerate(tqdm(results, total=len(paths), desc="decode", unit="img", leave=False)):
            if isinstance(result, str):
                problems.append(result)
            else:
                out[len(kept)] = torch.from_numpy(result)
                kept.append(i)
    return out[: len(kept)], kept, problems


def load_labelled(images: Path, labels: Path, spec: AttributeSpec, jobs: int) -> tuple[torch.Tensor, list[dict[str, int]]]:
    """Read a CSV in the seed's format and decode its usable photos; report what was skipped in one line."""
    resolved = resolve_images(read_labels(labels, spec), images)
    if resolved.skipped or resolved.bad_rows:
        print(f"warning: {labels}: {resolved.summary()}", file=sys.stderr)
    if not resolved.usable:
        raise ValueError(f"no usable rows in {labels} (images in {images})")
    pixels, kept, problems = load_pixels([path for _, path in resolved.usable], spec, jobs)
    if problems:
        print(f"warning: skipped {len(problems)} photos that did not decode (e.g. {problems[0]})", file=sys.stderr)
    return pixels, [resolved.usable[i][0].labels for i in kept]


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


# --- model and loss -------------------------------------------------------------


def load_imagenet_trunk(model: LizaAlertTagger, weights: str) -> None:
    """Load ImageNet weights into the trunk: a local file, or 'download' via torchvision."""
    if weights == "download":
        from torchvision.models import ResNet34_Weights

        try:
            state = ResNet34_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
        except Exception as e:  # no network, proxy, TLS ...
            raise SystemExit(
                f"train.py: could not download {IMAGENET_URL_HINT} ({type(e).__name__}: {e}). "
                "Download resnet34-b627a593.pth elsewhere and pass it with --weights FILE, or train from scratch without --weights."
            ) from None
    else:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, Exception) as e:
            raise SystemExit(f"train.py: cannot load ImageNet weights from {weights}: {e}") from None
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = model.trunk.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.startswith("fc.")]
    if missing or unexpected:
        raise SystemExit(f"train.py: {weights} is not a torchvision ResNet34 state dict (missing {missing[:3]}, unexpected {unexpected[:3]})")


class TaggerLoss(torch.nn.Module):
    """Sum of per-head losses: CE for categorical heads, weighted BCE for binary ones."""

    def __init__(self, spec: AttributeSpec, targets: dict[str, torch.Tensor], max_pos_weight: float = 10.0) -> None:
        super().__init__()
        self.spec = spec
        self.pos_weight = {}
        for a in spec.attributes:
            if a.is_binary:
                pos = float(targets[a.key].sum())
                neg = float(len(targets[a.key]) - pos)
                self.pos_weight[a.key] = torch.tensor(min(max_pos_weight, math.sqrt(neg / max(pos, 1.0))))

    def forward(self, logits: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        total = logits.new_zeros(())
        for a in self.spec.attributes:
            part = logits[:, a.logits[0]:a.logits[1]].float()
            if a.is_binary:
                total = total + F.binary_cross_entropy_with_logits(part[:, 0], targets[a.key], pos_weight=self.pos_weight[a.key])
            else:
                total = total + F.cross_entropy(part, targets[a.key])
        return total


def use_bf16() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported") and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def predict_logits(model: torch.nn.Module, pixels: torch.Tensor, spec: AttributeSpec, batch_size: int = 64, bf16: bool = False) -> torch.Tensor:
    model.eval()
    outs = [run_inference(model, normalize(pixels[start:start + batch_size], spec.preprocessing), bf16=bf16)
            for start in range(0, len(pixels), batch_size)]
    return torch.cat(outs) if outs else torch.empty(0, spec.num_logits)


def codes_from_logits(logits: torch.Tensor, spec: AttributeSpec, thresholds: dict[str, float] | None = None) -> dict[str, list[int]]:
    codes = {}
    for a in spec.attributes:
        part = logits[:, a.logits[0]:a.logits[1]]
        if a.is_binary:
            t = (thresholds or {}).get(a.key, a.threshold)
            codes[a.key] = (torch.sigmoid(part[:, 0]) >= t).long().tolist()
        else:
            codes[a.key] = [a.codes[i] for i in part.argmax(1).tolist()]
    return codes


def tune_thresholds(logits: torch.Tensor, truth: dict[str, list[int]], spec: AttributeSpec) -> dict[str, float]:
    """Per binary attribute, the threshold in [0.05, 0.95] maximising F1 on the validation split."""
    from sklearn.metrics import f1_score

    thresholds = {}
    grid = np.round(np.arange(0.05, 0.951, 0.025), 3)
    for a in spec.attributes:
        if not a.is_binary:
            continue
        probs = torch.sigmoid(logits[:, a.logits[0]]).numpy()
        y = np.asarray(truth[a.key])
        if y.sum() == 0:
            thresholds[a.key] = a.threshold
            continue
        f1s = [f1_score(y, (probs >= t).astype(int), zero_division=0.0) for t in grid]
        best = max(f1s)
        # the middle of the best plateau generalises better than its edge
        plateau = [t for t, f in zip(grid, f1s) if f >= best - 1e-9]
        thresholds[a.key] = float(plateau[len(plateau) // 2])
    return thresholds


# --- training loop ----------------------------------------------------------------


def train(
    model: LizaAlertTagger,
    pixels: torch.Tensor,
    targets: dict[str, torch.Tensor],
    spec: AttributeSpec,
    *,
    epochs: int,
    final_epochs: int,
    low_res: int,
    final_images: int = 0,
    batch_size: int,
    lr: float,
    seed: int,
    bf16: bool,
) -> None:
    generator = torch.Generator().manual_seed(seed)
    loss_fn = TaggerLoss(spec, targets)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    final_epochs = min(final_epochs, epochs)
    final_images = min(final_images or len(pixels), len(pixels))
    steps = [math.ceil((final_images if epoch >= epochs - final_epochs else len(pixels)) / batch_size) for epoch in range(epochs)]
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=sum(steps) + 1, pct_start=0.25)
    full = spec.preprocessing.size
    model.train()
    for epoch, steps_per_epoch in enumerate(steps):
        size = full if epoch >= epochs - final_epochs else (low_res, low_res)
        order = torch.randperm(len(pixels), generator=generator)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs} @{size[0]}px", unit="batch", leave=True)
        running = None
        for step in bar:
            idx = order[step * batch_size:(step + 1) * batch_size]
            x = pixels[idx]
            flip = torch.rand(len(idx), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            x = normalize(x, spec.preprocessing)
            if size != tuple(x.shape[-2:]):
                x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            x = x.contiguous(memory_format=torch.channels_last)
            batch_targets = {k: v[idx] for k, v in targets.items()}
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(x)
            loss = loss_fn(logits, batch_targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running = loss.item() if running is None else 0.9 * running + 0.1 * loss.item()
            bar.set_postfix(loss=f"{running:.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(n * val_fraction))) if n > 1 else 0
    return order[n_val:], order[:n_val]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True, help="directory of the photos named in the CSV")
    parser.add_argument("--labels", type=Path, required=True, help="labels CSV in the seed's format")
    parser.add_argument("--out", type=Path, required=True, help="output directory (weights.pt, attributes.json, metrics.json)")
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC_PATH, help="attribute spec to train (default: %(default)s)")
    parser.add_argument("--weights", help="ImageNet ResNet34 weights: a local .pth file, or 'download' (needs internet); default: from scratch")
    parser.add_argument("--init", type=Path, help="start from a tagger state dict (e.g. an earlier weights.pt) instead")
    parser.add_argument("--epochs", type=int, default=10, help="total epochs (default: %(default)s)")
    parser.add_argument("--final-epochs", type=int, default=1, help="last epochs at the served resolution (default: %(default)s)")
    parser.add_argument("--final-images", type=int, default=0,
                        help="photos per served-resolution epoch, a random subset (default: all)")
    parser.add_argument("--low-res", type=int, default=128, help="resolution of the earlier epochs (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="(default: %(default)s)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default: %(default)s)")
    parser.add_argument("--val-fraction", type=float, default=0.15, help="held-out share for threshold tuning and metrics (default: %(default)s)")
    parser.add_argument("--val-images", type=Path, help="directory of a separate validation set (default: --images)")
    parser.add_argument("--val-labels", type=Path, help="labels CSV of a separate validation set (instead of --val-fraction)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    parser.add_argument("--jobs", type=int, default=0, help="decode processes (default: all cores)")
    parser.add_argument("--no-bf16", action="store_true", help="train in fp32 even if the CPU has bf16")
    args = parser.parse_args(argv)

    start = time.monotonic()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(args.threads or cores)
    torch.manual_seed(args.seed)
    spec = load_spec(args.spec)

    try:
        pixels, rows = load_labelled(args.images, args.labels, spec, args.jobs or cores)
        if args.val_labels:
            val_pixels, val_rows = load_labelled(args.val_images or args.images, args.val_labels, spec, args.jobs or cores)
    except (OSError, ValueError) as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 2
    print(f"data: {len(rows)} photos decoded in {time.monotonic() - start:.0f} s", flush=True)

    if args.val_labels:  # a separate validation set, e.g. with the real tag frequencies
        train_idx, val_idx = torch.arange(len(rows)), None
    else:
        train_idx, val_idx = split_indices(len(rows), args.val_fraction, args.seed)
        val_pixels, val_rows = pixels[val_idx], [rows[i] for i in val_idx.tolist()]
    targets = targets_from_codes(rows, spec)
    model = LizaAlertTagger(spec)
    if args.init:
        model.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=True))
    elif args.weights:
        load_imagenet_trunk(model, args.weights)
    model = model.to(memory_format=torch.channels_last)
    bf16 = use_bf16() and not args.no_bf16
    print(f"train: {len(train_idx)} photos, validate: {len(val_rows)}; bf16={bf16}, threads={torch.get_num_threads()}", flush=True)
    train(
        model, pixels[train_idx], {k: v[train_idx] for k, v in targets.items()}, spec,
        epochs=args.epochs, final_epochs=args.final_epochs, low_res=args.low_res, final_images=args.final_images,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, bf16=bf16,
    )

    model.eval()
    truth = {a.key: [r[a.key] for r in val_rows] for a in spec.attributes}
    logits = predict_logits(model, val_pixels, spec, bf16=bf16)
    default_score = score_codes(truth, codes_from_logits(logits, spec), spec)
    thresholds = tune_thresholds(logits, truth, spec)
    tuned_spec = spec.with_thresholds(thresholds)
    tuned_score = score_codes(truth, codes_from_logits(logits, tuned_spec), tuned_spec)

    args.out.mkdir(parents=True, exist_ok=True)
    model = model.to(memory_format=torch.contiguous_format)
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, args.out / "weights.pt")
    tuned_spec.save(args.out / "attributes.json")
    metrics = {
        "validation": tuned_score.to_dict(),
        "validation_at_0.5": default_score.to_dict(),
        "thresholds": thresholds,
        "train_photos": len(train_idx),
        "validation_photos": len(val_rows),
        "epochs": args.epochs,
        "low_res": args.low_res,
        "seconds": round(time.monotonic() - start, 1),
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(tuned_score.table())
    print(f"wrote {args.out}/weights.pt, attributes.json, metrics.json in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
