#!/usr/bin/env python3
"""Build the default model archive, model_store/lizaalert_tagger.mar, if it is missing.

Until the trained default lands, the default model is *untrained*: weights
drawn from a fixed seed (deterministic tensors), served as version
``0.1-untrained`` so that every answer says what it is. Later runs reuse the
archive; ``--force`` rebuilds it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _project  # noqa: F401
from _project import ROOT
from archive import MODEL_NAME, build_archive

DEFAULT_ARCHIVE = ROOT / "model_store" / f"{MODEL_NAME}.mar"
UNTRAINED_VERSION = "0.1-untrained"


def make_untrained_weights(out: Path, seed: int = 0) -> Path:
    """Seeded random initialisation of the spec's model, saved as a state dict."""
    import torch
    from tagger_model import LizaAlertTagger

    torch.manual_seed(seed)
    model = LizaAlertTagger()
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="rebuild even if the archive exists")
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build" / "default", help="work directory (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the untrained weights (default: %(default)s)")
    args = parser.parse_args(argv)
    if DEFAULT_ARCHIVE.exists() and not args.force:
        print(f"default model: reusing {DEFAULT_ARCHIVE.relative_to(ROOT)}")
        return 0
    start = time.monotonic()
    weights = make_untrained_weights(args.build_dir / "weights.pt", args.seed)
    path = build_archive(weights, UNTRAINED_VERSION, file_name=DEFAULT_ARCHIVE.name)
    print(f"default model: built {path.relative_to(ROOT)} (UNTRAINED, version {UNTRAINED_VERSION}) in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
