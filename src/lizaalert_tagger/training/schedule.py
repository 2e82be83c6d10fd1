"""The training schedule: phases, each with its input size and one-cycle learning rate.

The earlier epochs may run at a lower cost (``low_res_mode``: ``resize`` squashes the photo to
``low_res`` px; ``crop`` takes served-scale windows labelled from the objects' boxes; ``full``
is the served size), then the last ``final_epochs`` at the served size with a cycle of their own.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from lizaalert_tagger.training.config import TrainConfig


@dataclass(frozen=True)
class Phase:
    """A stretch of training with its own input size and learning-rate cycle.

    ``mode``: ``"full"`` (the served size), ``"resize"`` (the whole photo squashed to
    ``size``: objects look smaller than served) or ``"crop"`` (random ``crop`` px windows of
    the served-size photo: objects keep their served scale, labels follow the boxes).
    A checkpoint records its phases (``dataclasses.asdict``); a resumed run must have the same.
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


def plan_phases(config: TrainConfig, train_count: int, full_size: int) -> list[Phase]:
    """The config's schedule: ``epochs`` in all, the last ``final_epochs`` at the served size."""
    bs = config.batch_size
    final_epochs = min(config.final_epochs, config.epochs)
    low_epochs = config.epochs - final_epochs
    final_images = min(config.final_images or train_count, train_count)
    phases = []
    low_steps = math.ceil(low_epochs * train_count / bs)
    if low_steps:
        if config.low_res_mode == "crop":
            phases.append(Phase("crop", "crop", low_steps, config.lr, crop=(config.crop_min, config.crop_max)))
        elif config.low_res_mode == "resize":
            phases.append(Phase(f"{config.low_res}px", "resize", low_steps, config.lr, size=config.low_res))
        else:
            phases.append(Phase(f"{full_size}px", "full", low_steps, config.lr))
    final_steps = math.ceil(final_epochs * final_images / bs)
    if final_steps:
        phases.append(Phase(f"{full_size}px-final", "full", final_steps, config.final_lr or config.lr))
    return phases


def fit_epochs(config: TrainConfig, seconds: float, train_count: int, full_size: int,
               step_seconds: Callable[[Phase], float]) -> int:
    """The most epochs whose phases take at most ``seconds`` (``step_seconds(phase)``: measured per phase)."""
    def cost(epochs: int) -> float:
        trial = dataclasses.replace(config, epochs=epochs)
        return sum(p.steps * step_seconds(p) for p in plan_phases(trial, train_count, full_size))

    epochs = max(1, config.final_epochs)
    while cost(epochs + 1) <= seconds:
        epochs += 1
    return epochs
