"""One training run as data: :class:`TrainConfig`, whose fields are ``lizaalert-train``'s options.

The command line converts argv into a config at its edge (``training.cli``); recipes
(``training.default_model``) are configs too, and library code never parses argv.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lizaalert_tagger.common.spec import DEFAULT_SPEC_PATH, AttributeSpec

LOW_RES_MODES = ("crop", "resize", "full")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class TrainConfig:
    """What to train on, from what, with which schedule, and where the results go.

    ``images``, ``labels`` and ``out`` may be left out of a recipe (a template that
    ``dataclasses.replace`` completes); a run needs them. ``docs/training.md`` explains the schedule.
    """

    images: Path | None = None  # directory of the photos named in the labels CSV
    labels: Path | None = None  # labels CSV in the seed's format
    out: Path | None = None  # weights.pt, attributes.json, metrics.json, checkpoint.pt, train_log.jsonl, snapshots/
    spec: Path = DEFAULT_SPEC_PATH
    weights: str | None = None  # ImageNet ResNet34 weights: a .pth file or "download"; None: from scratch
    init: Path | None = None  # a tagger's weights (.safetensors or a state dict) to start from instead
    head_weights: Mapping[str, float] = field(default_factory=dict)  # attribute key -> loss multiplier (default 1)
    epochs: int = 10
    final_epochs: int = 1  # the last epochs at the served size, with their own learning-rate cycle
    final_images: int = 0  # photos per served-size epoch (0: all)
    final_lr: float = 0.0  # peak learning rate of the served-size epochs (0: lr)
    low_res_mode: str = "resize"  # the earlier epochs: one of LOW_RES_MODES
    low_res: int = 128  # side of the "resize" epochs in px
    crop_min: int = 128  # "crop": smallest window side in px
    crop_max: int = 192  # "crop": largest window side in px
    boxes: Path | None = None  # the objects' boxes for "crop" (default: boxes.json beside labels)
    batch_size: int = 32
    lr: float = 2e-3  # peak learning rate
    ema_passes: int = 0  # EMA of the weights over about this many image-passes (0: none)
    val_fraction: float = 0.15  # held-out share, when there is no separate validation set
    val_images: Path | None = None  # directory of a separate validation set (default: images)
    val_labels: Path | None = None  # its labels CSV (instead of val_fraction)
    seed: int = 0
    device: str = "auto"  # one of DEVICES
    threads: int = 0  # torch threads (0: all cores)
    jobs: int = 0  # decode processes (0: all cores)
    precision: str = "auto"  # one of PRECISIONS
    checkpoint_minutes: float = 10.0  # write out/checkpoint.pt this often (0: never; a signal always does)
    log_seconds: float = 60.0  # print progress this often (0: never)
    resume: bool = False  # continue from out/checkpoint.pt
    fit_seconds: float = 0.0  # choose epochs so that training takes about this long (0: use epochs)
    snapshot_every: int = 0  # save the weights to out/snapshots/ every this many image-passes (0: never)

    def __post_init__(self) -> None:
        for name, value, allowed in (("low_res_mode", self.low_res_mode, LOW_RES_MODES), ("device", self.device, DEVICES),
                                     ("precision", self.precision, PRECISIONS)):
            if value not in allowed:
                raise ValueError(f"{name}: expected one of {allowed}, got {value!r}")
        if self.batch_size < 1 or self.epochs < 0 or self.final_epochs < 0:
            raise ValueError(f"expected batch_size >= 1, epochs >= 0 and final_epochs >= 0, got {self.batch_size}, "
                             f"{self.epochs} and {self.final_epochs}")
        bad = {k: w for k, w in self.head_weights.items() if not w > 0}
        if bad:
            raise ValueError(f"head weights must be > 0, got {bad}")

    def to_argv(self) -> list[str]:
        """The ``lizaalert-train`` options that give this config (those that differ from the defaults)."""
        argv: list[str] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if value == default:
                continue
            if f.name == "head_weights":
                argv += [arg for key, weight in value.items() for arg in ("--head-weight", f"{key}={weight:g}")]
            elif isinstance(value, bool):
                argv.append(option_name(f.name))
            else:
                argv += [option_name(f.name), f"{value:g}" if isinstance(value, float) else str(value)]
        return argv


def option_name(field_name: str) -> str:
    """``low_res_mode`` -> ``--low-res-mode``: each field is the option of the same name."""
    return "--" + field_name.replace("_", "-")


def parse_head_weights(items: list[str]) -> dict[str, float]:
    """``["dog_handler=2", ...]`` -> ``{"dog_handler": 2.0}`` (``--head-weight``'s syntax; the keys are
    checked against the spec by :func:`check_head_weights`)."""
    weights = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not sep or not key or not weight > 0:
            raise ValueError(f"--head-weight: expected KEY=W with W > 0 (e.g. dog_handler=2), got {item!r}")
        weights[key] = weight
    return weights


def check_head_weights(weights: Mapping[str, float], spec: AttributeSpec) -> None:
    """Refuse head weights for attributes the spec does not have."""
    unknown = sorted(set(weights) - set(spec.keys))
    if unknown:
        raise ValueError(f"head weights for unknown attributes {unknown}; the spec has {list(spec.keys)}")
