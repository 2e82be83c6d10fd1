#!/usr/bin/env python3
"""Held-out score against training image-passes, from the snapshots of a training run.

    lizaalert-learning-curve --run build/train-default --calibration DIR --held-out DIR \
        --png docs/learning_curve.png

For each ``RUN/snapshots/passes_*.pt`` (``lizaalert-train --snapshot-every``): tune the
binary thresholds on the calibration scenes, then score the held-out scenes
(another seed, never trained on nor tuned on) with those thresholds, in
process, with the serving preprocessing. Writes ``RUN/curve.json`` (reused:
snapshots already evaluated are skipped) and, with ``--png``, a plot of the
score and of every object's F1 against image-passes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from lizaalert_tagger.common.scoring import score_codes
from lizaalert_tagger.vision.model import load_tagger
from lizaalert_tagger.common.spec import DEFAULT_SPEC_PATH, load_spec
from lizaalert_tagger.training.data import load_labelled
from lizaalert_tagger.training.evaluation import predict_logits, tune_thresholds
from lizaalert_tagger.training.trainer import pick_device
from lizaalert_tagger.vision.answers import codes_from_logits


def evaluate_snapshot(path: Path, spec, calibration, held_out, size: int | None = None, device: torch.device | str = "cpu") -> dict:
    """Thresholds tuned on ``calibration``, then the score on ``held_out``, both at ``size`` px (None: served)."""
    model = load_tagger(path, spec).to(device)
    cal_pixels, cal_rows = calibration
    truth = {a.key: [r[a.key] for r in cal_rows] for a in spec.attributes}
    thresholds = tune_thresholds(predict_logits(model, cal_pixels, spec, size=size), truth, spec)
    tuned = spec.with_thresholds(thresholds)
    pixels, rows = held_out
    truth = {a.key: [r[a.key] for r in rows] for a in spec.attributes}
    score = score_codes(truth, codes_from_logits(predict_logits(model, pixels, tuned, size=size), tuned), tuned)
    return {"score": round(score.overall, 4), "f1": {k: round(v, 4) for k, v in score.per_attribute.items()},
            "thresholds": thresholds}


def plot(points: list[dict], png: Path, title: str, categorical: Sequence[str], boundaries: list[tuple[int, str]] = (),
         marks: list[dict] = (), series: Sequence[dict] = ()) -> None:
    """``categorical``: the scene attributes, drawn as their mean; ``marks``: single results from elsewhere (``RUN/marks.json``: image_passes, score, label), drawn as stars;
    ``series``: other runs' points (``RUN/series.json``: ``[{"label", "points": [{"image_passes", "score", "f1"}]}]``, e.g. a
    continuation counted from its parent's passes), drawn as a thick line of their score and thin lines of their weakest objects."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [p["image_passes"] for p in points]
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    keys = [k for k in points[0]["f1"] if k not in categorical]
    for key in keys:
        ax.plot(x, [p["f1"][key] for p in points], lw=1, alpha=0.75, marker=".", label=key)
    ax.plot(x, [sum(p["f1"][k] for k in categorical) / len(categorical) for p in points], lw=1.5, ls="--", color="gray",
            label=f"{'/'.join(k.replace('_', ' ') for k in categorical)} (mean)")
    ax.plot(x, [p["score"] for p in points], lw=3, color="black", marker="o", label=f"score (mean of {len(points[0]['f1'])}), served 256 px")
    for size in sorted({size for p in points for size in p.get("at_size", {})}):
        xs = [p["image_passes"] for p in points if size in p.get("at_size", {})]
        ax.plot(xs, [p["at_size"][size]["score"] for p in points if size in p.get("at_size", {})], lw=2, ls="--",
                color="black", marker="s", label=f"score with the photos squashed to {size} px")
    for passes, name in boundaries:
        ax.axvline(passes, color="gray", lw=1, ls="-.")
        ax.text(passes, 0.02, f" {name}", fontsize=8, color="gray", rotation=90, va="bottom")
    for i, extra in enumerate(series):
        xs = [p["image_passes"] for p in extra["points"]]
        colour = ("tab:purple", "tab:brown", "tab:olive")[i % 3]
        ax.plot(xs, [p["score"] for p in extra["points"]], lw=3, color=colour, marker="D", label=f"score: {extra['label']}")
        for key in extra.get("objects", []):
            ax.plot(xs, [p["f1"][key] for p in extra["points"]], lw=1, ls="--", color=colour, marker=".",
                    label=f"{key}: {extra['label'].split(',')[0]}")
    for i, mark in enumerate(marks):
        ax.plot([mark["image_passes"]], [mark["score"]], marker="*", ms=14, ls="none", color=("tab:red", "tab:blue", "tab:green")[i % 3],
                label=f"{mark['label']}: {mark['score']:.3f}")
    ax.axhline(0.97, color="red", lw=1, ls=":", label="target 0.97")
    ax.set_xscale("log")
    ax.set_xlabel("training image-passes (log scale)")
    ax.set_ylabel("held-out F1")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)


def phase_boundaries(run: Path) -> list[tuple[int, str]]:
    """Image-passes where each phase after the first began, from the run's metrics.json."""
    metrics = run / "metrics.json"
    if not metrics.exists():
        return []
    info = json.loads(metrics.read_text())
    out, passes = [], 0
    for phase in info.get("phases", [])[:-1]:
        passes += phase["steps"] * info["batch_size"]
        out.append((passes, "end of " + phase["name"]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="lizaalert-train --out directory with snapshots/")
    parser.add_argument("--calibration", type=Path, help="scenes (images/ + labels.csv) to tune thresholds on (needed while snapshots are unscored)")
    parser.add_argument("--held-out", type=Path, help="scenes (images/ + labels.csv) to score (needed while snapshots are unscored)")
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC_PATH, help="(default: %(default)s)")
    parser.add_argument("--png", type=Path, help="write the plot here")
    parser.add_argument("--title", default="LizaAlert tagger: held-out score vs training", help="plot title")
    parser.add_argument("--jobs", type=int, default=2, help="decode processes (default: %(default)s)")
    parser.add_argument("--also-size", type=int, action="append", default=[],
                        help="also score every snapshot with the photos squashed to this side (e.g. 128: what a "
                             "low-resolution phase has learned); repeatable")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="(default: %(default)s: CUDA if present)")
    args = parser.parse_args(argv)
    try:
        device = pick_device(args.device)
    except ValueError as e:
        print(f"lizaalert-learning-curve: {e}", file=sys.stderr)
        return 2

    snapshots = sorted((args.run / "snapshots").glob("passes_*.pt"))
    spec = load_spec(args.spec)
    curve_path = args.run / "curve.json"
    done = {p["snapshot"]: p for p in json.loads(curve_path.read_text())} if curve_path.exists() else {}
    if not snapshots and not done:
        print(f"lizaalert-learning-curve: no snapshots in {args.run / 'snapshots'} (lizaalert-train --snapshot-every N) "
              f"and no {curve_path} to plot", file=sys.stderr)
        return 2
    seconds = {}
    log = args.run / "train_log.jsonl"
    if log.exists():
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if "snapshot" in entry:
                seconds[entry["snapshot"]] = entry["seconds"]
    wanted = {str(size) for size in args.also_size}
    todo = [s for s in snapshots if s.name not in done or not wanted <= set(done[s.name].get("at_size", {}))]
    if todo and not (args.calibration and args.held_out):
        print(f"lizaalert-learning-curve: {len(todo)} snapshots are not scored yet: give --calibration and --held-out", file=sys.stderr)
        return 2
    if todo:
        try:
            cal_pixels, cal_rows, _ = load_labelled(args.calibration / "images", args.calibration / "labels.csv", spec, args.jobs)
            pixels, rows, _ = load_labelled(args.held_out / "images", args.held_out / "labels.csv", spec, args.jobs)
        except (OSError, ValueError) as e:
            print(f"lizaalert-learning-curve: {e}", file=sys.stderr)
            return 2
        torch.set_num_threads(max(1, args.jobs))
    for snap in todo:
        start = time.monotonic()
        point = done.get(snap.name) or evaluate_snapshot(snap, spec, (cal_pixels, cal_rows), (pixels, rows), device=device)
        point.update(snapshot=snap.name, image_passes=int(snap.stem.split("_")[1]), train_seconds=seconds.get(snap.name))
        at_size = point.setdefault("at_size", {})
        for size in sorted(wanted - set(at_size)):
            extra = evaluate_snapshot(snap, spec, (cal_pixels, cal_rows), (pixels, rows), size=int(size), device=device)
            at_size[size] = {"score": extra["score"], "f1": extra["f1"]}
        done[snap.name] = point
        print(f"{snap.name}: score {point['score']:.4f} ({time.monotonic() - start:.0f} s)", flush=True)
        curve_path.write_text(json.dumps(sorted(done.values(), key=lambda p: p["image_passes"]), indent=1) + "\n")
    points = sorted(done.values(), key=lambda p: p["image_passes"])
    for p in points:
        objects = " ".join(f"{k}={v:.2f}" for k, v in p["f1"].items() if spec[k].is_binary)
        extra = "".join(f"  (at {size} px: {v['score']:.4f})" for size, v in p.get("at_size", {}).items())
        print(f"{p['image_passes']:>8} passes  score {p['score']:.4f}{extra}  {objects}")
    if args.png:
        marks_path = args.run / "marks.json"
        marks = json.loads(marks_path.read_text()) if marks_path.exists() else []
        series_path = args.run / "series.json"
        series = json.loads(series_path.read_text()) if series_path.exists() else []
        plot(points, args.png, args.title, [a.key for a in spec.attributes if not a.is_binary], phase_boundaries(args.run),
             marks, series)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
