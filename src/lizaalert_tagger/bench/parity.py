"""Accuracy parity of the fast variant against fp32 on held-out generated scenes.

    lizaalert-parity [--archive model_store/lizaalert_tagger.mar] [--variant int8] [--count 300] [--seed 1001]

Decodes the scenes with the serving preprocessing, runs the archive's model in
fp32 and in the variant (default: the precision its model-config.yaml serves),
and prints the share of tags (attribute values) on which the two agree and both
scores. Exit 1 if agreement < 99.5 % or the score drops by more than 0.005
(the project's bars for a fast variant).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from pathlib import Path
from lizaalert_tagger.common.paths import DEFAULT_ARCHIVE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lizaalert-parity", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE, help="(default: %(default)s)")
    parser.add_argument("--variant", choices=("bf16", "int8"), help="variant to compare with fp32 (default: the archive's precision)")
    parser.add_argument("--count", type=int, default=300, help="held-out scenes (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1001, help="scene seed, never used in training (default: %(default)s)")
    args = parser.parse_args(argv)

    import yaml

    from lizaalert_tagger.scenes import make_dataset
    from lizaalert_tagger.common.labels_csv import read_labels
    from lizaalert_tagger.common.scoring import score_codes
    from lizaalert_tagger.serving.settings import HandlerSettings
    from lizaalert_tagger.vision.inference import load_model
    from lizaalert_tagger.common.spec import load_spec
    from lizaalert_tagger.training.data import load_pixels
    from lizaalert_tagger.training.evaluation import predict_logits
    from lizaalert_tagger.vision.answers import codes_from_logits

    work = Path(tempfile.mkdtemp(prefix="lizaalert-parity-"))
    with zipfile.ZipFile(args.archive) as zf:
        zf.extractall(work / "model")
    settings = HandlerSettings.from_yaml(yaml.safe_load((work / "model" / "model-config.yaml").read_text()).get("handler"))
    variant = args.variant or settings.precision
    if variant == "fp32":
        print(f"{args.archive.name} serves fp32: nothing to compare (pass --variant bf16 or int8)")
        return 0
    spec = load_spec(work / "model" / "attributes.json")
    try:
        models = {name: load_model(work / "model", spec, name) for name in ("fp32", variant)}
    except (FileNotFoundError, ValueError) as e:
        print(f"lizaalert-parity: {e}", file=sys.stderr)
        return 2
    make_dataset(work / "scenes", args.count, args.seed, jobs=2, spec=spec)
    table = read_labels(work / "scenes" / "labels.csv", spec)
    pixels, kept, _ = load_pixels([work / "scenes" / "images" / r.filename for r in table.rows], spec, jobs=2)
    truth = {a.key: [table.rows[i].labels[a.key] for i in kept] for a in spec.attributes}
    codes = {name: codes_from_logits(predict_logits(model, pixels, spec, bf16=name == "bf16"), spec) for name, model in models.items()}
    total = sum(len(v) for v in codes["fp32"].values())
    same = sum(a == b for key in codes["fp32"] for a, b in zip(codes["fp32"][key], codes[variant][key]))
    scores = {name: score_codes(truth, c, spec).overall for name, c in codes.items()}
    agreement = same / total
    drop = scores["fp32"] - scores[variant]
    print(f"{len(kept)} held-out scenes (seed {args.seed}); {variant} agrees with fp32 on {agreement:.2%} of {total} tags "
          f"(>= 99.5 %); score fp32 {scores['fp32']:.4f}, {variant} {scores[variant]:.4f}, drop {drop:+.4f} (<= 0.005)")
    return 0 if agreement >= 0.995 and drop <= 0.005 else 1


if __name__ == "__main__":
    sys.exit(main())
