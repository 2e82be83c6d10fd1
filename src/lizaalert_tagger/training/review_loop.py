#!/usr/bin/env python3
"""The review loop's own pieces (``docs/review-loop.md``): how certain a served answer is, which photos a
reviewer looks at first, the simulated reviewer of ``lizaalert-review-sim``, and the hold-back split.

    lizaalert-review-split RUN_DIR/reviewed.csv --out RUN_DIR/review --hold-back 0.2

writes ``train.csv`` (for ``lizaalert-train --labels``) and ``held_back.csv`` (for ``tagctl score``: the
old and the new version compared on reviewed photos that the new one never trained on), both in the
seed's CSV format.

No torch here: the margins (``common.certainty.decision_margin``, what the report's "least certain
first" sorts by) are read from served answers, so the report, a run folder's ``details.csv`` and the
in-process simulation rank photos by the same numbers.
"""
from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lizaalert_tagger.common.certainty import decision_margin
from lizaalert_tagger.common.labels_csv import read_labels, write_labels
from lizaalert_tagger.common.spec import DEFAULT_SPEC_PATH, AttributeSpec, load_spec

TRAIN_CSV = "train.csv"
HELD_BACK_CSV = "held_back.csv"
LabelRows = list[tuple[str, dict[str, int]]]


def answer_margin(answer: Mapping, spec: AttributeSpec) -> float:
    """``common.certainty.decision_margin`` of one served answer (``vision.answers.decode_logits``'s shape)."""
    attributes = answer["attributes"]
    return decision_margin(spec.answer_codes(answer), {a.key: attributes[a.key].get("score") for a in spec.attributes},
                           spec)


def least_certain(margins: Mapping[str, float], count: int) -> list[str]:
    """The ``count`` photos with the smallest margins, least certain first (ties by name)."""
    _check_count(count, len(margins))
    return sorted(margins, key=lambda name: (margins[name], name))[:count]


def random_photos(names: Sequence[str], count: int, seed: int) -> list[str]:
    """``count`` photos drawn at random (seeded); a larger ``count`` with the same seed keeps the smaller's photos."""
    _check_count(count, len(names))
    order = sorted(names)
    random.Random(seed).shuffle(order)
    return order[:count]


def _check_count(count: int, available: int) -> None:
    if not 0 < count <= available:
        raise ValueError(f"expected 1 to {available} photos to review, got {count}")


@dataclass(frozen=True)
class Review:
    """What a reviewer sent back: the codes of each reviewed photo, and which attributes they changed."""

    labels: dict[str, dict[str, int]]  # photo -> its reviewed codes, in review order
    changed: dict[str, list[str]]  # photo -> the attributes whose served code the reviewer corrected

    @property
    def corrected_photos(self) -> int:
        return sum(1 for keys in self.changed.values() if keys)

    @property
    def corrected_tags(self) -> int:
        return sum(len(keys) for keys in self.changed.values())

    def rows(self) -> LabelRows:
        """The reviewed photos as ``write_labels`` rows (what ``reviewed.csv`` holds)."""
        return [(name, dict(codes)) for name, codes in self.labels.items()]


def simulated_review(names: Sequence[str], predicted: Mapping[str, Mapping[str, int]],
                     truth: Mapping[str, Mapping[str, int]], spec: AttributeSpec) -> Review:
    """The simulation's reviewer: looks at each of ``names`` and leaves it with its true codes, correcting
    every served code that was wrong and confirming the others."""
    unknown = [n for n in names if n not in predicted or n not in truth]
    if unknown:
        raise ValueError(f"{len(unknown)} photos to review have no served answer or no truth (e.g. {unknown[0]})")
    labels, changed = {}, {}
    for name in names:
        labels[name] = {a.key: truth[name][a.key] for a in spec.attributes}
        changed[name] = [a.key for a in spec.attributes if predicted[name][a.key] != truth[name][a.key]]
    return Review(labels, changed)


def hold_back(rows: LabelRows, fraction: float, seed: int = 0) -> tuple[LabelRows, LabelRows]:
    """Split reviewed photos into training rows and held-back rows (a seeded ``fraction``, at least one
    photo each side), each in the input's order."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"expected a held-back fraction between 0 and 1, got {fraction}")
    if len(rows) < 2:
        raise ValueError(f"expected at least 2 reviewed photos to split, got {len(rows)}")
    held_count = min(len(rows) - 1, max(1, round(len(rows) * fraction)))
    held = set(random_photos([name for name, _ in rows], held_count, seed))
    return [r for r in rows if r[0] not in held], [r for r in rows if r[0] in held]


def split_reviewed(reviewed: Path, out: Path, fraction: float, seed: int, spec: AttributeSpec) -> tuple[int, int]:
    """``out/train.csv`` and ``out/held_back.csv`` from ``reviewed`` (the seed's CSV format); the row counts.
    Rows the reader cannot use are reported on stderr and left out."""
    table = read_labels(reviewed, spec)
    if table.problems:
        print(f"warning: {reviewed}: left out {len(table.problems)} rows (e.g. {table.problems[0]})", file=sys.stderr)
    train_rows, held_rows = hold_back(table.pairs(), fraction, seed)
    out.mkdir(parents=True, exist_ok=True)
    write_labels(out / TRAIN_CSV, train_rows, spec)
    write_labels(out / HELD_BACK_CSV, held_rows, spec)
    return len(train_rows), len(held_rows)


def split_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lizaalert-review-split", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reviewed", type=Path, help="reviewed.csv (the seed's CSV format) of a run folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for train.csv and held_back.csv")
    parser.add_argument("--hold-back", type=float, default=0.2,
                        help="share of the reviewed photos kept out of training, for scoring (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC_PATH, help="attribute spec (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        trained, held = split_reviewed(args.reviewed, args.out, args.hold_back, args.seed, load_spec(args.spec))
    except (OSError, ValueError) as e:
        print(f"lizaalert-review-split: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / TRAIN_CSV} ({trained} photos) and {args.out / HELD_BACK_CSV} ({held} photos)")
    return 0


if __name__ == "__main__":
    sys.exit(split_main())
