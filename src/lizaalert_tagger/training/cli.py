#!/usr/bin/env python3
"""Fine-tune (or train from scratch) the tagger on photos labelled in the seed's CSV format.

    lizaalert-train --images DIR --labels labels.csv --out DIR [--weights imagenet.pth]

- Reads the seed's CSV (both header spellings); rows whose file is missing or
  not an image are skipped and counted in one warning line.
- Decodes every photo once with the serving preprocessing
  (``lizaalert_tagger.vision.preprocess``: the same decode, EXIF, RGB, squash resize
  with the spec's interpolation) and caches the 256x256 uint8 pixels, so
  training and serving cannot drift apart.
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

The options are the fields of ``training.config.TrainConfig``; this command only converts them.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from lizaalert_tagger.training.config import DEVICES, LOW_RES_MODES, PRECISIONS, TrainConfig, parse_head_weights
from lizaalert_tagger.training.run import STOPPED, TrainingError, train

DEFAULTS = TrainConfig()


def build_parser() -> argparse.ArgumentParser:
    """``lizaalert-train``'s options, one per ``TrainConfig`` field, with its defaults."""
    d = DEFAULTS
    parser = argparse.ArgumentParser(prog="lizaalert-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--images", type=Path, required=True, help="directory of the photos named in the CSV")
    add("--labels", type=Path, required=True, help="labels CSV in the seed's format")
    add("--out", type=Path, required=True, help="output directory (weights.pt, attributes.json, metrics.json)")
    add("--spec", type=Path, default=d.spec, help="attribute spec to train (default: %(default)s)")
    add("--weights", help="ImageNet ResNet34 weights: a local .pth file, or 'download' (needs internet); default: from scratch")
    add("--init", type=Path, help="start from a tagger's weights instead: .safetensors (e.g. models/default/weights.safetensors) "
                                  "or a state dict such as an earlier weights.pt")
    add("--head-weight", action="append", default=[], metavar="KEY=W",
        help="multiply one attribute's loss by W (repeatable; e.g. dog_handler=2; default: all 1)")
    add("--epochs", type=int, default=d.epochs, help="total epochs (default: %(default)s)")
    add("--final-epochs", type=int, default=d.final_epochs,
        help="last epochs at the served resolution, with their own learning-rate cycle (default: %(default)s)")
    add("--final-images", type=int, default=d.final_images, help="photos per served-resolution epoch, a random subset (default: all)")
    add("--final-lr", type=float, default=d.final_lr, help="peak learning rate of the served-resolution epochs (default: --lr)")
    add("--low-res-mode", choices=LOW_RES_MODES, default=d.low_res_mode,
        help="the earlier epochs: 'crop' = random --crop-min..--crop-max px windows of the served-size photo "
             "(served object scale; needs boxes.json), 'resize' = the photo squashed to --low-res px, "
             "'full' = the served size (default: %(default)s)")
    add("--low-res", type=int, default=d.low_res, help="side of the 'resize' epochs in px (default: %(default)s)")
    add("--crop-min", type=int, default=d.crop_min, help="smallest crop side in px (default: %(default)s)")
    add("--crop-max", type=int, default=d.crop_max, help="largest crop side in px (default: %(default)s)")
    add("--boxes", type=Path, help="objects' boxes for 'crop' (default: boxes.json beside --labels)")
    add("--batch-size", type=int, default=d.batch_size, help="(default: %(default)s)")
    add("--lr", type=float, default=d.lr, help="peak learning rate (default: %(default)s)")
    add("--ema-passes", type=int, default=d.ema_passes,
        help="keep an exponential moving average of the weights over about this many image-passes, "
             "and ship it if it validates better (default: off)")
    add("--val-fraction", type=float, default=d.val_fraction, help="held-out share for threshold tuning and metrics (default: %(default)s)")
    add("--val-images", type=Path, help="directory of a separate validation set (default: --images)")
    add("--val-labels", type=Path, help="labels CSV of a separate validation set (instead of --val-fraction)")
    add("--seed", type=int, default=d.seed, help="(default: %(default)s)")
    add("--device", default=d.device, choices=DEVICES, help="(default: %(default)s: CUDA if present)")
    add("--threads", type=int, default=d.threads, help="torch threads (default: all cores)")
    add("--jobs", type=int, default=d.jobs, help="decode processes (default: all cores)")
    add("--precision", choices=PRECISIONS, default=d.precision,
        help="'auto': bf16 autocast on CUDA; on a CPU with native bf16, a few steps of each are timed "
             "and the faster is used (logged); fp32 elsewhere (default: %(default)s)")
    add("--checkpoint-minutes", type=float, default=d.checkpoint_minutes,
        help="write OUT/checkpoint.pt this often, to continue with --resume (default: %(default)s; 0: never); "
             "SIGTERM or Ctrl-C also writes it, then stops")
    add("--log-seconds", type=float, default=d.log_seconds,
        help="print passes done and remaining, speed and ETA this often (default: %(default)s)")
    add("--resume", action="store_true", help="continue from OUT/checkpoint.pt (same data and schedule)")
    add("--fit-seconds", type=float, default=d.fit_seconds,
        help="choose --epochs so that training takes about this many seconds on this machine "
             "(each phase's step time measured first on a throwaway copy); the chosen number is "
             "printed and written to metrics.json (default: use --epochs)")
    add("--snapshot-every", type=int, default=d.snapshot_every,
        help="every this many image-passes, save the weights to OUT/snapshots/ for the learning curve (default: never)")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The parsed options as a config: each option is the field of the same name."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.name != "head_weights"}
    return TrainConfig(**values, head_weights=parse_head_weights(args.head_weight))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    try:
        result = train(config)
    except TrainingError as e:
        print(f"lizaalert-train: {e}", file=sys.stderr)
        return 2
    return 0 if result.finished else STOPPED


if __name__ == "__main__":
    sys.exit(main())
