"""Synthetic search-and-rescue photos: the training data of the default model.

No real photos or pretrained weights are available to the default build, so
this draws scenes whose *look* carries the attributes: time of day by the sky
and the light, season by the ground and the foliage, terrain by trees or
buildings, and each binary object as a silhouette (helicopter, car, drone,
horses, dog handler with dog, diver in water, two people hugging, Sherp; see
``scenes.plan.DRAWN_TAGS``). ``--spec`` chooses the attributes drawn.
Frames without sky, ground or either terrain give the "not visible" codes.

Every image ``i`` draws from ``numpy.random.default_rng([seed, i, stream])``,
so the output is the same bytes for the same seed whatever ``--jobs`` is.
A scene is planned first (labels, size, where each object goes: ``plan_scene``),
then rendered at a moderate resolution (shorter side <= 480), lit, noised and
upscaled to the photo size (``render_photo``) and saved as JPEG.

    lizaalert-scenes --out build/scenes --count 3000 --seed 0 --max-size 1024
    lizaalert-scenes --contact-sheet docs/contact_sheet.png
    lizaalert-scenes --out build/field --count 30 --max-size 1024 --exif-fraction 0.5   # photos for tagctl tag-folder
    lizaalert-scenes --out build/fog --count 1000 --seed 41 --max-size 1024 --weather fog   # a "new search"
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lizaalert_tagger.common.spec import load_spec
from lizaalert_tagger.scenes.dataset import frequency_table, make_dataset
from lizaalert_tagger.scenes.plan import DEFAULT_MAX_SIZE, DEFAULT_MIN_SIZE, MAX_BOOSTED_PROBABILITY, check_spec, default_min_size
from lizaalert_tagger.scenes.sheet import contact_sheet
from lizaalert_tagger.scenes.weather import CLEAR, WEATHER_CHOICES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="output directory: images/*.jpg and labels.csv")
    parser.add_argument("--count", type=int, default=3000, help="number of images (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="data set seed (default: %(default)s)")
    parser.add_argument(
        "--min-size",
        type=int,
        default=None,
        help=f"smallest long side of a photo in px (default: {DEFAULT_MIN_SIZE}, or --max-size if smaller)",
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=DEFAULT_MAX_SIZE,
        help="largest long side of a photo in px; smaller saves time (default: %(default)s)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default: %(default)s)")
    parser.add_argument(
        "--contact-sheet",
        type=Path,
        metavar="PNG",
        help="also write a 4x4 grid of 16 scenes with their tags (default: none)",
    )
    parser.add_argument("--spec", type=Path, default=None, help="attribute spec (default: handler/attributes.json)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--tag-boost", type=float, default=1.0,
                        help="multiply the binary tags' probabilities (training sets; capped at %s) (default: %%(default)s)" % MAX_BOOSTED_PROBABILITY)
    parser.add_argument("--exif-fraction", type=float, default=0.0,
                        help="share of photos that carry EXIF capture time and GPS, as phones and DJI drones "
                             "write them (0 to 1; deterministic per image) (default: %(default)s)")
    parser.add_argument("--weather", choices=WEATHER_CHOICES, default=CLEAR,
                        help="'fog': haze, densest far away; 'dim': underexposed and noisy; photos of a kind the "
                             "default model saw none of (docs/review-loop.md) (default: %(default)s, as before)")
    args = parser.parse_args(argv)
    if args.out is None and args.contact_sheet is None:
        parser.error("give --out DIR (the data set), --contact-sheet PNG, or both")
    min_size = args.min_size if args.min_size is not None else default_min_size(args.max_size)
    if not 16 <= min_size <= args.max_size:
        parser.error(f"expected 16 <= --min-size <= --max-size, got {min_size} and {args.max_size}")
    if args.count < 0 or args.jobs < 1:
        parser.error(f"expected --count >= 0 and --jobs >= 1, got {args.count} and {args.jobs}")
    if not 0.0 <= args.exif_fraction <= 1.0:
        parser.error(f"expected 0 <= --exif-fraction <= 1, got {args.exif_fraction}")
    spec = load_spec(args.spec) if args.spec else load_spec()
    try:
        check_spec(spec)
    except ValueError as e:
        parser.error(f"--spec: {e}")

    if args.out is not None:
        start = time.monotonic()
        rows = make_dataset(
            args.out, args.count, args.seed, min_size, args.max_size, args.jobs, spec, progress=not args.quiet,
            tag_boost=args.tag_boost, exif_fraction=args.exif_fraction, weather=args.weather,
        )
        elapsed = time.monotonic() - start
        print(
            f"wrote {len(rows)} images to {args.out / 'images'} and {args.out / 'labels.csv'} "
            f"in {elapsed:.1f} s ({len(rows) / max(elapsed, 1e-9):.1f} images/s, {args.jobs} jobs)"
        )
        print(frequency_table(rows, spec))
    if args.contact_sheet is not None:
        path = contact_sheet(args.contact_sheet, args.seed, spec)
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return 0
