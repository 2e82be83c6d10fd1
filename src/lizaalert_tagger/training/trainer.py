"""The training loop: the loss, :class:`Trainer` (phases, EMA, checkpoints that resume exactly),
the measured choice of bf16 or fp32, and the device.

Loss: cross-entropy for categorical heads, BCE-with-logits with positive weighting for the rare
binary tags, each head optionally weighted; AdamW, channels_last; bf16 autocast only on CUDA or
CPUs with native bf16 (emulated bf16 is many times slower than fp32).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lizaalert_tagger.common.spec import AttributeSpec
from lizaalert_tagger.training.config import check_head_weights
from lizaalert_tagger.training.data import crop_targets
from lizaalert_tagger.training.schedule import Phase, phase_lr
from lizaalert_tagger.vision.model import LizaAlertTagger
from lizaalert_tagger.vision.preprocess import normalize


class TaggerLoss(torch.nn.Module):
    """Sum of per-head losses: CE for categorical heads, weighted BCE for binary ones.

    ``masks`` (optional, per binary key) leaves examples out of that head's loss.
    """

    def __init__(self, spec: AttributeSpec, targets: dict[str, torch.Tensor], max_pos_weight: float = 10.0,
                 head_weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.spec = spec
        check_head_weights(head_weights or {}, spec)
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


def pick_device(name: str) -> torch.device:
    """``auto``: CUDA when torch sees it, else the CPU; ``cuda`` without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible to torch")
    return torch.device(name)



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
        head_weights: Mapping[str, float] | None = None,
    ) -> None:
        if any(p.mode == "crop" for p in phases) and boxes is None:
            raise ValueError("crop phases need the objects' boxes (boxes.json from lizaalert-scenes); real photos: use --low-res-mode resize")
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

    @property
    def total_steps(self) -> int:
        return sum(p.steps for p in self.phases)

    @property
    def image_passes(self) -> int:
        return self.step * self.batch_size

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
        x = normalize(x.to(self.device, non_blocking=True), self.spec.preprocessing)
        if phase.mode == "resize" and phase.size != x.shape[-1]:
            x = F.interpolate(x, size=(phase.size, phase.size), mode="bilinear", antialias=True, align_corners=False)
        x = x.contiguous(memory_format=torch.channels_last)
        to = lambda d: {k: v.to(self.device, non_blocking=True) for k, v in d.items()}  # noqa: E731
        return x, to(targets), to(masks)

    def run(self, *, on_step: Callable[[Trainer], None] | None = None, max_seconds: float = 0.0, progress: bool = True) -> bool:
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
        """What would be shipped now: the EMA's weights if the run keeps one."""
        return self.ema.module if self.ema is not None else self.model

    # --- checkpoints: everything needed to continue exactly where the run stopped
    def state_dict(self) -> dict:
        """Everything a resumed run needs (``checkpoint.pt``; runs in progress rely on these keys)."""
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


def seconds_per_step(model: LizaAlertTagger, pixels: torch.Tensor, targets: dict[str, torch.Tensor], spec: AttributeSpec,
                     phase: Phase, *, batch_size: int, device: torch.device, bf16: bool, boxes: list[list[list]] | None = None,
                     ema_passes: int = 0, warmup: int = 0, timed: int = 0) -> float:
    """Measured seconds per training step of ``phase`` on this machine, on a throwaway copy of the model
    with the run's EMA (``warmup`` steps untimed, then ``timed`` steps; default: 10 + 30 on a GPU, 2 + 5 on a CPU)."""
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


def choose_bf16(requested: str, device: torch.device, measure: Callable[[bool], float]) -> tuple[bool, str]:
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


