#!/usr/bin/env python3
"""Accuracy parity of the fast variant: bf16 (autocast) against fp32 on held-out generated scenes.

    python scripts/parity.py [--archive model_store/lizaalert_tagger.mar] [--count 300] [--seed 1001]

Decodes the scenes with the serving preprocessing, runs the archive's model in
fp32 and in bf16, and prints the share of tags (attribute values) on which the
two agree and both scores. Exit 1 if agreement < 99.5 % or the score drops by
more than 0.005 (the performance issue's bars).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from pathlib import Path

import _project  # noqa: F401
from _project import ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", type=Path, default=ROOT / "model_store" / "lizaalert_tagger.mar", help="(default: %(default)s)")
    parser.add_argument("--count", type=int, default=300, help="held-out scenes (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1001, help="scene seed, never used in training (default: %(default)s)")
    args = parser.parse_args(argv)

    import torch

    import make_scenes
    from labels_csv import read_labels
    from scoring import score_codes
    from tagger_model import load_tagger
    from tagger_spec import load_spec
    from train import codes_from_logits, load_pixels, predict_logits

    work = Path(tempfile.mkdtemp(prefix="lizaalert-parity-"))
    with zipfile.ZipFile(args.archive) as zf:
        zf.extractall(work / "model")
    spec = load_spec(work / "model" / "attributes.json")
    model = load_tagger(work / "model" / "weights.pt", spec).to(memory_format=torch.channels_last)
    make_scenes.main(["--out", str(work / "scenes"), "--count", str(args.count), "--seed", str(args.seed), "--quiet"])
    table = read_labels(work / "scenes" / "labels.csv", spec)
    pixels, kept, _ = load_pixels([work / "scenes" / "images" / r.filename for r in table.rows], spec, jobs=2)
    truth = {a.key: [table.rows[i].labels[a.key] for i in kept] for a in spec.attributes}
    codes = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        codes[name] = codes_from_logits(predict_logits(model, pixels, spec, bf16=bf16), spec)
    total = sum(len(v) for v in codes["fp32"].values())
    same = sum(a == b for key in codes["fp32"] for a, b in zip(codes["fp32"][key], codes["bf16"][key]))
    scores = {name: score_codes(truth, c, spec).overall for name, c in codes.items()}
    agreement = same / total
    print(f"{len(kept)} held-out scenes (seed {args.seed}); bf16 agrees with fp32 on {agreement:.2%} of {total} tags "
          f"(>= 99.5 %); score fp32 {scores['fp32']:.4f}, bf16 {scores['bf16']:.4f}, drop {scores['fp32'] - scores['bf16']:+.4f} (<= 0.005)")
    return 0 if agreement >= 0.995 and scores["fp32"] - scores["bf16"] <= 0.005 else 1


if __name__ == "__main__":
    sys.exit(main())
