#!/usr/bin/env python3
"""What the review loop buys, measured with a simulated reviewer (docs/review-loop.md).

    lizaalert-review-sim survey --work build/review-sim     # the parent model on candidate settings
    lizaalert-review-sim run --work build/review-sim --weather fog                    # corrected photos only
    lizaalert-review-sim run --work build/review-sim --weather fog --replay 100 --strategies least
    lizaalert-review-sim table --work build/review-sim      # WORK/results.json as the docs' tables

``survey`` scores the parent weights on a few hundred scenes of each candidate setting (ordinary
photos, large photos, ``--weather fog`` and ``dim``), to find one that it saw little of.

``run`` is the simulation: a "new search" of ``--pool`` scenes of the chosen setting is tagged
in-process by the parent weights (the served decision in fp32, not through TorchServe); for each K of
``--ks`` and each strategy, the simulated reviewer corrects K photos from the ground truth: the K least
certain (the smallest ``review_loop.decision_margin``, what the report's "least certain first" shows
first) or, as the control, K drawn at random. ``lizaalert-train`` then fine-tunes the parent weights on
those photos (plus ``--replay`` ordinary scenes against forgetting) for ``--minutes`` on this machine, and
the new weights are scored on ``--test`` held-out scenes of the new setting and as many ordinary ones.

Everything is written under ``--work``; ``WORK/results.json`` after every step, so an interrupted run
keeps what it finished and a rerun of the same command does only the rest.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lizaalert_tagger.common.labels_csv import write_labels
from lizaalert_tagger.common.machine import available_cores, cpu_model
from lizaalert_tagger.common.scoring import score_codes
from lizaalert_tagger.common.spec import AttributeSpec, load_spec
from lizaalert_tagger.training.config import TrainConfig
from lizaalert_tagger.training.default_model import (
    SCENE_MAX_SIZE,
    SHIPPED_DIR,
    SPEC_FILE,
    TAG_BOOST,
    WEIGHTS_FILE,
    SceneSet,
    generate_scenes,
    sha256,
)
from lizaalert_tagger.training.review_loop import answer_margin, least_certain, random_photos, simulated_review

RESULTS_FILE = "results.json"
LEAST, RANDOM = "least", "random"
STRATEGIES = {LEAST: "least certain", RANDOM: "random"}
# Scene seeds of their own: not the default model's training (0), calibration (1), curve (3), parity (4),
# continuation (20) or served held-out (1001) scenes, nor the archive's int8 calibration (2).
SURVEY_SEED, POOL_SEED, TEST_SEED, ORDINARY_SEED, REPLAY_SEED = 40, 41, 42, 43, 44


def survey_sets(count: int) -> dict[str, SceneSet]:
    """The candidate settings of ``survey``: what the default model trained on (photos up to 1024 px), photos
    at the generator's full 640..4000 px, and the opt-in weathers."""
    return {
        "ordinary": SceneSet(SURVEY_SEED, count, SCENE_MAX_SIZE),
        "large photos (640..4000 px)": SceneSet(SURVEY_SEED, count),
        "fog": SceneSet(SURVEY_SEED, count, SCENE_MAX_SIZE, weather="fog"),
        "dim": SceneSet(SURVEY_SEED, count, SCENE_MAX_SIZE, weather="dim"),
    }


@dataclass(frozen=True)
class SimConfig:
    """One simulation: the setting, the parent weights, the reviews to simulate and how each fine-tune runs."""

    work: Path
    weather: str = "fog"
    weights: Path = SHIPPED_DIR / WEIGHTS_FILE
    spec: Path = SHIPPED_DIR / SPEC_FILE  # the parent's spec, with its thresholds
    pool: int = 1000  # the new search's photos, tagged by the parent
    test: int = 500  # held-out scenes of the new setting, and as many ordinary ones
    ks: tuple[int, ...] = (50, 100, 200)
    strategies: tuple[str, ...] = (LEAST, RANDOM)
    replay: int = 0  # ordinary scenes (boosted, as the default model's training set) mixed into each fine-tune
    minutes: float = 10.0  # training time of each fine-tune on this machine
    lr: float = 5e-4
    batch_size: int = 16
    jobs: int = 0  # scene and decode processes (0: all cores)
    seed: int = 0  # the random control's draw and the fine-tunes' seed

    def __post_init__(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown or not self.strategies:
            raise ValueError(f"strategies: expected some of {list(STRATEGIES)}, got {list(self.strategies)}")
        if not self.ks or any(not 0 < k <= self.pool for k in self.ks):
            raise ValueError(f"ks: expected numbers from 1 to --pool {self.pool}, got {list(self.ks)}")
        if self.minutes <= 0 or self.replay < 0 or self.test < 1:
            raise ValueError(f"expected minutes > 0, replay >= 0 and test >= 1, got {self.minutes}, {self.replay} "
                             f"and {self.test}")


def scene_sets(config: SimConfig) -> dict[str, SceneSet]:
    """The simulation's scenes by folder name under ``config.work``."""
    sets = {
        "pool": SceneSet(POOL_SEED, config.pool, SCENE_MAX_SIZE, weather=config.weather),
        "test_new": SceneSet(TEST_SEED, config.test, SCENE_MAX_SIZE, weather=config.weather),
        "test_ordinary": SceneSet(ORDINARY_SEED, config.test, SCENE_MAX_SIZE),
    }
    if config.replay:
        sets[replay_folder(config.replay)] = SceneSet(REPLAY_SEED, config.replay, SCENE_MAX_SIZE, TAG_BOOST)
    return sets


def replay_folder(count: int) -> str:
    """The folder of ``count`` replay scenes (the first ``count`` of the replay seed: a larger set holds a smaller one)."""
    return f"replay-{count}"


def finetune_config(images: Path, labels: Path, out: Path, config: SimConfig) -> TrainConfig:
    """The ``lizaalert-train`` run of one fine-tune: from the parent weights and thresholds, at the served
    256 px throughout, as many epochs as fit in ``config.minutes`` (docs/review-loop.md shows it as a command)."""
    return TrainConfig(images=images, labels=labels, out=out, spec=config.spec, init=config.weights,
                       low_res_mode="full", epochs=1, final_epochs=0, batch_size=config.batch_size, lr=config.lr,
                       fit_seconds=60.0 * config.minutes, seed=config.seed, jobs=config.jobs, checkpoint_minutes=0.0)


class Results:
    """``WORK/results.json``, rewritten whole (beside it, then renamed) after every step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        except ValueError as e:
            raise ValueError(f"{path} is not JSON ({e}): move it away to start again") from None

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(temporary, self.path)

    def require(self, key: str, value: Any) -> None:
        """Record ``value`` under ``key``, or refuse to mix results of another setting into this file."""
        if key in self.data and self.data[key] != value:
            raise ValueError(f"{self.path} holds results of another {key} ({self.data[key]}, now {value}): "
                             "give another --work")
        self.data[key] = value


@dataclass
class Labelled:
    """Decoded scenes (the serving preprocessing) with their names and true codes."""

    pixels: Any  # [N, 3, 256, 256] uint8 tensor
    names: list[str]
    truth: dict[str, dict[str, int]]


def load_scenes(folder: Path, spec: AttributeSpec, jobs: int) -> Labelled:
    from lizaalert_tagger.training.data import load_labelled

    pixels, rows, names = load_labelled(folder / "images", folder / "labels.csv", spec, jobs)
    return Labelled(pixels, names, dict(zip(names, rows)))


def score_logits(logits: Any, data: Labelled, spec: AttributeSpec) -> dict:
    """The project's score of logits decided at ``spec``'s thresholds (``Score.to_dict``)."""
    from lizaalert_tagger.vision.answers import codes_from_logits

    truth = {a.key: [data.truth[n][a.key] for n in data.names] for a in spec.attributes}
    return score_codes(truth, codes_from_logits(logits, spec), spec).to_dict()


def model_logits(weights: Path, spec: AttributeSpec, data: Labelled) -> Any:
    from lizaalert_tagger.training.evaluation import predict_logits
    from lizaalert_tagger.vision.model import load_tagger

    return predict_logits(load_tagger(weights, spec), data.pixels, spec)


def survey(work: Path, count: int, weights: Path, spec_path: Path, jobs: int) -> dict:
    """The parent weights' score on ``count`` scenes of each candidate setting, into ``WORK/results.json``."""
    results = Results(work / RESULTS_FILE)
    results.require("parent", {"weights": str(weights), "sha256": sha256(weights)})
    spec = load_spec(spec_path)
    done = results.data.setdefault("survey", {})
    for name, scenes in survey_sets(count).items():
        if name in done and done[name]["scenes"] == scenes.record():
            continue
        folder = work / "survey" / name.split(" ")[0]
        generate_scenes(folder, scenes, jobs=jobs)
        data = load_scenes(folder, spec, jobs)
        done[name] = {"scenes": scenes.record(), **score_logits(model_logits(weights, spec, data), data, spec)}
        results.save()
        print(f"survey: {name}: {done[name]['score']:.4f} on {done[name]['count']} scenes", flush=True)
    return done


@dataclass
class _Pool:
    """The tagged new search: the parent's codes and margins per photo, and the truth."""

    predicted: dict[str, dict[str, int]]
    margins: dict[str, float]
    truth: dict[str, dict[str, int]]


def tag_pool(config: SimConfig, spec: AttributeSpec, results: Results, jobs: int) -> _Pool:
    """The parent's answers on the new search (``WORK/pool/answers.json``, made once), as the server decides them."""
    from lizaalert_tagger.vision.answers import decode_logits

    answers_file = config.work / "pool" / "answers.json"
    if not answers_file.exists():
        start = time.monotonic()
        data = load_scenes(config.work / "pool", spec, jobs)
        logits = model_logits(config.weights, spec, data)
        answers = dict(zip(data.names, decode_logits(logits, spec)))
        results.data["pool_tagging"] = {**score_logits(logits, data, spec), "seconds": round(time.monotonic() - start, 1)}
        write_labels(config.work / "pool" / "predicted.csv", [(n, spec.answer_codes(a)) for n, a in answers.items()], spec)
        answers_file.write_text(json.dumps(answers, ensure_ascii=False) + "\n", encoding="utf-8")
        results.save()
    answers = json.loads(answers_file.read_text(encoding="utf-8"))
    return _Pool({n: spec.answer_codes(a) for n, a in answers.items()},
                 {n: answer_margin(a, spec) for n, a in answers.items()}, _read_truth(config.work / "pool", spec))


def _read_truth(folder: Path, spec: AttributeSpec) -> dict[str, dict[str, int]]:
    from lizaalert_tagger.common.labels_csv import read_labels

    return dict(read_labels(folder / "labels.csv", spec).pairs())


def run_name(k: int, strategy: str, replay: int) -> str:
    return f"K={k} {STRATEGIES[strategy]}" + (f" + {replay} ordinary" if replay else "")


def simulate(config: SimConfig) -> dict:
    """Every run of ``config`` not yet in ``WORK/results.json``, one fine-tune at a time; returns the results."""
    jobs = config.jobs or available_cores()
    results = Results(config.work / RESULTS_FILE)
    results.require("parent", {"weights": str(config.weights), "sha256": sha256(config.weights)})
    results.require("setting", {"weather": config.weather, "pool": scene_sets(config)["pool"].record(),
                                "test": config.test, "lr": config.lr, "batch_size": config.batch_size})
    results.data["machine"] = {"cpu": cpu_model(), "cores": available_cores()}
    for name, scenes in scene_sets(config).items():
        generate_scenes(config.work / name, scenes, jobs=jobs)
    spec = load_spec(config.spec)
    pool = tag_pool(config, spec, results, jobs)
    tests = {name: load_scenes(config.work / f"test_{name}", spec, jobs) for name in ("new", "ordinary")}
    if "before" not in results.data:
        results.data["before"] = {name: score_logits(model_logits(config.weights, spec, data), data, spec)
                                  for name, data in tests.items()}
        results.save()
    runs = results.data.setdefault("runs", {})
    for k in config.ks:
        for strategy in config.strategies:
            name = run_name(k, strategy, config.replay)
            if name in runs:
                continue
            runs[name] = run_one(config, spec, pool, tests, k, strategy)
            results.save()
            print(f"{name}: new setting {runs[name]['after']['new']['score']:.4f}, ordinary "
                  f"{runs[name]['after']['ordinary']['score']:.4f}", flush=True)
    return results.data


def run_one(config: SimConfig, spec: AttributeSpec, pool: _Pool, tests: dict[str, Labelled], k: int,
            strategy: str) -> dict:
    """One simulated review and fine-tune, scored on the held-out scenes."""
    from lizaalert_tagger.training.run import STOPPED, train

    names = least_certain(pool.margins, k) if strategy == LEAST else random_photos(list(pool.margins), k, config.seed)
    review = simulated_review(names, pool.predicted, pool.truth, spec)
    folder = config.work / "runs" / f"k{k}-{strategy}-replay{config.replay}"
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted fine-tune starts again
    rows = _link_images(folder / "images", config, review.rows(), spec)
    write_labels(folder / "reviewed.csv", rows, spec)
    train_config = finetune_config(folder / "images", folder / "reviewed.csv", folder / "trained", config)
    print(f"{run_name(k, strategy, config.replay)}: lizaalert-train {' '.join(train_config.to_argv())}", flush=True)
    start = time.monotonic()
    result = train(train_config)
    if not result.finished:
        raise SystemExit(STOPPED)
    wall = time.monotonic() - start
    tuned = load_spec(folder / "trained" / "attributes.json")
    after, after_tuned = {}, {}
    for name, data in tests.items():
        logits = model_logits(folder / "trained" / "weights.pt", spec, data)
        after[name], after_tuned[name] = score_logits(logits, data, spec), score_logits(logits, data, tuned)
    return {
        "k": k, "strategy": strategy, "replay": config.replay, "photos": names,
        "corrected_photos": review.corrected_photos, "corrected_tags": review.corrected_tags,
        "mean_margin": round(sum(pool.margins[n] for n in names) / k, 4),
        "train_photos": result.metrics["train_photos"], "image_passes": result.metrics["image_passes"],
        "epochs": result.metrics["epochs"], "precision": result.metrics["precision"],
        "minutes": config.minutes, "train_seconds": result.metrics["train_seconds"], "wall_seconds": round(wall, 1),
        "train_command": ["lizaalert-train", *train_config.to_argv()],
        "after": after, "after_tuned_thresholds": after_tuned,
    }


def _link_images(images: Path, config: SimConfig, reviewed: list[tuple[str, dict[str, int]]],
                 spec: AttributeSpec) -> list[tuple[str, dict[str, int]]]:
    """``images/new`` (the new search) and ``images/replay`` (ordinary scenes) as links; the training rows."""
    images.mkdir(parents=True)
    (images / "new").symlink_to((config.work / "pool" / "images").resolve(), target_is_directory=True)
    rows = [(f"new/{name}", codes) for name, codes in reviewed]
    if config.replay:
        replay = config.work / replay_folder(config.replay)
        (images / "replay").symlink_to((replay / "images").resolve(), target_is_directory=True)
        rows += [(f"replay/{name}", codes) for name, codes in _read_truth(replay, spec).items()]
    return rows


# --- the docs' tables -----------------------------------------------------------------------------------------


def _before_after(before: dict, after: dict) -> str:
    return f"{before['score']:.3f} → {after['score']:.3f} ({after['score'] - before['score']:+.3f})"


def tables(data: dict) -> str:
    """``results.json`` as Markdown: the survey, then one row per fine-tune."""
    out = []
    machine = data.get("machine", {})
    if data.get("survey"):
        out += ["| setting | scenes | parent's score |", "|---|---|---|"]
        out += [f"| {name} | {s['count']} | {s['score']:.3f} |" for name, s in data["survey"].items()]
        out.append("")
    runs = data.get("runs", {})
    if runs:
        before = data["before"]
        out += ["| K | photos reviewed | ordinary scenes mixed in | tags corrected (in photos) | new setting: before → after "
                "| ordinary: before → after | new setting, thresholds re-tuned | training |",
                "|---|---|---|---|---|---|---|---|"]
        for run in sorted(runs.values(), key=lambda r: (r["replay"], r["k"], r["strategy"])):
            out.append(f"| {run['k']} | {STRATEGIES[run['strategy']]} | {run['replay']} | {run['corrected_tags']} "
                       f"({run['corrected_photos']}) | {_before_after(before['new'], run['after']['new'])} "
                       f"| {_before_after(before['ordinary'], run['after']['ordinary'])} "
                       f"| {run['after_tuned_thresholds']['new']['score']:.3f} "
                       f"| {run['train_seconds'] / 60:.1f} min, {run['epochs']} epochs, {run['precision']} |")
        out.append("")
        out.append(f"Held-out: {before['new']['count']} scenes of the new setting, {before['ordinary']['count']} "
                   f"ordinary ones. CPU: {machine.get('cpu')}, {machine.get('cores')} cores.")
    return "\n".join(out) if out else "no results yet"


# --- the command line -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    d = SimConfig(work=Path("."))
    parser = argparse.ArgumentParser(prog="lizaalert-review-sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (("survey", "score the parent weights on candidate settings"),
                       ("run", "simulate reviews and fine-tunes (resumable)"), ("table", "print WORK/results.json as tables")):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--work", type=Path, required=True, help="folder of scenes, runs and results.json")
        if name == "table":
            continue
        sub.add_argument("--weights", type=Path, default=d.weights, help="parent weights (default: %(default)s)")
        sub.add_argument("--spec", type=Path, default=d.spec, help="parent spec, with its thresholds (default: %(default)s)")
        sub.add_argument("--jobs", type=int, default=d.jobs, help="scene and decode processes (default: all cores)")
    survey_parser, run_parser = commands.choices["survey"], commands.choices["run"]
    survey_parser.add_argument("--count", type=int, default=300, help="scenes per setting (default: %(default)s)")
    add = run_parser.add_argument
    add("--weather", choices=("fog", "dim"), default=d.weather, help="the new search's setting (default: %(default)s)")
    add("--pool", type=int, default=d.pool, help="photos of the new search, tagged by the parent (default: %(default)s)")
    add("--test", type=int, default=d.test, help="held-out scenes of the new setting, and as many ordinary ones "
                                                 "(default: %(default)s)")
    add("--ks", type=int, nargs="+", default=list(d.ks), help="photos the reviewer corrects (default: %(default)s)")
    add("--strategies", nargs="+", choices=list(STRATEGIES), default=list(d.strategies),
        help="which photos: the least certain, or random ones as the control (default: %(default)s)")
    add("--replay", type=int, default=d.replay,
        help="ordinary scenes (4x the objects, as the default model's training set) mixed into each fine-tune, "
             "against forgetting (default: %(default)s)")
    add("--minutes", type=float, default=d.minutes, help="training time of each fine-tune (default: %(default)s)")
    add("--lr", type=float, default=d.lr, help="peak learning rate (default: %(default)s)")
    add("--batch-size", type=int, default=d.batch_size, help="(default: %(default)s)")
    add("--seed", type=int, default=d.seed, help="the random control's draw and the fine-tunes' seed (default: %(default)s)")
    return parser


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The ``run`` options as a config: each option is the field of the same name."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SimConfig)}
    return SimConfig(**{**values, "ks": tuple(args.ks), "strategies": tuple(args.strategies)})


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "table":
            print(tables(Results(args.work / RESULTS_FILE).data))
        elif args.command == "survey":
            survey(args.work, args.count, args.weights, args.spec, args.jobs or available_cores())
            print(tables({"survey": Results(args.work / RESULTS_FILE).data["survey"]}))
        else:
            try:
                config = config_from_args(args)
            except ValueError as e:
                parser.error(str(e))
            print(tables(simulate(config)))
    except (OSError, ValueError) as e:  # TrainingError is a ValueError
        print(f"lizaalert-review-sim: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
