#!/usr/bin/env python3
"""Fine-tune (or train from scratch) the tagger on photos labelled in the seed's CSV format.

    lizaalert-train --images DIR --labels labels.csv --out DIR [--weights imagenet.pth]

- Reads the seed's CSV (both header spellings); rows whose file is missing or
  not an image are skipped and counted in one warning line.
- Decodes every photo once with the serving preprocessing
  (``lizaalert_tagger.vision.preprocess``: the same decode, EXIF, RGB, squash resize
  with the spec's interpolation) and caches the 256x256 uint8 pixels, so
  training and serving cannot drift apart (``tests/unit/training/test_train.py`` checks it).
- Loss: cross-entropy for categorical heads, BCE-with-logits with positive
  weighting for the rare binary tags; AdamW, channels_last; bf16 autocast only
  on CUDA or CPUs with native bf16 (emulated bf16 is many times slower than fp32).
- Phases, each with its own one-cycle learning rate (warm-up, cosine to ~0):
  the earlier epochs at a lower cost (``--low-res-mode``: ``resize`` squashes
  the photo to ``--low-res`` px; ``crop`` takes served-scale windows and
  labels them from the objects' boxes; ``full`` is the served size), then the
  last ``--final-epochs`` at the served 256x256 (``--final-images`` photos
  each, peak ``--final-lr``). ``docs/training.md`` says which schedule won and why.
- ``--ema-passes``: an exponential moving average of the weights, shipped if it
  validates better; ``--snapshot-every``: weights for the learning curve;
  ``--checkpoint-minutes`` + ``--resume``: an interrupted run continues exactly
  where it stopped; ``--device auto`` trains on CUDA when present.
- Thresholds: each binary tag's threshold is tuned for F1 on the validation
  photos: a separate set (``--val-images``/``--val-labels``, e.g. scenes with
  the real tag frequencies, as the default model's build does) or else a
  held-out ``--val-fraction`` of the training photos. Writes into ``--out``:
  ``weights.pt`` (state dict), ``attributes.json`` (the spec with those
  thresholds) and ``metrics.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from lizaalert_tagger.common.machine import available_cores, cpu_model
from lizaalert_tagger.common.labels_csv import read_labels, resolve_images
from lizaalert_tagger.common.scoring import score_codes
from lizaalert_tagger.vision.answers import codes_from_logits as decode_codes
from lizaalert_tagger.vision.model import LizaAlertTagger, load_tagger
from lizaalert_tagger.vision.preprocess import ImageError, decode_image, normalize, resize_for_model
from lizaalert_tagger.serving.service import run_inference
from lizaalert_tagger.common.spec import DEFAULT_SPEC_PATH, AttributeSpec, Preprocessing, load_spec

IMAGENET_URL_HINT = "torchvision's ResNet34_Weights.IMAGENET1K_V1"
STOPPED = 3  # exit status of a run stopped by a signal after writing its checkpoint (continue with --resume)


def parse_head_weights(items: list[str], spec: AttributeSpec) -> dict[str, float]:
    """``["dog_handler=2", ...]`` -> ``{"dog_handler": 2.0}``; every key must be in the spec."""
    weights = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not sep or key not in spec.keys or not weight > 0:
            raise ValueError(f"--head-weight: expected KEY=W with KEY one of {list(spec.keys)} and W > 0, got {item!r}")
        weights[key] = weight
    return weights


# --- data ---------------------------------------------------------------------


def _load_pixels(args: tuple[str, Preprocessing]) -> np.ndarray | str:
    """One photo through the serving decode and resize (the spec's size and interpolation)."""
    path, pre = args
    try:
        decoded = decode_image(Path(path).read_bytes(), target_size=(pre.size[1], pre.size[0]))
        return resize_for_model(decoded.image, pre).numpy()
    except (OSError, ImageError) as e:
        return f"{Path(path).name}: {e}"


def load_pixels(paths: list[Path], spec: AttributeSpec, jobs: int) -> tuple[torch.Tensor, list[int], list[str]]:
    """Decode photos with the serving preprocessing into a ``[N, 3, H, W]`` uint8 tensor."""
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
    """Per photo, the tagged objects' boxes from make_scenes.py's boxes.json."""
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
    """Sum of per-head losses: CE for categorical heads, weighted BCE for binary ones.

    ``masks`` (optional, per binary key) leaves examples out of that head's loss.
    """

    def __init__(self, spec: AttributeSpec, targets: dict[str, torch.Tensor], max_pos_weight: float = 10.0,
                 head_weights: dict[str, float] | None = None) -> None:
        super().__init__()
        self.spec = spec
        unknown = sorted(set(head_weights or {}) - set(spec.keys))
        if unknown:
            raise ValueError(f"head weights for unknown attributes {unknown}; the spec has {list(spec.keys)}")
        self.head_weights = {a.key: float((head_weights or {}).get(a.key, 1.0)) for a in spec.attributes}
        for a in spec.attributes:
            if a.is_binary:
                pos = float(targets[a.key].sum())
                neg = float(len(targets[a.key]) - pos)
                self.register_buffer(f"pos_weight_{a.key}", torch.tensor(min(max_pos_weight, math.sqrt(neg / max(pos, 1.0)))))

    def forward(self, logits: torch.Tensor, targets: dict[str, torch.Tensor],
                masks: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        total = logits.new_zeros((), dtype=torch.float32)
        for a in self.spec.attributes:
            part = logits[:, a.logits[0]:a.logits[1]].float()
            if a.is_binary:
                mask = (masks or {}).get(a.key)
                losses = F.binary_cross_entropy_with_logits(part[:, 0], targets[a.key].float(), reduction="none",
                                                            pos_weight=getattr(self, f"pos_weight_{a.key}"))
                head = losses.mean() if mask is None else (losses * mask).sum() / mask.sum().clamp(min=1.0)
            else:
                head = F.cross_entropy(part, targets[a.key])
            total = total + self.head_weights[a.key] * head
        return total


def use_bf16() -> bool:
    """Whether oneDNN reports native bf16 on this CPU (AMX or AVX-512 BF16); emulated bf16 is many times slower."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported") and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def predict_logits(model: torch.nn.Module, pixels: torch.Tensor, spec: AttributeSpec, batch_size: int = 64,
                   bf16: bool = False, size: int | None = None) -> torch.Tensor:
    """Logits of cached pixels through the serving forward pass; ``size``: first squashed to that side
    exactly as a ``resize`` training phase does (to see what a low-resolution phase has learned)."""
    model.eval()
    device = next(model.parameters()).device

    def batch(start: int) -> torch.Tensor:
        x = normalize(pixels[start:start + batch_size], spec.preprocessing).to(device)
        if size and size != x.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return x

    outs = [run_inference(model, batch(start), bf16=bf16).cpu() for start in range(0, len(pixels), batch_size)]
    return torch.cat(outs) if outs else torch.empty(0, spec.num_logits)


def codes_from_logits(logits: torch.Tensor, spec: AttributeSpec, thresholds: dict[str, float] | None = None) -> dict[str, list[int]]:
    """The served decision (``decode.codes_from_logits``), optionally with other binary thresholds."""
    return decode_codes(logits, spec.with_thresholds(thresholds) if thresholds else spec)


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


@dataclass(frozen=True)
class Phase:
    """A stretch of training with its own input size and learning-rate cycle.

    ``mode``: ``"full"`` (the served size), ``"resize"`` (the whole photo squashed to
    ``size``: objects look smaller than served) or ``"crop"`` (random ``crop`` px windows of
    the served-size photo: objects keep their served scale, labels follow the boxes).
    """

    name: str
    mode: str
    steps: int
    lr: float
    size: int = 0  # resize: the side in px
    crop: tuple[int, int] = (0, 0)  # crop: smallest and largest side in px


def phase_lr(phase: Phase, step: int, warmup: float = 0.1) -> float:
    """One cycle per phase: linear warm-up from lr/25, then cosine down to lr/1e4."""
    warm = max(1, int(phase.steps * warmup))
    if step < warm:
        return phase.lr * (0.04 + 0.96 * step / warm)
    t = (step - warm) / max(1, phase.steps - warm)
    return phase.lr * (1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


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


class Trainer:
    """The training loop: phases, optional EMA, checkpoints to resume from, snapshots for the learning curve."""

    def __init__(
        self,
        model: LizaAlertTagger,
        pixels: torch.Tensor,
        targets: dict[str, torch.Tensor],
        spec: AttributeSpec,
        phases: list[Phase],
        *,
        batch_size: int,
        seed: int,
        device: torch.device,
        bf16: bool,
        boxes: list[list[list]] | None = None,
        ema_passes: int = 0,
        weight_decay: float = 1e-4,
        head_weights: dict[str, float] | None = None,
    ) -> None:
        if any(p.mode == "crop" for p in phases) and boxes is None:
            raise ValueError("crop phases need the objects' boxes (boxes.json from make_scenes.py); real photos: use --low-res-mode resize")
        # on a GPU the whole uint8 cache (20,000 photos: 3.9 GB) lives on the device: batches are gathered there
        self.model, self.pixels, self.targets, self.spec = model, (pixels.to(device) if device.type == "cuda" else pixels), targets, spec
        self.phases, self.batch_size, self.device, self.bf16, self.boxes = phases, batch_size, device, bf16, boxes
        self.loss_fn = TaggerLoss(spec, targets, head_weights=head_weights).to(device)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=phases[0].lr if phases else 1e-3, weight_decay=weight_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.ema = None
        if ema_passes:
            decay = max(0.0, 1.0 - batch_size / ema_passes)
            self.ema = torch.optim.swa_utils.AveragedModel(
                model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True)
        self.step = 0  # global step over all phases
        self.order = torch.empty(0, dtype=torch.long)
        self.cursor = 0
        self.running_loss: float | None = None
        self.stop_requested = False  # set by a signal handler: the loop ends after the current step
        self.mean, self.std = self._norm_constants()

    @property
    def total_steps(self) -> int:
        return sum(p.steps for p in self.phases)

    @property
    def image_passes(self) -> int:
        return self.step * self.batch_size

    def _norm_constants(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        pre = self.spec.preprocessing
        if pre.mean is None:
            return None, None
        return (torch.tensor(pre.mean, device=self.device).view(1, 3, 1, 1),
                torch.tensor(pre.std, device=self.device).view(1, 3, 1, 1))

    def where(self) -> tuple[Phase, int]:
        """The phase of the current step and the step within it."""
        step = self.step
        for phase in self.phases:
            if step < phase.steps:
                return phase, step
            step -= phase.steps
        return self.phases[-1], self.phases[-1].steps

    def _next_indexes(self) -> torch.Tensor:
        out = []
        need = self.batch_size
        while need:
            if self.cursor >= len(self.order):
                self.order, self.cursor = torch.randperm(len(self.pixels), generator=self.generator), 0
            take = self.order[self.cursor:self.cursor + need]
            self.cursor += len(take)
            need -= len(take)
            out.append(take)
        return torch.cat(out)

    def _batch(self, phase: Phase) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        idx = self._next_indexes()
        x = self.pixels[idx.to(self.pixels.device)]
        targets = {k: v[idx] for k, v in self.targets.items()}
        masks: dict[str, torch.Tensor] = {}
        flip = torch.rand(len(idx), generator=self.generator) < 0.5
        x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
        if phase.mode == "crop":
            height, width = x.shape[-2:]
            side = int(torch.randint(phase.crop[0], phase.crop[1] + 1, (1,), generator=self.generator))
            side = min(side, height, width)
            oy = torch.randint(0, height - side + 1, (len(idx),), generator=self.generator)
            ox = torch.randint(0, width - side + 1, (len(idx),), generator=self.generator)
            x = torch.stack([x[i, :, oy[i]:oy[i] + side, ox[i]:ox[i] + side] for i in range(len(idx))])
            # the window in the unflipped photo's fractions
            x0 = torch.where(flip, (width - ox - side).float(), ox.float()) / width
            window = torch.stack([x0, oy.float() / height, x0 + side / width, (oy + side).float() / height], 1)
            targets, masks = crop_targets(targets, [self.boxes[i] for i in idx.tolist()], window, self.spec)
        x = x.to(self.device, non_blocking=True).float().div_(255.0)
        if self.mean is not None:
            x = x.sub_(self.mean).div_(self.std)
        if phase.mode == "resize" and phase.size != x.shape[-1]:
            x = F.interpolate(x, size=(phase.size, phase.size), mode="bilinear", antialias=True, align_corners=False)
        x = x.contiguous(memory_format=torch.channels_last)
        to = lambda d: {k: v.to(self.device, non_blocking=True) for k, v in d.items()}  # noqa: E731
        return x, to(targets), to(masks)

    def run(self, *, on_step=None, max_seconds: float = 0.0, progress: bool = True) -> bool:
        """Train until the last phase ends (True) or ``max_seconds`` pass (False)."""
        self.model.train()
        start = time.monotonic()
        bar = tqdm(total=self.total_steps, initial=self.step, unit="batch", mininterval=5.0, leave=True, disable=not progress)
        while self.step < self.total_steps:
            phase, local = self.where()
            lr = phase_lr(phase, local)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            x, targets, masks = self._batch(phase)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits = self.model(x)
            loss = self.loss_fn(logits, targets, masks)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            self.step += 1
            value = loss.item()
            self.running_loss = value if self.running_loss is None else 0.98 * self.running_loss + 0.02 * value
            bar.update()
            bar.set_postfix_str(f"{phase.name} loss={self.running_loss:.3f} lr={lr:.1e}", refresh=False)
            if on_step is not None:
                on_step(self)
            if self.stop_requested or (max_seconds and time.monotonic() - start > max_seconds):
                bar.close()
                return False
        bar.close()
        return True

    def final_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    # --- checkpoints: everything needed to continue exactly where the run stopped
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),  # dropout
            "cuda_rng": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
            "order": self.order,
            "cursor": self.cursor,
            "phases": [dataclasses.asdict(p) for p in self.phases],
        }

    def load_state_dict(self, state: dict) -> None:
        phases = [dataclasses.asdict(p) for p in self.phases]
        saved = [{**p, "crop": tuple(p["crop"])} for p in state["phases"]]
        if saved != phases:
            raise ValueError(f"the checkpoint was made with other phases: {saved}; this run has {phases}")
        self.step, self.cursor = int(state["step"]), int(state["cursor"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu())
        self.order = state["order"]


def save_checkpoint(trainer: Trainer, path: Path, **extra) -> None:
    """Atomically: a run killed while writing keeps the previous checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save({**trainer.state_dict(), **extra}, tmp)
    os.replace(tmp, path)


def plan_phases(args: argparse.Namespace, train_count: int, full_size: int) -> list[Phase]:
    """The CLI's schedule: ``--epochs`` in all, the last ``--final-epochs`` at the served size."""
    bs = args.batch_size
    final_epochs = min(args.final_epochs, args.epochs)
    low_epochs = args.epochs - final_epochs
    final_images = min(args.final_images or train_count, train_count)
    phases = []
    low_steps = math.ceil(low_epochs * train_count / bs)
    if low_steps:
        if args.low_res_mode == "crop":
            phases.append(Phase("crop", "crop", low_steps, args.lr, crop=(args.crop_min, args.crop_max)))
        elif args.low_res_mode == "resize":
            phases.append(Phase(f"{args.low_res}px", "resize", low_steps, args.lr, size=args.low_res))
        else:
            phases.append(Phase(f"{full_size}px", "full", low_steps, args.lr))
    final_steps = math.ceil(final_epochs * final_images / bs)
    if final_steps:
        phases.append(Phase(f"{full_size}px-final", "full", final_steps, args.final_lr or args.lr))
    return phases


def seconds_per_step(model: LizaAlertTagger, pixels: torch.Tensor, targets: dict[str, torch.Tensor], spec: AttributeSpec,
                     phase: Phase, *, batch_size: int, device: torch.device, bf16: bool, boxes=None, ema_passes: int = 0,
                     warmup: int = 0, timed: int = 0) -> float:
    """Measured seconds per training step of ``phase`` on this machine, on a throwaway copy of the model
    with the run's EMA (``warmup`` steps untimed, then ``timed`` steps; default: 10 + 30 on a GPU, 2 + 5 on a CPU)."""
    import copy

    warmup = warmup or (10 if device.type == "cuda" else 2)
    timed = timed or (30 if device.type == "cuda" else 5)

    probe = Phase(phase.name, phase.mode, warmup + timed, phase.lr, phase.size, phase.crop)
    trainer = Trainer(copy.deepcopy(model), pixels, targets, spec, [probe], batch_size=batch_size, seed=12345,
                      device=device, bf16=bf16, boxes=boxes, ema_passes=ema_passes)
    marks = {}

    def mark(t: Trainer) -> None:
        if t.step in (warmup, warmup + timed):
            if device.type == "cuda":
                torch.cuda.synchronize()
            marks[t.step] = time.monotonic()

    trainer.run(on_step=mark, progress=False)
    return (marks[warmup + timed] - marks[warmup]) / timed


def choose_bf16(requested: str, device: torch.device, measure) -> tuple[bool, str]:
    """bf16 autocast or fp32 for this run, and why (logged: the host CPU changes from day to day).

    ``requested``: ``bf16``, ``fp32`` or ``auto``; for ``auto`` on a CPU with native bf16, ``measure(bf16)``
    times a few training steps of each (seconds per image-pass) and the faster wins (bf16 is several times faster with AMX,
    less so with AVX-512 BF16 alone, and slower where it is emulated)."""
    if requested != "auto":
        return requested == "bf16", f"--precision {requested}"
    if device.type == "cuda":
        return True, "CUDA: bf16 autocast"
    if not use_bf16():
        return False, "this CPU has no native bf16 (oneDNN): fp32"
    fp32, bf16 = measure(False), measure(True)
    choice = bf16 < fp32
    return choice, (f"measured {1 / fp32:.1f} image-passes/s in fp32 and {1 / bf16:.1f} in bf16: "
                    f"{'bf16' if choice else 'fp32'}")


def fit_epochs(args: argparse.Namespace, seconds: float, train_count: int, full_size: int, step_seconds) -> int:
    """The most ``--epochs`` whose phases take at most ``seconds`` (``step_seconds(phase)``: measured per phase)."""
    def cost(epochs: int) -> float:
        trial = argparse.Namespace(**{**vars(args), "epochs": epochs})
        return sum(p.steps * step_seconds(p) for p in plan_phases(trial, train_count, full_size))

    epochs = max(1, args.final_epochs)
    while cost(epochs + 1) <= seconds:
        epochs += 1
    return epochs


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(n * val_fraction))) if n > 1 else 0
    return order[n_val:], order[:n_val]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible to torch")
    return torch.device(name)


def evaluate(model: torch.nn.Module, pixels: torch.Tensor, rows: list[dict[str, int]], spec: AttributeSpec, bf16: bool) -> dict:
    """Validation logits -> thresholds tuned for F1 on them -> scores at 0.5 and tuned."""
    truth = {a.key: [r[a.key] for r in rows] for a in spec.attributes}
    logits = predict_logits(model, pixels, spec, bf16=bf16)
    thresholds = tune_thresholds(logits, truth, spec)
    tuned_spec = spec.with_thresholds(thresholds)
    return {
        "default": score_codes(truth, codes_from_logits(logits, spec), spec),
        "tuned": score_codes(truth, codes_from_logits(logits, tuned_spec), tuned_spec),
        "thresholds": thresholds,
        "spec": tuned_spec,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True, help="directory of the photos named in the CSV")
    parser.add_argument("--labels", type=Path, required=True, help="labels CSV in the seed's format")
    parser.add_argument("--out", type=Path, required=True, help="output directory (weights.pt, attributes.json, metrics.json)")
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC_PATH, help="attribute spec to train (default: %(default)s)")
    parser.add_argument("--weights", help="ImageNet ResNet34 weights: a local .pth file, or 'download' (needs internet); default: from scratch")
    parser.add_argument("--init", type=Path,
                        help="start from a tagger's weights instead: .safetensors (e.g. models/default/weights.safetensors) "
                             "or a state dict such as an earlier weights.pt")
    parser.add_argument("--head-weight", action="append", default=[], metavar="KEY=W",
                        help="multiply one attribute's loss by W (repeatable; e.g. dog_handler=2; default: all 1)")
    parser.add_argument("--epochs", type=int, default=10, help="total epochs (default: %(default)s)")
    parser.add_argument("--final-epochs", type=int, default=1,
                        help="last epochs at the served resolution, with their own learning-rate cycle (default: %(default)s)")
    parser.add_argument("--final-images", type=int, default=0,
                        help="photos per served-resolution epoch, a random subset (default: all)")
    parser.add_argument("--final-lr", type=float, default=0.0, help="peak learning rate of the served-resolution epochs (default: --lr)")
    parser.add_argument("--low-res-mode", choices=("crop", "resize", "full"), default="resize",
                        help="the earlier epochs: 'crop' = random --crop-min..--crop-max px windows of the served-size photo "
                             "(served object scale; needs boxes.json), 'resize' = the photo squashed to --low-res px, "
                             "'full' = the served size (default: %(default)s)")
    parser.add_argument("--low-res", type=int, default=128, help="side of the 'resize' epochs in px (default: %(default)s)")
    parser.add_argument("--crop-min", type=int, default=128, help="smallest crop side in px (default: %(default)s)")
    parser.add_argument("--crop-max", type=int, default=192, help="largest crop side in px (default: %(default)s)")
    parser.add_argument("--boxes", type=Path, help="objects' boxes for 'crop' (default: boxes.json beside --labels)")
    parser.add_argument("--batch-size", type=int, default=32, help="(default: %(default)s)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default: %(default)s)")
    parser.add_argument("--ema-passes", type=int, default=0,
                        help="keep an exponential moving average of the weights over about this many image-passes, "
                             "and ship it if it validates better (default: off)")
    parser.add_argument("--val-fraction", type=float, default=0.15, help="held-out share for threshold tuning and metrics (default: %(default)s)")
    parser.add_argument("--val-images", type=Path, help="directory of a separate validation set (default: --images)")
    parser.add_argument("--val-labels", type=Path, help="labels CSV of a separate validation set (instead of --val-fraction)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="(default: %(default)s: CUDA if present)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    parser.add_argument("--jobs", type=int, default=0, help="decode processes (default: all cores)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="'auto': bf16 autocast on CUDA; on a CPU with native bf16, a few steps of each are timed "
                             "and the faster is used (logged); fp32 elsewhere (default: %(default)s)")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0,
                        help="write OUT/checkpoint.pt this often, to continue with --resume (default: %(default)s; 0: never); "
                             "SIGTERM or Ctrl-C also writes it, then stops")
    parser.add_argument("--log-seconds", type=float, default=60.0,
                        help="print passes done and remaining, speed and ETA this often (default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (same data and schedule)")
    parser.add_argument("--fit-seconds", type=float, default=0.0,
                        help="choose --epochs so that training takes about this many seconds on this machine "
                             "(each phase's step time measured first on a throwaway copy); the chosen number is "
                             "printed and written to metrics.json (default: use --epochs)")
    parser.add_argument("--snapshot-every", type=int, default=0,
                        help="every this many image-passes, save the weights to OUT/snapshots/ for the learning curve (default: never)")
    args = parser.parse_args(argv)

    start = time.monotonic()
    cores = available_cores()
    torch.set_num_threads(args.threads or cores)
    torch.manual_seed(args.seed)
    try:
        spec = load_spec(args.spec)
        device = pick_device(args.device)
        pixels, rows, names = load_labelled(args.images, args.labels, spec, args.jobs or cores)
        if args.val_labels:
            val_pixels, val_rows, _ = load_labelled(args.val_images or args.images, args.val_labels, spec, args.jobs or cores)
        boxes = None
        if args.low_res_mode == "crop":
            boxes = load_boxes(args.boxes or args.labels.parent / "boxes.json", names)
    except (OSError, ValueError) as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 2
    print(f"data: {len(rows)} photos decoded in {time.monotonic() - start:.0f} s", flush=True)

    if args.val_labels:  # a separate validation set, e.g. with the real tag frequencies
        train_idx = torch.arange(len(rows))
    else:
        train_idx, val_idx = split_indices(len(rows), args.val_fraction, args.seed)
        val_pixels, val_rows = pixels[val_idx], [rows[i] for i in val_idx.tolist()]
    targets = targets_from_codes(rows, spec)
    try:
        head_weights = parse_head_weights(args.head_weight, spec)
        model = load_tagger(args.init, spec).train() if args.init else LizaAlertTagger(spec)
    except (OSError, ValueError) as e:
        print(f"lizaalert-train: {e}", file=sys.stderr)
        return 2
    if not args.init and args.weights:
        load_imagenet_trunk(model, args.weights)
    model = model.to(device, memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    train_pixels, train_targets = pixels[train_idx], {k: v[train_idx] for k, v in targets.items()}
    train_boxes = [boxes[i] for i in train_idx.tolist()] if boxes is not None else None
    probe_phase = plan_phases(args, len(train_idx), spec.preprocessing.size[0])[0]
    bf16, why = choose_bf16(args.precision, device, lambda b: seconds_per_step(
        model, train_pixels, train_targets, spec, probe_phase, batch_size=args.batch_size, device=device, bf16=b,
        boxes=train_boxes, ema_passes=args.ema_passes) / args.batch_size)
    print(f"precision: {'bf16' if bf16 else 'fp32'} ({why})", flush=True)
    if args.fit_seconds:
        if args.resume:
            print("train.py: --fit-seconds and --resume: give the --epochs that the interrupted run chose", file=sys.stderr)
            return 2
        measured: dict[str, float] = {}

        def step_seconds(phase: Phase) -> float:
            key = f"{phase.mode}/{phase.size}/{phase.crop}"
            if key not in measured:
                measured[key] = seconds_per_step(model, train_pixels, train_targets, spec, phase, batch_size=args.batch_size,
                                                 device=device, bf16=bf16, boxes=train_boxes, ema_passes=args.ema_passes)
                print(f"fit: {phase.name} takes {measured[key] * 1000:.1f} ms per step of {args.batch_size} photos", flush=True)
            return measured[key]

        args.epochs = fit_epochs(args, args.fit_seconds, len(train_idx), spec.preprocessing.size[0], step_seconds)
        print(f"fit: --epochs {args.epochs} fits in {args.fit_seconds:.0f} s", flush=True)
    phases = plan_phases(args, len(train_idx), spec.preprocessing.size[0])
    try:
        trainer = Trainer(model, train_pixels, train_targets, spec, phases,
                          batch_size=args.batch_size, seed=args.seed, device=device, bf16=bf16,
                          boxes=train_boxes, ema_passes=args.ema_passes, head_weights=head_weights)
    except ValueError as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.out / "checkpoint.pt"
    elapsed_before = 0.0
    if args.resume:
        if not checkpoint.exists():
            print(f"train.py: --resume: {checkpoint} does not exist", file=sys.stderr)
            return 2
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        try:
            trainer.load_state_dict(state)
        except (ValueError, RuntimeError, KeyError) as e:
            print(f"train.py: --resume: {checkpoint} does not fit this run: {e}", file=sys.stderr)
            return 2
        elapsed_before = float(state.get("train_seconds", 0.0))
        print(f"resumed from {checkpoint} at step {trainer.step} of {trainer.total_steps} ({trainer.image_passes} image-passes)", flush=True)
    plan = ", ".join(f"{p.name}: {p.steps} steps at lr {p.lr:g}" for p in phases)
    print(f"train: {len(train_idx)} photos, validate: {len(val_rows)}; device={device}, bf16={bf16}, "
          f"threads={torch.get_num_threads()}; {plan}", flush=True)

    train_start = time.monotonic()
    last_checkpoint = last_report = time.monotonic()
    report_passes = trainer.image_passes
    log = (args.out / "train_log.jsonl").open("a", encoding="utf-8")
    log.write(json.dumps({"start": time.strftime("%Y-%m-%dT%H:%M:%S"), "image_passes": trainer.image_passes,
                          "total_passes": trainer.total_steps * trainer.batch_size, "precision": "bf16" if bf16 else "fp32",
                          "precision_why": why, "device": str(device), "cpu": cpu_model() if device.type == "cpu" else None}) + "\n")

    def on_signal(signum, frame) -> None:  # noqa: ARG001
        trainer.stop_requested = True
        print(f"\nlizaalert-train: signal {signum}: stopping after this step and writing {checkpoint}", file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def on_step(t: Trainer) -> None:
        nonlocal last_checkpoint, last_report, report_passes
        seconds = elapsed_before + time.monotonic() - train_start
        now = time.monotonic()
        if args.log_seconds and now - last_report >= args.log_seconds:
            total = t.total_steps * t.batch_size
            rate = (t.image_passes - report_passes) / (now - last_report)
            remain = total - t.image_passes
            print(f"passes {t.image_passes:,} of {total:,} done, {remain:,} remain; {rate:.1f} passes/s, "
                  f"ETA {remain / max(rate, 1e-9) / 60:.0f} min; loss {t.running_loss:.4f}", flush=True)
            last_report, report_passes = now, t.image_passes
        if args.snapshot_every and t.image_passes // args.snapshot_every > (t.image_passes - t.batch_size) // args.snapshot_every:
            snap = args.out / "snapshots" / f"passes_{t.image_passes:08d}.pt"
            snap.parent.mkdir(exist_ok=True)
            torch.save({k: v.detach().cpu().contiguous() for k, v in t.final_model().state_dict().items()}, snap)
            log.write(json.dumps({"snapshot": snap.name, "image_passes": t.image_passes, "seconds": round(seconds, 1)}) + "\n")
        if t.step % 50 == 0:
            log.write(json.dumps({"step": t.step, "image_passes": t.image_passes, "seconds": round(seconds, 1),
                                  "loss": round(t.running_loss, 4)}) + "\n")
            log.flush()
        if args.checkpoint_minutes and time.monotonic() - last_checkpoint > 60 * args.checkpoint_minutes:
            save_checkpoint(t, checkpoint, train_seconds=seconds)
            last_checkpoint = time.monotonic()

    try:
        finished = trainer.run(on_step=on_step, progress=sys.stderr.isatty())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    train_seconds = elapsed_before + time.monotonic() - train_start
    if not finished:
        save_checkpoint(trainer, checkpoint, train_seconds=train_seconds)
        log.write(json.dumps({"stopped": time.strftime("%Y-%m-%dT%H:%M:%S"), "image_passes": trainer.image_passes,
                              "seconds": round(train_seconds, 1)}) + "\n")
        log.close()
        print(f"lizaalert-train: stopped at {trainer.image_passes:,} of {trainer.total_steps * trainer.batch_size:,} "
              f"image-passes; {checkpoint} written: continue with the same command and --resume", file=sys.stderr)
        return STOPPED
    log.close()

    candidates = {"weights": trainer.model}
    if trainer.ema is not None:
        candidates["ema"] = trainer.ema.module
    results = {name: evaluate(m, val_pixels, val_rows, spec, bf16) for name, m in candidates.items()}
    chosen = max(results, key=lambda name: results[name]["tuned"].overall)
    result, model = results[chosen], candidates[chosen]

    model = model.to("cpu", memory_format=torch.contiguous_format)
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, args.out / "weights.pt")
    result["spec"].save(args.out / "attributes.json")
    metrics = {
        "validation": result["tuned"].to_dict(),
        "validation_at_0.5": result["default"].to_dict(),
        "thresholds": result["thresholds"],
        "shipped": chosen,
        "candidates": {name: r["tuned"].overall for name, r in results.items()},
        "train_photos": len(train_idx),
        "validation_photos": len(val_rows),
        "epochs": args.epochs,
        "phases": [dataclasses.asdict(p) for p in phases],
        "batch_size": args.batch_size,
        "image_passes": trainer.image_passes,
        "device": str(device),
        "cpu": cpu_model() if device.type == "cpu" else None,
        "precision": "bf16" if bf16 else "fp32",
        "precision_why": why,
        "head_weights": {k: w for k, w in head_weights.items() if w != 1.0},
        "init": str(args.init) if args.init else None,
        "train_seconds": round(train_seconds, 1),
        "seconds": round(time.monotonic() - start, 1),
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(result["tuned"].table())
    print("candidates: " + ", ".join(f"{n} {r['tuned'].overall:.4f}" for n, r in results.items()) + f"; shipped {chosen}")
    print(f"wrote {args.out}/weights.pt, attributes.json, metrics.json in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
