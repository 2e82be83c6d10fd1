"""One training run from a :class:`TrainConfig`: data, model, precision, schedule, the loop with its
progress, snapshots and checkpoints, then the validation and the files in ``config.out``.

Writes ``weights.pt`` (state dict), ``attributes.json`` (the spec with the tuned thresholds),
``metrics.json``, ``train_log.jsonl``, ``checkpoint.pt`` (when interrupted or every
``checkpoint_minutes``) and ``snapshots/`` (every ``snapshot_every`` image-passes).
"""
from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

from lizaalert_tagger.common.machine import available_cores, cpu_model
from lizaalert_tagger.common.spec import AttributeSpec, load_spec
from lizaalert_tagger.training.config import TrainConfig, check_head_weights
from lizaalert_tagger.training.data import load_boxes, load_labelled, split_indices, targets_from_codes
from lizaalert_tagger.training.evaluation import evaluate
from lizaalert_tagger.training.schedule import Phase, fit_epochs, plan_phases
from lizaalert_tagger.training.trainer import Trainer, choose_bf16, pick_device, save_checkpoint, seconds_per_step
from lizaalert_tagger.vision.model import LizaAlertTagger, load_tagger

IMAGENET_URL_HINT = "torchvision's ResNet34_Weights.IMAGENET1K_V1"
STOPPED = 3  # exit status of a run stopped by a signal after writing its checkpoint (continue with resume)
CHECKPOINT_FILE = "checkpoint.pt"


class TrainingError(ValueError):
    """The run cannot start or continue as configured (data, weights, options, checkpoint); the message says why."""


@dataclass(frozen=True)
class TrainResult:
    finished: bool  # False: stopped by a signal, the checkpoint written
    image_passes: int
    total_passes: int
    metrics: dict | None  # metrics.json, when finished


@dataclass
class _Data:
    pixels: torch.Tensor  # the training photos
    targets: dict[str, torch.Tensor]
    boxes: list[list[list]] | None  # for crop phases
    val_pixels: torch.Tensor
    val_rows: list[dict[str, int]]


def train(config: TrainConfig) -> TrainResult:
    """Train as ``config`` says; ``TrainingError`` for what the user can fix."""
    start = time.monotonic()
    if config.images is None or config.labels is None or config.out is None:
        raise TrainingError(f"a run needs images, labels and out; got {config.images}, {config.labels} and {config.out}")
    cores = available_cores()
    torch.set_num_threads(config.threads or cores)
    torch.manual_seed(config.seed)
    try:
        spec = load_spec(config.spec)
        check_head_weights(config.head_weights, spec)
        device = pick_device(config.device)
        data = load_data(config, spec, jobs=config.jobs or cores)
    except (OSError, ValueError) as e:
        raise TrainingError(str(e)) from None
    print(f"data: {len(data.pixels) + (0 if config.val_labels else len(data.val_rows))} photos decoded in "
          f"{time.monotonic() - start:.0f} s", flush=True)
    model = build_model(config, spec, device)
    probe = plan_phases(config, len(data.pixels), spec.preprocessing.size[0])[0]
    bf16, why = choose_bf16(config.precision, device, lambda b: seconds_per_step(
        model, data.pixels, data.targets, spec, probe, batch_size=config.batch_size, device=device, bf16=b,
        boxes=data.boxes, ema_passes=config.ema_passes) / config.batch_size)
    print(f"precision: {'bf16' if bf16 else 'fp32'} ({why})", flush=True)
    if config.fit_seconds:
        config = dataclasses.replace(config, epochs=_fitted_epochs(config, model, data, spec, device, bf16))
    phases = plan_phases(config, len(data.pixels), spec.preprocessing.size[0])
    try:
        trainer = Trainer(model, data.pixels, data.targets, spec, phases, batch_size=config.batch_size, seed=config.seed,
                          device=device, bf16=bf16, boxes=data.boxes, ema_passes=config.ema_passes,
                          head_weights=config.head_weights)
    except ValueError as e:
        raise TrainingError(str(e)) from None
    config.out.mkdir(parents=True, exist_ok=True)
    elapsed_before = resume(trainer, config.out / CHECKPOINT_FILE, device) if config.resume else 0.0
    plan = ", ".join(f"{p.name}: {p.steps} steps at lr {p.lr:g}" for p in phases)
    print(f"train: {len(data.pixels)} photos, validate: {len(data.val_rows)}; device={device}, bf16={bf16}, "
          f"threads={torch.get_num_threads()}; {plan}", flush=True)
    precision = {"precision": "bf16" if bf16 else "fp32", "precision_why": why}
    finished, train_seconds = _train_loop(trainer, config, precision, device, elapsed_before)
    total = trainer.total_steps * trainer.batch_size
    if not finished:
        return TrainResult(False, trainer.image_passes, total, None)
    metrics = write_results(trainer, config, data, spec, phases, {**precision, "train_seconds": round(train_seconds, 1)}, start)
    return TrainResult(True, trainer.image_passes, total, metrics)


def load_data(config: TrainConfig, spec: AttributeSpec, jobs: int) -> _Data:
    """The training photos (with their boxes for crop phases) and the validation photos: a separate
    set (``val_labels``) or a seeded ``val_fraction`` of the training photos."""
    pixels, rows, names = load_labelled(config.images, config.labels, spec, jobs)
    if config.val_labels:
        val_pixels, val_rows, _ = load_labelled(config.val_images or config.images, config.val_labels, spec, jobs)
        train_idx = torch.arange(len(rows))
    else:
        train_idx, val_idx = split_indices(len(rows), config.val_fraction, config.seed)
        val_pixels, val_rows = pixels[val_idx], [rows[i] for i in val_idx.tolist()]
    boxes = None
    if config.low_res_mode == "crop":
        all_boxes = load_boxes(config.boxes or config.labels.parent / "boxes.json", names)
        boxes = [all_boxes[i] for i in train_idx.tolist()]
    targets = targets_from_codes(rows, spec)
    return _Data(pixels[train_idx], {k: v[train_idx] for k, v in targets.items()}, boxes, val_pixels, val_rows)


def build_model(config: TrainConfig, spec: AttributeSpec, device: torch.device) -> LizaAlertTagger:
    """The tagger to train: from ``init``, or new with the ImageNet trunk of ``weights``, or from scratch."""
    try:
        model = load_tagger(config.init, spec).train() if config.init else LizaAlertTagger(spec)
    except (OSError, ValueError) as e:
        raise TrainingError(str(e)) from None
    if not config.init and config.weights:
        load_imagenet_trunk(model, config.weights)
    model = model.to(device, memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return model


def load_imagenet_trunk(model: LizaAlertTagger, weights: str) -> None:
    """Load ImageNet weights into the trunk: a local file, or 'download' via torchvision."""
    if weights == "download":
        from torchvision.models import ResNet34_Weights

        try:
            state = ResNet34_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
        except Exception as e:  # no network, proxy, TLS ...
            raise TrainingError(
                f"could not download {IMAGENET_URL_HINT} ({type(e).__name__}: {e}). Download "
                "resnet34-b627a593.pth elsewhere and pass it with --weights FILE, or train from scratch without --weights."
            ) from None
    else:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as e:  # a missing file, a pickle that is not a state dict, a truncated download ...
            raise TrainingError(f"cannot load ImageNet weights from {weights}: {e}") from None
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = model.trunk.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.startswith("fc.")]
    if missing or unexpected:
        raise TrainingError(f"{weights} is not a torchvision ResNet34 state dict (missing {missing[:3]}, unexpected {unexpected[:3]})")


def _fitted_epochs(config: TrainConfig, model: LizaAlertTagger, data: _Data, spec: AttributeSpec,
                   device: torch.device, bf16: bool) -> int:
    """``fit_seconds``: the most epochs that fit, each phase's step time measured on this machine."""
    if config.resume:
        raise TrainingError("--fit-seconds and --resume: give the --epochs that the interrupted run chose")
    measured: dict[str, float] = {}

    def step_seconds(phase: Phase) -> float:
        key = f"{phase.mode}/{phase.size}/{phase.crop}"
        if key not in measured:
            measured[key] = seconds_per_step(model, data.pixels, data.targets, spec, phase, batch_size=config.batch_size,
                                             device=device, bf16=bf16, boxes=data.boxes, ema_passes=config.ema_passes)
            print(f"fit: {phase.name} takes {measured[key] * 1000:.1f} ms per step of {config.batch_size} photos", flush=True)
        return measured[key]

    epochs = fit_epochs(config, config.fit_seconds, len(data.pixels), spec.preprocessing.size[0], step_seconds)
    print(f"fit: --epochs {epochs} fits in {config.fit_seconds:.0f} s", flush=True)
    return epochs


def resume(trainer: Trainer, checkpoint: Path, device: torch.device) -> float:
    """Load the checkpoint into ``trainer``; returns the training seconds already spent."""
    if not checkpoint.exists():
        raise TrainingError(f"--resume: {checkpoint} does not exist")
    state = torch.load(checkpoint, map_location=device, weights_only=True)
    try:
        trainer.load_state_dict(state)
    except (ValueError, RuntimeError, KeyError) as e:
        raise TrainingError(f"--resume: {checkpoint} does not fit this run: {e}") from None
    print(f"resumed from {checkpoint} at step {trainer.step} of {trainer.total_steps} ({trainer.image_passes} image-passes)",
          flush=True)
    return float(state.get("train_seconds", 0.0))


class _Progress:
    """Called after every step: progress lines, the log, snapshots and timed checkpoints."""

    def __init__(self, config: TrainConfig, log: TextIO, elapsed_before: float, image_passes: int) -> None:
        self.config, self.log, self.elapsed_before = config, log, elapsed_before
        self.checkpoint = config.out / CHECKPOINT_FILE
        self.start = self.last_checkpoint = self.last_report = time.monotonic()
        self.report_passes = image_passes

    def seconds(self) -> float:
        """Training seconds of the whole run, earlier sittings included."""
        return self.elapsed_before + time.monotonic() - self.start

    def __call__(self, t: Trainer) -> None:
        config, now, seconds = self.config, time.monotonic(), self.seconds()
        if config.log_seconds and now - self.last_report >= config.log_seconds:
            total = t.total_steps * t.batch_size
            rate = (t.image_passes - self.report_passes) / (now - self.last_report)
            remain = total - t.image_passes
            print(f"passes {t.image_passes:,} of {total:,} done, {remain:,} remain; {rate:.1f} passes/s, "
                  f"ETA {remain / max(rate, 1e-9) / 60:.0f} min; loss {t.running_loss:.4f}", flush=True)
            self.last_report, self.report_passes = now, t.image_passes
        every = config.snapshot_every
        if every and t.image_passes // every > (t.image_passes - t.batch_size) // every:
            snap = config.out / "snapshots" / f"passes_{t.image_passes:08d}.pt"
            snap.parent.mkdir(exist_ok=True)
            torch.save({k: v.detach().cpu().contiguous() for k, v in t.final_model().state_dict().items()}, snap)
            self.log.write(json.dumps({"snapshot": snap.name, "image_passes": t.image_passes, "seconds": round(seconds, 1)}) + "\n")
        if t.step % 50 == 0:
            self.log.write(json.dumps({"step": t.step, "image_passes": t.image_passes, "seconds": round(seconds, 1),
                                       "loss": round(t.running_loss, 4)}) + "\n")
            self.log.flush()
        if config.checkpoint_minutes and time.monotonic() - self.last_checkpoint > 60 * config.checkpoint_minutes:
            save_checkpoint(t, self.checkpoint, train_seconds=seconds)
            self.last_checkpoint = time.monotonic()


def _train_loop(trainer: Trainer, config: TrainConfig, precision: dict, device: torch.device,
                elapsed_before: float) -> tuple[bool, float]:
    """Run the trainer until it finishes or a signal stops it (then the checkpoint is written);
    returns whether it finished and the training seconds of the whole run."""
    checkpoint = config.out / CHECKPOINT_FILE
    with (config.out / "train_log.jsonl").open("a", encoding="utf-8") as log:
        log.write(json.dumps({"start": time.strftime("%Y-%m-%dT%H:%M:%S"), "image_passes": trainer.image_passes,
                              "total_passes": trainer.total_steps * trainer.batch_size, **precision,
                              "device": str(device), "cpu": cpu_model() if device.type == "cpu" else None}) + "\n")

        def on_signal(signum, frame) -> None:  # noqa: ARG001
            trainer.stop_requested = True
            print(f"\nlizaalert-train: signal {signum}: stopping after this step and writing {checkpoint}",
                  file=sys.stderr, flush=True)

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        progress = _Progress(config, log, elapsed_before, trainer.image_passes)
        try:
            finished = trainer.run(on_step=progress, progress=sys.stderr.isatty())
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        train_seconds = progress.seconds()
        if not finished:
            save_checkpoint(trainer, checkpoint, train_seconds=train_seconds)
            log.write(json.dumps({"stopped": time.strftime("%Y-%m-%dT%H:%M:%S"), "image_passes": trainer.image_passes,
                                  "seconds": round(train_seconds, 1)}) + "\n")
            print(f"lizaalert-train: stopped at {trainer.image_passes:,} of {trainer.total_steps * trainer.batch_size:,} "
                  f"image-passes; {checkpoint} written: continue with the same command and --resume", file=sys.stderr)
    return finished, train_seconds


def write_results(trainer: Trainer, config: TrainConfig, data: _Data, spec: AttributeSpec, phases: list[Phase],
                  run_facts: dict, start: float) -> dict:
    """Validate the weights (and the EMA's), keep the better, write weights.pt, attributes.json, metrics.json."""
    device = trainer.device
    candidates = {"weights": trainer.model}
    if trainer.ema is not None:
        candidates["ema"] = trainer.ema.module
    results = {name: evaluate(m, data.val_pixels, data.val_rows, spec, trainer.bf16) for name, m in candidates.items()}
    chosen = max(results, key=lambda name: results[name]["tuned"].overall)
    result, model = results[chosen], candidates[chosen]
    model = model.to("cpu", memory_format=torch.contiguous_format)
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, config.out / "weights.pt")
    result["spec"].save(config.out / "attributes.json")
    metrics = {
        "validation": result["tuned"].to_dict(),
        "validation_at_0.5": result["default"].to_dict(),
        "thresholds": result["thresholds"],
        "shipped": chosen,
        "candidates": {name: r["tuned"].overall for name, r in results.items()},
        "train_photos": len(data.pixels),
        "validation_photos": len(data.val_rows),
        "epochs": config.epochs,
        "phases": [dataclasses.asdict(p) for p in phases],
        "batch_size": config.batch_size,
        "image_passes": trainer.image_passes,
        "device": str(device),
        "cpu": cpu_model() if device.type == "cpu" else None,
        "precision": run_facts["precision"],
        "precision_why": run_facts["precision_why"],
        "head_weights": {k: w for k, w in config.head_weights.items() if w != 1.0},
        "init": str(config.init) if config.init else None,
        "train_seconds": run_facts["train_seconds"],
        "seconds": round(time.monotonic() - start, 1),
    }
    (config.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(result["tuned"].table())
    print("candidates: " + ", ".join(f"{n} {r['tuned'].overall:.4f}" for n, r in results.items()) + f"; shipped {chosen}")
    print(f"wrote {config.out}/weights.pt, attributes.json, metrics.json in {time.monotonic() - start:.0f} s")
    return metrics
