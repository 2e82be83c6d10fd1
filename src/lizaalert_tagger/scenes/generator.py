#!/usr/bin/env python3
"""Synthetic search-and-rescue photos: the training data of the default model.

No real photos or pretrained weights are available to the default build, so
this draws scenes whose *look* carries the attributes: time of day by the sky
and the light, season by the ground and the foliage, terrain by trees or
buildings, and the eight binary objects as silhouettes (helicopter, car, drone,
horses, dog handler with dog, diver in water, two people hugging, Sherp).
Frames without sky, ground or either terrain give the "not visible" codes.

Every image ``i`` draws from ``numpy.random.default_rng([seed, i, stream])``,
so the output is the same bytes for the same seed whatever ``--jobs`` is.
A scene is planned first (labels, size, where each object goes: ``plan_scene``),
then rendered at a moderate resolution (shorter side <= 480), lit, noised and
upscaled to the photo size (``render_photo``) and saved as JPEG.

    python scripts/make_scenes.py --out build/scenes --count 3000 --seed 0 --max-size 1024
    python scripts/make_scenes.py --contact-sheet docs/contact_sheet.png
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import NormalDist
import numpy as np
from lizaalert_tagger.labels_csv import write_labels
from PIL import Image, ImageChops, ImageDraw, ImageFont
from lizaalert_tagger.spec import AttributeSpec, load_spec

# --- what the generator knows about the spec's codes -----------------------------

TIME_NONE, DAY, NIGHT, DUSK = 0, 1, 2, 3
SEASON_NONE, WINTER, SPRING, SUMMER, AUTUMN = 0, 1, 2, 3, 4
TERRAIN_NONE, FOREST, CITY = 0, 1, 2
# binary attribute key -> the object kind drawn for it
OBJECT_FOR_TAG = {
    "sherp": "sherp",
    "car": "car",
    "aviation": "helicopter",
    "drone": "drone",
    "horses": "horse",
    "dog_handler": "dog_handler",
    "diver": "diver",
    "hugs": "hugs",
}
EXPECTED_CODES = {"time_of_day": (0, 1, 2, 3), "season": (0, 1, 2, 3, 4), "terrain": (0, 1, 2)}

RENDER_SHORT = 480  # scenes are drawn at this shorter side (or the photo's, if smaller), then resized
DEFAULT_MIN_SIZE = 640
DEFAULT_MAX_SIZE = 4000
MIN_OBJECT_FRACTION = 0.06  # of the shorter side: still ~15 px after the model's 256x256 resize

# Framings: what part of the world the photo shows. Time of day needs sky,
# season needs ground or foliage, terrain needs trees or buildings.
FRAMINGS: dict[str, float] = {
    "wide": 0.66,  # sky, horizon, ground: field, forest or city
    "sky": 0.06,  # looking up: sky only
    "water": 0.06,  # open water to the horizon
    "close_ground": 0.13,  # no sky: ground fills the frame
    "close_forest": 0.035,  # no sky: trunks and canopy
    "close_city": 0.025,  # no sky: a facade and pavement
    "close_water": 0.03,  # no sky: water surface
}
TIME_OF_SKY = {DAY: 0.75, NIGHT: 0.15, DUSK: 0.10}  # when sky is visible (SEED.md: 60/12/8 of 80)
SEASONS = {WINTER: 0.28, SPRING: 0.20, SUMMER: 0.30, AUTUMN: 0.22}
WIDE_TERRAIN = {TERRAIN_NONE: 0.34, FOREST: 0.52, CITY: 0.14}
CLOSE_CITY_SEASON = {SEASON_NONE: 0.5, WINTER: 0.25, SUMMER: 0.1, AUTUMN: 0.15}
# Per framing, the chance of each binary tag (the kinds that cannot appear there are absent).
TAG_PROBABILITY: dict[str, dict[str, float]] = {
    "wide": {
        "sherp": 0.07,
        "car": 0.09,
        "aviation": 0.06,
        "drone": 0.05,
        "horses": 0.08,
        "dog_handler": 0.07,
        "diver": 0.035,
        "hugs": 0.06,
    },
    "sky": {"aviation": 0.5, "drone": 0.4},
    "water": {"diver": 0.45, "aviation": 0.15, "drone": 0.1},
    "close_ground": {"sherp": 0.07, "car": 0.07, "drone": 0.08, "horses": 0.07, "dog_handler": 0.12, "hugs": 0.12},
    "close_forest": {"sherp": 0.03, "car": 0.03, "drone": 0.04, "horses": 0.06, "dog_handler": 0.15, "hugs": 0.1},
    "close_city": {"car": 0.3, "drone": 0.05, "dog_handler": 0.1, "hugs": 0.12},
    "close_water": {"diver": 0.5},
}
CITY_CAR_PROBABILITY = 0.28
# --tag-boost multiplies the object probabilities (for training sets: more
# positive examples of the rare tags per second of training); capped here.
MAX_BOOSTED_PROBABILITY = 0.6

# Object extents in their own units (x right, y up; ground objects stand at y=0,
# flying ones are centred on 0). One unit is the object's size.
EXTENTS: dict[str, tuple[float, float, float, float]] = {
    "car": (-0.51, 0.51, -0.01, 0.47),
    "sherp": (-0.52, 0.52, -0.015, 0.65),
    "helicopter": (-0.67, 0.67, -0.21, 0.23),
    "drone": (-0.6, 0.6, -0.5, 0.5),
    "horse": (-0.64, 0.9, 0.0, 1.4),
    "dog_handler": (-0.43, 0.69, 0.0, 1.0),
    "hugs": (-0.34, 0.34, 0.0, 1.02),
    "diver": (-0.7, 0.7, -0.16, 0.48),
    "person": (-0.22, 0.22, 0.0, 1.0),
    "bird": (-0.55, 0.55, -0.15, 0.2),
}
SIZE_RANGE: dict[str, tuple[float, float]] = {  # object unit, as a fraction of the shorter side
    "car": (0.13, 0.65),
    "sherp": (0.13, 0.6),
    "helicopter": (0.14, 0.75),
    "drone": (0.09, 0.4),
    "horse": (0.11, 0.55),
    "dog_handler": (0.13, 0.7),
    "hugs": (0.12, 0.7),
    "diver": (0.22, 0.7),
    "person": (0.1, 0.6),
    "bird": (0.025, 0.06),
}
GROUND_KINDS = ("car", "sherp", "horse", "dog_handler", "hugs", "person")
FLYING_KINDS = ("helicopter", "drone", "bird")


def check_spec(spec: AttributeSpec) -> None:
    """Refuse a spec whose keys or codes are not the ones this generator draws."""
    for key, codes in EXPECTED_CODES.items():
        if tuple(sorted(spec[key].codes)) != codes:
            raise ValueError(f"make_scenes draws {key} codes {codes}, the spec has {spec[key].codes}")
    for key in OBJECT_FOR_TAG:
        if not spec[key].is_binary:
            raise ValueError(f"make_scenes draws {key} as a binary tag, the spec says {spec[key].kind}")
    unknown = set(spec.keys) - set(EXPECTED_CODES) - set(OBJECT_FOR_TAG)
    if unknown:
        raise ValueError(f"the spec has attributes make_scenes cannot draw: {sorted(unknown)}")


# --- planning: labels, size and object positions ----------------------------------

STREAM_PLAN, STREAM_BACKGROUND, STREAM_FINISH = 0, 1, 2
STREAM_OBJECT, STREAM_OCCLUDER = 1000, 2000


def stream_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """The generator of one image's stream: independent of every other image and stream."""
    return np.random.default_rng([seed, index, stream])


def _choice(rng: np.random.Generator, table: dict) -> object:
    keys = list(table)
    p = np.asarray([table[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _sample_framing_and_labels(rng: np.random.Generator, tag_boost: float = 1.0) -> tuple[str, dict[str, int]]:
    framing = str(_choice(rng, FRAMINGS))
    sky = framing in ("wide", "sky", "water")
    time_of_day = int(_choice(rng, TIME_OF_SKY)) if sky else TIME_NONE
    if framing in ("wide", "close_ground", "close_forest"):
        season = int(_choice(rng, SEASONS))
    elif framing == "close_city":
        season = int(_choice(rng, CLOSE_CITY_SEASON))
    else:
        season = SEASON_NONE
    terrain = {"wide": None, "close_forest": FOREST, "close_city": CITY}.get(framing, TERRAIN_NONE)
    if terrain is None:
        terrain = int(_choice(rng, WIDE_TERRAIN))
    labels = {"time_of_day": time_of_day, "season": season, "terrain": terrain}
    probabilities = dict(TAG_PROBABILITY[framing])
    if framing == "wide" and terrain == CITY:
        probabilities.update(car=CITY_CAR_PROBABILITY, horses=0.03, sherp=0.02)
    draws = rng.random(len(OBJECT_FOR_TAG))  # always the same number of draws
    for draw, key in zip(draws, OBJECT_FOR_TAG):
        labels[key] = int(draw < min(MAX_BOOSTED_PROBABILITY, tag_boost * probabilities.get(key, 0.0)))
    return framing, labels


def sample_labels(rng: np.random.Generator) -> dict[str, int]:
    """The labels of one scene, without rendering it (the first draws of ``plan_scene``)."""
    return _sample_framing_and_labels(rng)[1]


def sample_size(
    rng: np.random.Generator, min_size: int = DEFAULT_MIN_SIZE, max_size: int = DEFAULT_MAX_SIZE
) -> tuple[int, int]:
    """A photo size (width, height): long side log-uniform in [min_size, max_size], 4:3 or 3:2,
    landscape or portrait; the short side is at least 3/4 of ``min_size`` (640 -> 480)."""
    aspect, portrait, u = (4 / 3 if rng.random() < 0.8 else 3 / 2), rng.random() < 0.35, rng.random()
    lo = min(max_size, max(min_size, math.ceil(0.75 * min_size * aspect)))
    long_side = round(math.exp(math.log(lo) + u * (math.log(max_size) - math.log(lo))))
    short_side = round(long_side / aspect)
    return (short_side, long_side) if portrait else (long_side, short_side)


@dataclass(frozen=True)
class Placement:
    """One drawn object: anchor (feet/wheels of ground objects, centre of flying ones) as
    fractions of the width and height, its unit as a fraction of the shorter side."""

    kind: str
    x: float
    y: float
    size: float
    flip: int
    angle: float
    variant: int
    stream: int


@dataclass(frozen=True)
class Occluder:
    """Something in front of an object (a bush or snowdrift, a tree trunk): box in fractions."""

    kind: str
    box: tuple[float, float, float, float]
    stream: int


@dataclass(frozen=True)
class ScenePlan:
    seed: int
    index: int
    framing: str
    labels: dict[str, int]
    size: tuple[int, int]  # the photo's (width, height)
    horizon: float | None  # fraction of the height; None when no horizon is in view
    lake: tuple[float, float, float, float] | None  # centre x, y, radii x, y (fractions)
    road: bool
    objects: tuple[Placement, ...]
    occluders: tuple[Occluder, ...]
    quality: int
    noise: float
    blur: float
    exposure: float

    def without(self, kind: str) -> ScenePlan:
        """The same scene without the objects of one kind (for tests and inspection)."""
        return replace(self, objects=tuple(o for o in self.objects if o.kind != kind))


class Frame:
    """Maps an object's local units (y up) to pixels: anchor, scale, mirror and tilt."""

    __slots__ = ("cos", "flip", "s", "sin", "x", "y")

    def __init__(self, x: float, y: float, s: float, flip: int = 1, angle: float = 0.0) -> None:
        self.x, self.y, self.s, self.flip = x, y, s, flip
        self.cos, self.sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))

    def pts(self, local: Sequence[tuple[float, float]]) -> list[float]:
        """Flat pixel coordinates [x0, y0, x1, y1, ...] of local points (plain Python: a
        polygon has a handful of points, and numpy's per-call overhead would dominate)."""
        s, ox, oy, flip = self.s, self.x, self.y, self.flip
        out: list[float] = []
        if self.sin:
            c, si = self.cos, self.sin
            for x, y in local:
                x *= flip
                out.append(ox + (x * c - y * si) * s)
                out.append(oy - (x * si + y * c) * s)
        else:
            fs = flip * s
            for x, y in local:
                out.append(ox + x * fs)
                out.append(oy - y * s)
        return out

    def at(self, x: float, y: float, scale: float = 1.0, flip: int = 1) -> Frame:
        """A child frame anchored at a local point (no tilt)."""
        px = self.pts([(x, y)])
        return Frame(px[0], px[1], self.s * scale, self.flip * flip)


def object_bbox(placement: Placement, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) that holds the drawn object on a ``width`` x ``height`` canvas."""
    xmin, xmax, ymin, ymax = EXTENTS[placement.kind]
    f = Frame(
        placement.x * width, placement.y * height, placement.size * min(width, height), placement.flip, placement.angle
    )
    p = np.asarray(f.pts([(xmin, ymin), (xmin, ymax), (xmax, ymin), (xmax, ymax)])).reshape(-1, 2)
    return (math.floor(p[:, 0].min()), math.floor(p[:, 1].min()), math.ceil(p[:, 0].max()), math.ceil(p[:, 1].max()))


def _frac_bbox(
    kind: str, x: float, y: float, size: float, w: int, h: int, flip: int = 1, angle: float = 0.0
) -> np.ndarray:
    x0, y0, x1, y1 = object_bbox(Placement(kind, x, y, size, flip, angle, 0, 0), w, h)
    return np.array([x0 / w, y0 / h, x1 / w, y1 / h])


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / max(smaller, 1e-9)


def plan_scene(
    seed: int, index: int, min_size: int = DEFAULT_MIN_SIZE, max_size: int = DEFAULT_MAX_SIZE, tag_boost: float = 1.0
) -> ScenePlan:
    """Decide everything about image ``index`` that its labels depend on."""
    rng = stream_rng(seed, index, STREAM_PLAN)
    framing, labels = _sample_framing_and_labels(rng, tag_boost)
    photo_size = sample_size(rng, min_size, max_size)
    w, h = photo_size
    aspect = w / h  # fractions of the shorter side -> of width/height
    sx, sy = (1.0, aspect) if w < h else (1.0 / aspect, 1.0)  # size fraction * sx = fraction of width

    horizon = None
    if framing == "wide":
        horizon = float(rng.uniform(0.3, 0.62))
    elif framing == "water":
        horizon = float(rng.uniform(0.3, 0.6))
    ground_top = {"close_ground": 0.3, "close_forest": 0.55, "close_city": 0.72, "close_water": 0.2}.get(
        framing, horizon
    )

    placed: list[np.ndarray] = []
    objects: list[Placement] = []
    stream = STREAM_OBJECT

    def sized(kind: str, t: float | None = None) -> float:
        lo, hi = SIZE_RANGE[kind]
        if t is None:  # log-uniform: small objects as often as large ones
            return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        return float(max(lo, min(hi, (lo + (hi - lo) * t**1.3) * rng.uniform(0.75, 1.15))))

    def add(
        kind: str,
        x: float,
        y: float,
        size: float,
        flip: int | None = None,
        angle: float = 0.0,
        variant: int | None = None,
        force: bool = False,
    ) -> bool:
        nonlocal stream
        flip = flip if flip is not None else (1 if rng.random() < 0.5 else -1)
        variant = variant if variant is not None else int(rng.integers(0, 4))
        box = _frac_bbox(kind, x, y, size, w, h, flip, angle)
        if not force and any(_overlap(box, other) > 0.35 for other in placed):
            return False
        placed.append(box)
        objects.append(
            Placement(kind, round(x, 5), round(y, 5), round(size, 5), flip, round(angle, 3), variant, stream)
        )
        stream += 1
        return True

    def ground_spot(kind: str) -> tuple[float, float, float]:
        top = ground_top if ground_top is not None else 0.5
        y = float(rng.uniform(top + 0.06 * (1 - top), 0.98))
        t = (y - top) / max(1e-6, 1 - top)
        size = sized(kind, t if framing == "wide" else None)
        return in_frame_x(kind, size), y, size

    def in_frame_x(kind: str, size: float) -> float:
        """An anchor that keeps most (~85 %) of the object's width in the frame."""
        reach = max(-EXTENTS[kind][0], EXTENTS[kind][1]) * size * sx
        lo, hi = max(0.04, reach * 0.7), min(0.96, 1 - reach * 0.7)
        return float(rng.uniform(lo, hi)) if lo < hi else 0.5

    def sky_spot(kind: str) -> tuple[float, float, float]:
        size = sized(kind)
        if framing == "sky" or horizon is None:
            y = float(rng.uniform(0.15, 0.85))
        else:
            y = float(rng.uniform(0.08, max(0.1, horizon - 0.05)))
        return in_frame_x(kind, size), y, size

    def place(kind: str, spot: Callable[[str], tuple[float, float, float]], **kw) -> None:
        for attempt in range(12):
            x, y, size = spot(kind)
            if add(kind, x, y, size, force=attempt == 11, **kw):
                return

    lake = None
    if labels["diver"]:
        if framing == "wide":
            size = sized("diver", None) * 0.8
            rx = max(float(rng.uniform(0.18, 0.4)), 0.75 * size * sx)
            ry = max(float(rng.uniform(0.06, 0.14)), 0.4 * size * sy)
            cy = float(rng.uniform(min(0.97, horizon + ry + 0.03), max(horizon + ry + 0.03, 0.98 - 0.4 * ry)))
            cx = float(rng.uniform(max(rx * 0.7, 0.2), min(1 - rx * 0.7, 0.8)))
            lake = (cx, cy, rx, ry)
            add(
                "diver",
                cx + float(rng.uniform(-0.2, 0.2)) * rx,
                cy + float(rng.uniform(-0.1, 0.25)) * ry,
                size,
                force=True,
            )
        else:
            top = (horizon or 0.0) + 0.08
            place(
                "diver",
                lambda k: (float(rng.uniform(0.2, 0.8)), float(rng.uniform(top + 0.1 * (1 - top), 0.85)), sized(k)),
            )
    elif framing == "wide" and labels["terrain"] != CITY and rng.random() < 0.12:
        lake = (
            float(rng.uniform(0.25, 0.75)),
            float(rng.uniform(horizon + 0.12, 0.9)),
            float(rng.uniform(0.15, 0.4)),
            float(rng.uniform(0.05, 0.12)),
        )

    road = framing == "wide" and labels["terrain"] == CITY and rng.random() < 0.8
    if labels["aviation"]:
        if framing == "wide" and rng.random() < 0.2:  # landed

            def landed_spot(kind: str) -> tuple[float, float, float]:
                x, y, size = ground_spot(kind)
                return x, y - 0.2 * size * sy, size  # the anchor is the centre; skids on the ground

            place("helicopter", landed_spot, angle=0.0)
        else:
            place("helicopter", sky_spot, angle=float(rng.uniform(-12, 8)))
    if labels["drone"]:
        place(
            "drone",
            sky_spot
            if framing in ("wide", "sky", "water")
            else (lambda k: (float(rng.uniform(0.15, 0.85)), float(rng.uniform(0.15, 0.75)), sized(k))),
        )
    for key in ("sherp", "car", "horses", "dog_handler", "hugs"):
        if labels[key]:
            kind = OBJECT_FOR_TAG[key]
            copies = 1 + int(rng.random() < 0.35) + int(rng.random() < 0.15) if key in ("car", "horses") else 1
            for _ in range(copies):
                place(kind, ground_spot)
    # Distractors: lone people (not hugging, no dog) and birds, so that neither tag means "someone".
    if framing not in ("sky", "water", "close_water") and rng.random() < 0.25:
        for _ in range(int(rng.integers(1, 4))):
            place("person", ground_spot)
    if framing in ("wide", "sky", "water") and rng.random() < 0.15:
        for _ in range(int(rng.integers(1, 6))):
            place("bird", sky_spot)

    occluders: list[Occluder] = []
    for k, placement in enumerate(objects):
        if placement.kind in GROUND_KINDS and rng.random() < 0.2:
            x0, y0, x1, y1 = placed[k]
            bw, bh = x1 - x0, y1 - y0
            if framing in ("close_forest",) or (labels["terrain"] == FOREST and rng.random() < 0.4):
                cx = float(rng.uniform(x0 + 0.2 * bw, x1 - 0.2 * bw))
                half = float(rng.uniform(0.06, 0.12)) * bw
                occluders.append(
                    Occluder("trunk", (cx - half, -0.05, cx + half, min(1.05, y1 + 0.1 * bh)), STREAM_OCCLUDER + k)
                )
            else:
                left = x0 + float(rng.uniform(-0.3, 0.5)) * bw
                occluders.append(
                    Occluder(
                        "bush",
                        (
                            left,
                            y1 - float(rng.uniform(0.2, 0.45)) * bh,
                            left + float(rng.uniform(0.4, 0.8)) * bw,
                            y1 + 0.04 * bh,
                        ),
                        STREAM_OCCLUDER + k,
                    )
                )
    night = labels["time_of_day"] == NIGHT
    return ScenePlan(
        seed=seed,
        index=index,
        framing=framing,
        labels=labels,
        size=photo_size,
        horizon=horizon,
        lake=lake,
        road=road,
        objects=tuple(objects),
        occluders=tuple(occluders),
        quality=int(rng.integers(60, 96)),
        noise=float(rng.uniform(3.0, 9.0) if night else rng.uniform(1.0, 5.0)),
        blur=float(rng.uniform(0.4, 1.3)) if rng.random() < 0.3 else 0.0,
        exposure=float(rng.uniform(0.88, 1.12)),
    )


# --- drawing helpers -----------------------------------------------------------------

_UNIT_CIRCLE = [(math.cos(2 * math.pi * k / 24), math.sin(2 * math.pi * k / 24)) for k in range(24)]


def _ellipse_pts(cx: float, cy: float, rx: float, ry: float, upper_half: bool = False) -> list[tuple[float, float]]:
    unit = _UNIT_CIRCLE[:13] if upper_half else _UNIT_CIRCLE
    return [(cx + rx * c, cy + ry * s) for c, s in unit]


Color = tuple[int, int, int] | tuple[int, int, int, int]


def _rgba(c: Color) -> tuple[int, int, int, int]:
    return (int(c[0]), int(c[1]), int(c[2]), int(c[3]) if len(c) > 3 else 255)


def jitter(rng: np.random.Generator, color: Color, amount: float = 12.0) -> tuple[int, int, int]:
    c = np.clip(np.asarray(color[:3], dtype=np.float64) + rng.normal(0, amount, 3), 0, 255)
    return int(c[0]), int(c[1]), int(c[2])


def pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(0, len(options)))]


class Painter:
    """Draws on the canvas and, alongside, on the emission mask: emissive pixels (sky, lamps,
    lit windows) keep their colour when the scene's light is applied, the others are lit."""

    def __init__(self, canvas: Image.Image, emission: Image.Image, emissive_bottom: float = -1.0) -> None:
        self.draw = ImageDraw.Draw(canvas, "RGBA")
        self.emit = ImageDraw.Draw(emission)
        # Nothing below this row is emissive yet, so opaque shapes there need not clear the mask.
        self.emissive_bottom = emissive_bottom

    def _mask(self, pts: list[float], emissive: bool | None) -> None:
        if emissive is None:
            return
        if emissive:
            self.emissive_bottom = max(self.emissive_bottom, max(pts[1::2]))
            self.emit.polygon(pts, fill=255)
        elif min(pts[1::2]) <= self.emissive_bottom:
            self.emit.polygon(pts, fill=0)

    def poly_px(self, pts: list[float], fill: Color, emissive: bool | None = False) -> None:
        self.draw.polygon(pts, fill=_rgba(fill))
        self._mask(pts, emissive)

    def poly(self, f: Frame, local, fill: Color, emissive: bool | None = False) -> None:
        self.poly_px(f.pts(local), fill, emissive)

    def ellipse(
        self, f: Frame, cx: float, cy: float, rx: float, ry: float, fill: Color, emissive: bool | None = False
    ) -> None:
        self.poly(f, _ellipse_pts(cx, cy, rx, ry), fill, emissive)

    def bar(
        self,
        f: Frame,
        p: tuple[float, float],
        q: tuple[float, float],
        width: float,
        fill: Color,
        emissive: bool | None = False,
    ) -> None:
        dx, dy = q[0] - p[0], q[1] - p[1]
        n = math.hypot(dx, dy) or 1.0
        ox, oy = -dy / n * width / 2, dx / n * width / 2
        self.poly(
            f,
            [(p[0] + ox, p[1] + oy), (q[0] + ox, q[1] + oy), (q[0] - ox, q[1] - oy), (p[0] - ox, p[1] - oy)],
            fill,
            emissive,
        )

    def rect(
        self, f: Frame, x0: float, y0: float, x1: float, y1: float, fill: Color, emissive: bool | None = False
    ) -> None:
        self.poly(f, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill, emissive)

    def rect_px(self, box: tuple[float, float, float, float], fill: Color, emissive: bool | None = False) -> None:
        self.draw.rectangle(box, fill=_rgba(fill))
        if emissive:
            self.emissive_bottom = max(self.emissive_bottom, box[3])
            self.emit.rectangle(box, fill=255)
        elif emissive is not None and box[1] <= self.emissive_bottom:
            self.emit.rectangle(box, fill=0)

    def ring_px(self, box: tuple[float, float, float, float], outline: Color, width: int) -> None:
        self.draw.ellipse(box, outline=_rgba(outline), width=max(1, width))


def value_noise(rng: np.random.Generator, h: int, w: int, cell_x: float, cell_y: float | None = None) -> np.ndarray:
    """Smooth noise in [0, 1): a coarse random grid resized bilinearly to (h, w)."""
    cell_y = cell_y or cell_x
    gh, gw = max(2, int(h / cell_y) + 2), max(2, int(w / cell_x) + 2)
    grid = rng.integers(0, 256, (gh, gw), dtype=np.uint8)  # 8-bit: resizes several times faster than float
    return np.asarray(
        Image.fromarray(grid, "L").resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32
    ) * np.float32(1 / 255)


def _smoothstep(x: np.ndarray, edge: float, soft: float = 0.06) -> np.ndarray:
    return np.clip((x - edge) / soft, 0.0, 1.0)


def _mix(a: np.ndarray, color: Sequence[float], m: np.ndarray) -> np.ndarray:
    return a + (np.asarray(color, dtype=np.float32) - a) * m[..., None]


def _gradient(rows: int, stops: Sequence[tuple[float, Sequence[float]]]) -> np.ndarray:
    """(rows, 1, 3) vertical gradient through colour stops at fractions of the height."""
    t = (np.arange(rows, dtype=np.float32) + 0.5) / max(rows, 1)
    pos = [p for p, _ in stops]
    return np.stack([np.interp(t, pos, [c[i] for _, c in stops]) for i in range(3)], axis=-1)[:, None, :].astype(
        np.float32
    )


# --- the scene's context -------------------------------------------------------------


@dataclass
class Ctx:
    w: int
    h: int
    time: int
    season: int
    terrain: int
    framing: str
    horizon_px: int | None
    sky_horizon: tuple[float, float, float]
    water: tuple[int, int, int]

    @property
    def lights_on(self) -> bool:
        return self.time in (NIGHT, DUSK)

    @property
    def short(self) -> int:
        return min(self.w, self.h)


SNOW = (236, 240, 247)
FOLIAGE = {
    SPRING: [(150, 205, 85), (170, 215, 100), (130, 190, 75)],
    SUMMER: [(40, 105, 38), (52, 120, 45), (30, 88, 32)],
    AUTUMN: [(215, 130, 35), (235, 190, 45), (190, 75, 30), (200, 160, 50)],
}
CONIFER = [(24, 66, 36), (30, 78, 42), (20, 56, 34)]


# --- background ---------------------------------------------------------------------


def _sky(rng: np.random.Generator, ctx: Ctx, rows: int, w: int, short: float) -> np.ndarray:
    """Sky pixels (rows, w, 3) for the time of day, sun and glow included; ``short`` is the
    shorter side of the array's image (for the sun's size)."""
    if ctx.time == NIGHT:
        top, horizon_c = jitter(rng, (6, 9, 24), 3), jitter(rng, (26, 36, 66), 6)
        if ctx.terrain == CITY:
            horizon_c = jitter(rng, (70, 55, 60), 8)  # light pollution
        sky = np.broadcast_to(_gradient(rows, [(0, top), (1, horizon_c)]), (rows, w, 3)).copy()
    elif ctx.time == DUSK:
        top = jitter(rng, (45, 45, 105), 10)
        mid = jitter(rng, (205, 110, 140), 15)
        low = jitter(rng, (255, 165, 75), 10)
        sky = np.broadcast_to(_gradient(rows, [(0, top), (0.55, mid), (1, low)]), (rows, w, 3)).copy()
        cx, r = rng.uniform(0.1, 0.9) * w, rng.uniform(0.035, 0.06) * short
        cy = rows - r * rng.uniform(-0.6, 0.8)
        yy, xx = np.ogrid[:rows, :w]
        d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (r * r)
        glow = np.exp(-d2 / 18.0)[..., None].astype(np.float32)
        sky = sky + (np.float32([255, 200, 120]) - sky) * glow * 0.8
        sky[d2 < 1.0] = (255, 235, 170)
    else:
        if rng.random() < 0.2:  # overcast
            top, low = jitter(rng, (150, 155, 165), 10), jitter(rng, (205, 207, 212), 8)
        else:
            top, low = jitter(rng, (55, 115, 210), 12), jitter(rng, (170, 205, 240), 10)
        sky = np.broadcast_to(_gradient(rows, [(0, top), (1, low)]), (rows, w, 3)).copy()
    return sky


def _clouds(p: Painter, rng: np.random.Generator, ctx: Ctx, rows: int) -> None:
    if rows <= 4 or ctx.time == NIGHT:
        return
    color = (255, 255, 255) if ctx.time == DAY else (250, 160, 140)
    for _ in range(int(rng.integers(0, 6))):
        cx, cy = rng.uniform(0, ctx.w), rng.uniform(0.05, 0.75) * rows
        base = rng.uniform(0.04, 0.12) * ctx.w
        for _ in range(int(rng.integers(3, 7))):
            rx, ry = base * rng.uniform(0.5, 1.0), base * rng.uniform(0.2, 0.4)
            ox, oy = rng.uniform(-1, 1) * base, rng.uniform(-0.3, 0.2) * base
            p.ellipse(Frame(cx + ox, cy + oy, 1.0), 0, 0, rx, ry, (*color, int(rng.integers(60, 140))), emissive=None)


def _stars(p: Painter, rng: np.random.Generator, ctx: Ctx, rows: int) -> None:
    if ctx.time != NIGHT or rows < 4:
        return
    n = int(rng.integers(80, 320))
    xs, ys = rng.uniform(0, ctx.w, n), rng.uniform(0, rows * 0.9, n)
    levels = rng.integers(0, 3, n)
    for level, value in enumerate((150, 200, 250)):
        chosen = levels == level
        p.draw.point(list(zip(xs[chosen].tolist(), ys[chosen].tolist())), fill=(value, value, value - 10, 255))


def _moon(p: Painter, rng: np.random.Generator, ctx: Ctx, rows: int, sky: np.ndarray) -> None:
    """A moon (sometimes a crescent); ``sky`` is the sky array at any resolution."""
    if ctx.time != NIGHT or rows < 10 or rng.random() > 0.65:
        return
    r = rng.uniform(0.025, 0.045) * ctx.short
    cx, cy = rng.uniform(0.1, 0.9) * ctx.w, rng.uniform(0.15, 0.7) * rows
    f = Frame(cx, cy, 1.0)
    p.ellipse(f, 0, 0, r * 2.2, r * 2.2, (200, 210, 230, 30), emissive=None)
    p.ellipse(f, 0, 0, r, r, (238, 236, 215), emissive=True)
    if rng.random() < 0.5:  # crescent: cover with the sky's colour
        k = sky.shape[1] / ctx.w
        c = sky[min(int(cy * k), sky.shape[0] - 1), min(int(cx * k), sky.shape[1] - 1)]
        p.ellipse(f, -r * 0.45, -r * 0.2, r * 0.9, r * 0.9, tuple(int(v) for v in c), emissive=True)


def _ground(rng: np.random.Generator, rows: int, w: int, season: int, close: bool) -> np.ndarray:
    """Ground pixels (rows, w, 3) whose colour and patches say the season."""
    if rows <= 0:
        return np.zeros((0, w, 3), np.float32)
    cell = max(6.0, w / (6 if close else 12))
    n1 = value_noise(rng, rows, w, cell, cell if close else cell / 3)
    n2 = value_noise(rng, rows, w, cell / 2, cell / (2 if close else 6))
    n3 = value_noise(rng, rows, w, cell / 3, cell / (3 if close else 8))
    ones = np.ones((rows, w, 3), np.float32)
    if season == WINTER:
        g = ones * np.float32(jitter(rng, SNOW, 4)) * (0.9 + 0.1 * n1)[..., None]
        g = _mix(g, (196, 208, 228), _smoothstep(n2, 0.66) * 0.7)
        g = _mix(g, (120, 110, 95), _smoothstep(n3, 0.9, 0.03) * 0.6 * (rng.random() < 0.5))  # grass poking out
    elif season == SPRING:
        g = ones * np.float32(jitter(rng, (128, 182, 72), 8)) * (0.8 + 0.3 * n1)[..., None]
        g = _mix(g, (108, 84, 58), _smoothstep(n2, 0.62))
        if rng.random() < 0.7:
            g = _mix(g, (232, 235, 240), _smoothstep(n3, 0.72))
    elif season == SUMMER:
        g = ones * np.float32(jitter(rng, (50, 115, 36), 6)) * (0.75 + 0.4 * n1)[..., None]
        g = _mix(g, (30, 80, 26), _smoothstep(n2, 0.6) * 0.8)
    elif season == AUTUMN:
        g = ones * np.float32(jitter(rng, (172, 136, 58), 8)) * (0.85 + 0.25 * n1)[..., None]
        g = _mix(g, (205, 108, 34), _smoothstep(n2, 0.55))
        g = _mix(g, (112, 74, 40), _smoothstep(n3, 0.66))
    else:  # asphalt / concrete
        g = ones * np.float32(jitter(rng, (112, 112, 116), 10)) * (0.85 + 0.25 * n1)[..., None]
    fine = rng.random((rows, w), dtype=np.float32)
    return g * (0.9 + 0.2 * fine)[..., None]


def _ground_details(p: Painter, rng: np.random.Generator, ctx: Ctx, top: float, bottom: float, count: int) -> None:
    """Grass blades, fallen leaves or snow tracks: the season at close range."""
    season = ctx.season
    for _ in range(count):
        x, y = rng.uniform(0, ctx.w), rng.uniform(top, bottom)
        depth = (y - top) / max(1.0, bottom - top)
        s = ctx.short * rng.uniform(0.01, 0.03) * (0.4 + depth)
        f = Frame(x, y, s, 1 if rng.random() < 0.5 else -1, float(rng.uniform(-30, 30)))
        if season in (SPRING, SUMMER):
            color = pick(rng, FOLIAGE[season])
            p.poly(f, [(-0.08, 0), (0.08, 0), (0.02, 1.0)], jitter(rng, color, 15))
        elif season == AUTUMN:
            p.ellipse(f, 0, 0, 0.5, 0.25, jitter(rng, pick(rng, FOLIAGE[AUTUMN] + [(120, 70, 35)]), 15))
        elif season == WINTER:
            p.ellipse(f, 0, 0, 0.45, 0.18, (185, 195, 215, 150))


def _conifer(
    p: Painter, f: Frame, rng: np.random.Generator, season: int, color: tuple[int, int, int], far: bool = False
) -> None:
    p.bar(f, (0, 0), (0, 0.2), 0.05, (70, 50, 35))
    tiers = int(rng.integers(2, 4)) if far else int(rng.integers(3, 5))
    for i in range(tiers):
        base = 0.1 + i * 0.8 / tiers
        top = base + 1.25 / tiers + 0.1
        half = 0.3 * (1 - i / (tiers + 0.8))
        shade = tuple(int(c * (0.9 + 0.08 * i)) for c in color)
        p.poly(f, [(-half, base), (half, base), (0, min(1.0, top))], shade)
        if season == WINTER:
            p.poly(
                f,
                [
                    (-half * 0.55, base + (top - base) * 0.42),
                    (half * 0.55, base + (top - base) * 0.42),
                    (0, min(1.0, top)),
                ],
                SNOW,
            )
            p.poly(f, [(-half, base), (half, base), (half * 0.8, base + 0.04), (-half * 0.8, base + 0.04)], SNOW)


def _deciduous(p: Painter, f: Frame, rng: np.random.Generator, season: int, birch: bool, far: bool = False) -> None:
    trunk = (228, 225, 215) if birch else jitter(rng, (80, 60, 42), 8)
    p.poly(f, [(-0.04, 0), (0.04, 0), (0.018, 0.75), (-0.018, 0.75)], trunk)
    if far:
        if season in FOLIAGE:
            for cx, cy in ((-0.1, 0.7), (0.1, 0.72), (0.0, 0.86)):
                p.ellipse(f, cx, cy, 0.17, 0.14, jitter(rng, pick(rng, FOLIAGE[season]), 10))
        else:
            for dx in (-0.2, 0.0, 0.2):
                p.bar(f, (0, 0.45), (dx, 0.95), 0.03, trunk if not birch else (70, 60, 50))
        return
    if birch:
        for y in rng.uniform(0.05, 0.7, 5):
            p.rect(f, -0.03, y, 0.01, y + 0.025, (40, 40, 40))
    branches = [(0.5, -0.22, 0.78), (0.45, 0.2, 0.8), (0.62, -0.14, 0.92), (0.6, 0.16, 0.95), (0.7, 0.0, 1.0)]
    for y, dx, ty in branches:
        p.bar(f, (0, y), (dx, ty), 0.02, trunk if not birch else (70, 60, 50))
    if season == WINTER or season == SEASON_NONE:
        for y, dx, ty in branches:
            p.bar(f, (dx * 0.6, y + (ty - y) * 0.6), (dx * 1.4 + 0.05, ty + 0.06), 0.01, (70, 60, 50))
            if season == WINTER:
                p.bar(f, (dx * 0.5, y + (ty - y) * 0.55 + 0.01), (dx, ty + 0.01), 0.012, SNOW)
        return
    palette = FOLIAGE[season]
    blobs = int(rng.integers(5, 9)) if season != SPRING else int(rng.integers(4, 7))
    scale = 0.75 if season == SPRING else 1.0
    for _ in range(blobs):
        cx, cy = rng.uniform(-0.17, 0.17), rng.uniform(0.62, 0.88)
        rx, ry = rng.uniform(0.12, 0.2) * scale, rng.uniform(0.09, 0.15) * scale
        p.ellipse(f, cx, cy, rx, ry, jitter(rng, pick(rng, palette), 10))


def _tree(
    p: Painter, rng: np.random.Generator, ctx: Ctx, x: float, base: float, height: float, conifer_share: float
) -> None:
    f = Frame(x, base, height, 1 if rng.random() < 0.5 else -1)
    far = height < 0.22 * ctx.h  # small trees: fewer shapes, the details would not show
    if rng.random() < conifer_share:
        _conifer(p, f, rng, ctx.season, jitter(rng, pick(rng, CONIFER), 5), far)
    else:
        _deciduous(p, f, rng, ctx.season, birch=rng.random() < 0.3, far=far)


def _forest(p: Painter, rng: np.random.Generator, ctx: Ctx, hz: float) -> None:
    conifer_share = float(rng.uniform(0.2, 0.85))
    w, h = ctx.w, ctx.h
    for layer, (lo, hi, density) in enumerate(((0.10, 0.2, 1.6), (0.16, 0.3, 1.1))):
        x = -rng.uniform(0, 0.03) * w
        while x < w * 1.03:
            height = rng.uniform(lo, hi) * h
            _tree(p, rng, ctx, x, hz + rng.uniform(0.0, 0.02) * h + layer * 0.015 * h, height, conifer_share)
            x += height * rng.uniform(0.18, 0.35) / density
    for _ in range(int(rng.integers(4, 10))):
        base = rng.uniform(hz + 0.03 * h, h * 1.02)
        t = (base - hz) / max(1.0, h - hz)
        _tree(
            p,
            rng,
            ctx,
            rng.uniform(-0.05, 1.05) * w,
            base,
            (0.25 + 0.75 * t) * h * rng.uniform(0.7, 1.1),
            conifer_share,
        )


def _buildings(
    p: Painter, rng: np.random.Generator, ctx: Ctx, base_y: float, max_height: float, floors_scale: float
) -> None:
    """A row of blocks with window grids from edge to edge of the frame."""
    palette = [
        (200, 190, 170),
        (182, 182, 188),
        (215, 200, 150),
        (160, 92, 72),
        (228, 228, 222),
        (140, 150, 162),
        (190, 160, 130),
    ]
    x = -rng.uniform(0, 0.1) * ctx.w
    while x < ctx.w:
        bw = rng.uniform(0.1, 0.3) * ctx.w
        bh = rng.uniform(0.4, 1.0) * max_height
        top = max(0.02 * ctx.h, base_y - bh)
        color = jitter(rng, pick(rng, palette), 8)
        p.rect_px((x, top, x + bw, base_y), color)
        if ctx.season == WINTER:
            p.rect_px((x, top, x + bw, top + 0.012 * ctx.h), SNOW)
        floor = max(4.0, rng.uniform(0.025, 0.04) * ctx.h * floors_scale)
        cols = max(2, int(bw / (floor * rng.uniform(0.9, 1.4))))
        col_w = bw / cols
        glass = pick(rng, [(60, 78, 100), (110, 140, 170), (75, 90, 95)])
        lit_share = 0.4 if ctx.time == NIGHT else (0.15 if ctx.time == DUSK else 0.0)
        y = top + floor * 0.5
        while y + floor * 0.6 < base_y - floor * 0.3:
            for c in range(cols):
                wx = x + c * col_w + col_w * 0.25
                box = (wx, y, wx + col_w * 0.5, y + floor * 0.55)
                if rng.random() < lit_share:
                    p.rect_px(box, jitter(rng, (250, 212, 125), 10), emissive=True)
                else:
                    p.rect_px(box, (20, 24, 34) if ctx.time == NIGHT else glass)
            y += floor
        x += bw + rng.uniform(-0.01, 0.04) * ctx.w


def _city(p: Painter, rng: np.random.Generator, ctx: Ctx, hz: float, road: bool) -> None:
    w, h = ctx.w, ctx.h
    _buildings(p, rng, ctx, hz + 0.01 * h, min(hz * 0.9, 0.45 * h), 1.0)
    if road:
        vx = rng.uniform(0.3, 0.7) * w
        left, right = rng.uniform(-0.3, 0.3) * w, rng.uniform(0.7, 1.3) * w
        asphalt = jitter(rng, (82, 82, 88), 6)
        p.poly_px([vx - 0.02 * w, hz, vx + 0.02 * w, hz, right, h, left, h], asphalt)
        if ctx.season == WINTER:
            p.poly_px([vx - 0.02 * w, hz, vx - 0.012 * w, hz, left + 0.12 * w, h, left, h], SNOW)
            p.poly_px([vx + 0.012 * w, hz, vx + 0.02 * w, hz, right, h, right - 0.12 * w, h], SNOW)
        mid_bottom = (left + right) / 2
        for i in range(9):
            t0, t1 = (i / 9) ** 2, ((i + 0.5) / 9) ** 2
            y0, y1 = hz + (h - hz) * t0, hz + (h - hz) * t1
            x0, x1 = vx + (mid_bottom - vx) * t0, vx + (mid_bottom - vx) * t1
            wd0, wd1 = 0.002 * w + 0.012 * w * t0, 0.002 * w + 0.012 * w * t1
            p.poly_px([x0 - wd0, y0, x0 + wd0, y0, x1 + wd1, y1, x1 - wd1, y1], (225, 225, 215))
    for _ in range(int(rng.integers(1, 5))):  # street trees and lamps
        base = rng.uniform(hz + 0.03 * h, h)
        t = (base - hz) / max(1.0, h - hz)
        x = rng.uniform(0, w)
        if rng.random() < 0.6:
            _tree(p, rng, ctx, x, base, (0.15 + 0.6 * t) * h, 0.2)
        else:
            f = Frame(x, base, (0.15 + 0.5 * t) * h)
            p.bar(f, (0, 0), (0, 1.0), 0.025, (60, 62, 66))
            p.bar(f, (0, 1.0), (0.15, 0.97), 0.02, (60, 62, 66))
            p.ellipse(
                f, 0.15, 0.95, 0.04, 0.02, (255, 225, 150) if ctx.lights_on else (200, 200, 190), emissive=ctx.lights_on
            )


def _field(p: Painter, rng: np.random.Generator, ctx: Ctx, hz: float) -> None:
    """Open land: maybe a far hill line, tufts of grass; no trees, no buildings."""
    if rng.random() < 0.5:
        xs = np.linspace(-0.02, 1.02, 24) * ctx.w
        amp, phase = rng.uniform(0.01, 0.05) * ctx.h, rng.uniform(0, 6.3)
        ys = hz - amp * (1 + np.sin(xs / ctx.w * rng.uniform(3, 9) + phase)) / 2
        color = {WINTER: (205, 212, 226), SPRING: (110, 150, 95), SUMMER: (60, 105, 70), AUTUMN: (150, 120, 75)}[
            ctx.season
        ]
        haze = np.asarray(ctx.sky_horizon)
        color = tuple(int(c) for c in 0.6 * np.asarray(color) + 0.4 * haze)
        p.poly_px([*np.column_stack([xs, ys]).ravel().tolist(), xs[-1], hz + 2, xs[0], hz + 2], color)
    _ground_details(p, rng, ctx, hz + 0.4 * (ctx.h - hz), ctx.h, int(rng.integers(0, 60)))


def _water_pixels(rng: np.random.Generator, rows: int, w: int, ctx: Ctx) -> np.ndarray:
    """Open water (rows, w, 3): a sky reflection fading into deep water, with streaky ripples."""
    deep = np.float32(ctx.water)
    mirror = np.float32(ctx.sky_horizon) * 0.85
    grad = (
        _gradient(rows, [(0, mirror), (1, deep)]) if ctx.horizon_px else _gradient(rows, [(0, deep * 1.1), (1, deep)])
    )
    water = np.broadcast_to(grad, (rows, w, 3)).copy()
    streaks = value_noise(rng, rows, w, max(8.0, w / 10), max(2.0, rows / 60))
    water *= (0.85 + 0.3 * streaks)[..., None]
    return water


def _ripples(
    p: Painter,
    rng: np.random.Generator,
    ctx: Ctx,
    box: tuple[float, float, float, float],
    count: int,
    inside: Callable[[float, float], bool] | None = None,
) -> None:
    x0, y0, x1, y1 = box
    light = tuple(min(255, int(c * 1.35) + 25) for c in ctx.water) + (150,)
    for _ in range(count):
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        if inside and not inside(x, y):
            continue
        depth = (y - y0) / max(1.0, y1 - y0)
        half = ctx.w * rng.uniform(0.005, 0.025) * (0.3 + depth)
        p.rect_px((x - half, y, x + half, y + max(1.0, 0.003 * ctx.h * (0.3 + depth))), light)


def _lake(p: Painter, rng: np.random.Generator, ctx: Ctx, lake: tuple[float, float, float, float]) -> None:
    cx, cy, rx, ry = lake[0] * ctx.w, lake[1] * ctx.h, lake[2] * ctx.w, lake[3] * ctx.h
    shore = SNOW if ctx.season == WINTER else (95, 80, 60)
    p.ellipse(Frame(cx, cy, 1.0), 0, 0, rx * 1.04, ry * 1.12, shore)
    mirror = tuple(int(0.5 * a + 0.5 * b) for a, b in zip(ctx.sky_horizon, ctx.water))
    p.ellipse(Frame(cx, cy, 1.0), 0, 0, rx, ry, mirror)
    p.ellipse(Frame(cx, cy + ry * 0.25, 1.0), 0, 0, rx * 0.85, ry * 0.7, ctx.water + (170,), emissive=None)
    _ripples(
        p,
        rng,
        ctx,
        (cx - rx, cy - ry, cx + rx, cy + ry),
        50,
        inside=lambda x, y: ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 0.8,
    )


def _close_forest_fill(rng: np.random.Generator, ctx: Ctx, arr: np.ndarray) -> float:
    """Forest interior behind the trunks, ground below; returns where the ground starts (fraction)."""
    h, w = arr.shape[:2]
    edge = float(rng.uniform(0.5, 0.65))
    ground_top = int(h * edge)
    interior = {WINTER: (120, 122, 128), SPRING: (85, 100, 70), SUMMER: (35, 55, 32), AUTUMN: (95, 75, 45)}[ctx.season]
    arr[:ground_top] = np.float32(interior) * (0.8 + 0.3 * value_noise(rng, ground_top, w, w / 20, h / 3))[..., None]
    arr[ground_top:] = _ground(rng, h - ground_top, w, ctx.season, close=True)
    return ground_top / h


def _close_forest(p: Painter, rng: np.random.Generator, ctx: Ctx, edge: float) -> None:
    """Forest interior: trunks across the frame, canopy over the top, no sky."""
    w, h = ctx.w, ctx.h
    ground_top = edge * h
    for depth in np.sort(rng.uniform(0, 1, int(rng.integers(14, 26)))):
        x = rng.uniform(-0.05, 1.05) * w
        half = (0.006 + 0.035 * depth**2) * w
        base = ground_top + depth * (h - ground_top) * 0.9
        shade = jitter(rng, (70 + 60 * depth, 55 + 45 * depth, 40 + 30 * depth), 8)
        if rng.random() < 0.25:
            shade = (215, 212, 200)  # birch
        p.poly_px([x - half, -5, x + half, -5, x + half * 1.2, base, x - half * 1.2, base], shade)
    canopy_bottom = h * rng.uniform(0.18, 0.32)
    for _ in range(int(rng.integers(25, 45))):
        cx, cy = rng.uniform(-0.05, 1.05) * w, rng.uniform(-0.1, 1.0) * canopy_bottom
        rx, ry = rng.uniform(0.06, 0.14) * w, rng.uniform(0.05, 0.12) * h
        if ctx.season == WINTER:
            color = pick(rng, CONIFER) if rng.random() < 0.7 else SNOW
        else:
            color = pick(rng, FOLIAGE[ctx.season])
        p.ellipse(Frame(cx, cy, 1.0), 0, 0, rx, ry, jitter(rng, color, 10))
        if ctx.season == WINTER and rng.random() < 0.6:
            p.ellipse(Frame(cx, cy - ry * 0.4, 1.0), 0, 0, rx * 0.7, ry * 0.35, SNOW)
    _ground_details(p, rng, ctx, ground_top, h, int(rng.integers(30, 90)))


def _close_city_fill(rng: np.random.Generator, ctx: Ctx, arr: np.ndarray) -> float:
    """A wall over a pavement; returns where the wall ends (fraction of the height)."""
    h, w = arr.shape[:2]
    wall_bottom = int(h * rng.uniform(0.6, 0.75))
    wall = np.float32(jitter(rng, pick(rng, [(200, 190, 170), (182, 182, 188), (215, 200, 150), (160, 92, 72)]), 8))
    arr[:wall_bottom] = wall * (0.9 + 0.15 * value_noise(rng, wall_bottom, w, w / 8))[..., None]
    arr[wall_bottom:] = _ground(rng, h - wall_bottom, w, SEASON_NONE, close=True)
    return wall_bottom / h


def _close_city(p: Painter, rng: np.random.Generator, ctx: Ctx, edge: float) -> None:
    """A facade with big windows over a pavement; no sky."""
    w, h = ctx.w, ctx.h
    wall_bottom = edge * h
    cols, rows = int(rng.integers(2, 5)), int(rng.integers(2, 4))
    cw, rh = w / cols, wall_bottom / (rows + 0.4)
    glass = pick(rng, [(60, 78, 100), (110, 140, 170), (75, 90, 95)])
    for r in range(rows):
        for c in range(cols):
            x0, y0 = c * cw + cw * 0.22, r * rh + rh * 0.25
            p.rect_px((x0 - 4, y0 - 4, x0 + cw * 0.56 + 4, y0 + rh * 0.6 + 4), (235, 235, 232))
            p.rect_px((x0, y0, x0 + cw * 0.56, y0 + rh * 0.6), glass)
            p.rect_px((x0 + cw * 0.27, y0, x0 + cw * 0.29, y0 + rh * 0.6), (235, 235, 232))
    p.rect_px((0, wall_bottom, w, wall_bottom + 0.02 * h), (150, 150, 150))  # curb
    if ctx.season == WINTER:
        for _ in range(int(rng.integers(6, 14))):
            cx, cy = rng.uniform(0, w), rng.uniform(wall_bottom, h)
            p.ellipse(Frame(cx, cy, 1.0), 0, 0, rng.uniform(0.05, 0.2) * w, rng.uniform(0.02, 0.06) * h, SNOW)
    elif ctx.season in (SUMMER, AUTUMN):
        strip = wall_bottom - 0.1 * h
        p.rect_px((0, strip, w, wall_bottom), jitter(rng, (60, 110, 40) if ctx.season == SUMMER else (150, 110, 50), 8))
        for _ in range(int(rng.integers(4, 9))):
            p.ellipse(
                Frame(rng.uniform(0, w), strip, 1.0),
                0,
                0,
                rng.uniform(0.04, 0.09) * w,
                rng.uniform(0.04, 0.08) * h,
                jitter(rng, pick(rng, FOLIAGE[ctx.season]), 10),
            )
        if ctx.season == AUTUMN:
            _ground_details(p, rng, ctx, wall_bottom, h, 40)


# --- objects -------------------------------------------------------------------------

JACKETS = [
    (240, 110, 25),
    (230, 120, 30),
    (200, 40, 40),
    (40, 70, 150),
    (40, 95, 60),
    (30, 30, 34),
    (120, 110, 70),
    (235, 200, 40),
]
SKIN = [(230, 190, 160), (210, 165, 130), (190, 140, 110)]


def _person(
    p: Painter,
    f: Frame,
    rng: np.random.Generator,
    jacket: tuple[int, int, int] | None = None,
    arms: str = "down",
    walking: bool = False,
) -> None:
    jacket = jacket or jitter(rng, pick(rng, JACKETS), 10)
    pants = jitter(rng, pick(rng, [(40, 45, 60), (30, 30, 30), (70, 75, 60)]), 8)
    skin = pick(rng, SKIN)
    spread = 0.09 if walking else 0.035
    p.bar(f, (-0.05, 0.5), (-0.05 - spread, 0.02), 0.08, pants)
    p.bar(f, (0.05, 0.5), (0.05 + spread, 0.02), 0.08, pants)
    p.rect(f, -0.05 - spread - 0.05, 0, -0.05 - spread + 0.04, 0.04, (25, 25, 25))
    p.rect(f, 0.05 + spread - 0.04, 0, 0.05 + spread + 0.05, 0.04, (25, 25, 25))
    p.poly(f, [(-0.13, 0.47), (0.13, 0.47), (0.14, 0.8), (0.09, 0.85), (-0.09, 0.85), (-0.14, 0.8)], jacket)
    if jacket[0] > 200 and jacket[2] < 60:  # a volunteer's vest: reflective stripe
        p.rect(f, -0.135, 0.6, 0.135, 0.63, (215, 215, 210))
    if arms == "down":
        p.bar(f, (-0.13, 0.8), (-0.17, 0.52), 0.065, jacket)
        p.bar(f, (0.13, 0.8), (0.17, 0.52), 0.065, jacket)
        p.ellipse(f, -0.17, 0.5, 0.03, 0.03, skin)
        p.ellipse(f, 0.17, 0.5, 0.03, 0.03, skin)
    elif arms == "forward":  # right arm stretched forward (holding a leash)
        p.bar(f, (-0.13, 0.8), (-0.17, 0.52), 0.065, jacket)
        p.bar(f, (0.12, 0.79), (0.3, 0.6), 0.065, jacket)
        p.ellipse(f, 0.31, 0.59, 0.03, 0.03, skin)
    p.ellipse(f, 0, 0.915, 0.075, 0.08, skin)
    hat = jitter(rng, pick(rng, [(30, 30, 30), (200, 40, 40), (240, 110, 25), (60, 60, 70)]), 8)
    p.poly(f, _ellipse_pts(0, 0.93, 0.08, 0.06, upper_half=True), hat)  # the top half of an ellipse: a cap


def _draw_person(p: Painter, f: Frame, rng: np.random.Generator, ctx: Ctx, variant: int) -> None:
    _person(p, f, rng, walking=variant % 2 == 1)


def _dog(p: Painter, f: Frame, rng: np.random.Generator) -> None:
    coat, saddle = pick(
        rng,
        [
            ((175, 125, 60), (35, 30, 25)),
            ((30, 28, 26), (30, 28, 26)),
            ((120, 70, 35), (90, 50, 25)),
            ((225, 215, 195), (140, 90, 50)),
        ],
    )
    coat = jitter(rng, coat, 8)
    for x, lean in ((-0.26, -0.05), (-0.17, 0.04), (0.17, -0.04), (0.26, 0.05)):
        p.bar(f, (x, 0.42), (x + lean, 0.0), 0.055, coat)
    p.poly(f, [(-0.3, 0.5), (-0.48, 0.66), (-0.52, 0.62), (-0.33, 0.44)], coat)  # tail
    p.ellipse(f, 0, 0.46, 0.32, 0.12, coat)
    p.ellipse(f, -0.03, 0.53, 0.22, 0.06, saddle)
    p.poly(f, [(0.18, 0.5), (0.3, 0.4), (0.42, 0.62), (0.3, 0.68)], coat)  # neck
    p.ellipse(f, 0.39, 0.65, 0.095, 0.075, coat)
    p.poly(f, [(0.43, 0.68), (0.6, 0.62), (0.59, 0.57), (0.44, 0.58)], coat)  # muzzle
    p.ellipse(f, 0.595, 0.6, 0.02, 0.02, (15, 15, 15))
    p.poly(f, [(0.33, 0.69), (0.35, 0.81), (0.4, 0.7)], coat)
    p.poly(f, [(0.38, 0.7), (0.41, 0.8), (0.45, 0.69)], coat)
    if rng.random() < 0.5:  # search-dog vest
        p.rect(f, -0.13, 0.4, 0.12, 0.57, jitter(rng, pick(rng, [(240, 110, 25), (200, 40, 40)]), 8))


def _draw_dog_handler(p: Painter, f: Frame, rng: np.random.Generator, ctx: Ctx, variant: int) -> None:
    _person(p, f.at(-0.2, 0), rng, arms="forward", walking=variant % 2 == 1)
    dog = f.at(0.38, 0, scale=0.5)
    _dog(p, dog, rng)
    hand = (-0.2 + 0.31, 0.59)
    collar = (0.38 + 0.3 * 0.5, 0.55 * 0.5)
    p.bar(f, hand, collar, 0.012, (30, 30, 30))


def _draw_hugs(p: Painter, f: Frame, rng: np.random.Generator, ctx: Ctx, variant: int) -> None:
    """Two people in side view, chest to chest, each with an arm across the other's back."""
    a_jacket, b_jacket = jitter(rng, pick(rng, JACKETS), 10), jitter(rng, pick(rng, JACKETS), 10)
    if abs(int(a_jacket[0]) - b_jacket[0]) + abs(int(a_jacket[2]) - b_jacket[2]) < 60:
        b_jacket = (60, 60, 160) if a_jacket[2] < 120 else (230, 120, 30)
    pants = (40, 45, 60)
    skins = pick(rng, SKIN), pick(rng, SKIN)
    for side, jacket, skin in ((-1, a_jacket, skins[0]), (1, b_jacket, skins[1])):
        p.bar(f, (0.1 * side, 0.5), (0.14 * side, 0.02), 0.085, pants)
        p.bar(f, (0.12 * side, 0.5), (0.2 * side, 0.02), 0.085, pants)
        p.poly(
            f, [(0.2 * side, 0.47), (0.03 * side, 0.47), (0.0, 0.8), (0.08 * side, 0.86), (0.19 * side, 0.82)], jacket
        )
        p.ellipse(f, 0.09 * side, 0.925, 0.07, 0.075, skin)
    # arms across the other's back, drawn over both bodies
    p.bar(f, (-0.15, 0.8), (0.17, 0.72), 0.06, a_jacket)
    p.ellipse(f, 0.18, 0.72, 0.03, 0.03, skins[0])
    p.bar(f, (0.15, 0.76), (-0.17, 0.64), 0.06, b_jacket)
    p.ellipse(f, -0.18, 0.64, 0.03, 0.03, skins[1])
    if variant == 0:  # a found person wrapped in a rescue blanket
        p.poly(f, [(0.02, 0.85), (0.22, 0.82), (0.28, 0.25), (0.05, 0.25)], (212, 180, 70))


def _draw_car(p: Painter, f: Frame, rng: np.random.Generator, ctx: Ctx, variant: int) -> None:
    color = jitter(
        rng,
        pick(
            rng,
            [
                (235, 235, 235),
                (190, 192, 196),
                (35, 35, 38),
                (165, 30, 30),
                (40, 70, 140),
                (40, 90, 60),
                (220, 180, 40),
                (120, 120, 125),
            ],
        ),
        8,
    )
    if variant % 2 == 0:  # sedan
        body = [
            (-0.5, 0.08),
            (0.5, 0.08),
            (0.5, 0.2),
            (0.46, 0.25),
            (0.22, 0.27),
            (0.1, 0.41),
            (-0.28, 0.41),
            (-0.4, 0.27),
            (-0.5, 0.25),
        ]
        glass = [(0.08, 0.38), (0.18, 0.275), (-0.37, 0.275), (-0.27, 0.38)]
    else:  # SUV
        body = [
            (-0.5, 0.08),
            (0.5, 0.08),
            (0.5, 0.24),
            (0.44, 0.28),
            (0.3, 0.3),
            (0.2, 0.46),
            (-0.48, 0.46),
            (-0.5, 0.3),
        ]
        glass = [(0.18, 0.43), (0.27, 0.31), (-0.45, 0.31), (-0.45, 0.43)]
    p.poly(f, body, color)
    p.poly(f, glass, (75, 95, 115) if rng.random() < 0.6 else (150, 180, 205))
    p.bar(f, (-0.06, 0.44), (-0.06, 0.26), 0.03, color)
    p.bar(f, (0.02, 0.26), (0.02, 0.1), 0.006, tuple(int(c * 0.6) for c in color))
    if variant >= 2:  # a volunteers' car: a stripe along the side
        p.rect(f, -0.5, 0.15, 0.5, 0.19, (240, 110, 25) if color[0] < 200 or color[2] > 150 else (40, 70, 150))
    for x in (-0.3, 0.3):
        p.ellipse(f, x, 0.1, 0.105, 0.105, (25, 25, 25))
        p.ellipse(f, x, 0.1, 0.085, 0.085, (20, 20, 22))
        p.ellipse(f, x, 0.1, 0.04, 0.04, (165, 165, 170))
    p.rect(f, 0.47, 0.17, 0.5, 0.21, (255, 245, 200), emissive=ctx.lights_on)
    p.rect(f, -0.5, 0.17, -0.48, 0.22, (220, 30, 30), emissive=ctx.lights_on)
    if ctx.season == WINTER and variant % 2 == 0:
        p.poly(f, [(0.08, 0.41), (0.1, 0.425), (-0.28, 0.425), (-0.28, 0.41)], SNOW)


def _draw_sherp(p: Painter, f: Frame, rng: np.random.Generator, ctx: Ctx, variant: int) -> None:
    color = jitter(
        rng, pick(rng, [(230, 110, 30), (200, 45, 35), (120, 120, 70), (230, 230, 225), (60, 95, 60), (45, 80, 150)]), 8
    )
    p.poly(f, [(-0.47, 0.22), (0.47, 0.22), (0.5, 0.36), (0.42, 0.6), (-0.46, 0.6), (-0.5, 0.36)], color)
    p.poly(f, [(0.36, 0.56), (0.45, 0.38), (0.22, 0.38), (0.22, 0.56)], (80, 105, 125))
    p.rect(f, -0.12, 0.42, 0.12, 0.55, (80, 105, 125))
    p.rect(f, -0.4, 0.42, -0.2, 0.55, (80, 105, 125))
    p.rect(f, -0.44, 0.6, 0.38, 0.625, (40, 40, 40))  # roof rack
    for x in (-0.4, 0.0, 0.3):
        p.rect(f, x, 0.6, x + 0.02, 0.64, (40, 40, 40))
    tyre = (32, 32, 34)
    for cx in (-0.27, 0.27):
        for k in range(14):  # tread lugs make the silhouette knobbly
            a = 2 * math.pi * k / 14
            c, s = math.cos(a), math.sin(a)
            p.poly(
                f,
                [
                    (cx + 0.19 * c - 0.025 * s, 0.215 + 0.19 * s + 0.025 * c),
                    (cx + 0.225 * c - 0.02 * s, 0.215 + 0.225 * s + 0.02 * c),
                    (cx + 0.225 * c + 0.02 * s, 0.215 + 0.225 * s - 0.02 * c),
                    (cx + 0.19 * c + 0.025 * s, 0.215 + 0.19 * s - 0.025 * c),
                ],
                tyre,
            )
        p.ellipse(f, cx, 0.215, 0.2, 0.2, tyre)
        p.ellipse(f, cx, 0.215, 0.15, 0.15, (48, 48, 50))
        p.ellipse(f, cx, 0.215, 0.07, 0.07, (150, 150, 150) if variant % 2 else color)
    p.rect(f, 0.46, 0.3, 0.5, 0.34, (255, 245, 200), emissive=ctx.lights_on)


def _draw_helicopter(p: Painter, f: Frame, rng: np.random.Generator, ctx: Ctx, variant: int) -> None:
    scheme = pick(
        rng,
        [
            ((235, 235, 235), (210, 50, 40)),
            ((70, 85, 60), (55, 65, 50)),
            ((40, 80, 160), (235, 235, 235)),
            ((230, 120, 30), (40, 40, 40)),
            ((100, 100, 105), (60, 60, 65)),
        ],
    )
    body, stripe = jitter(rng, scheme[0], 6), scheme[1]
    dark = (40, 40, 42)
    p.poly(f, [(-0.12, 0.07), (-0.5, 0.05), (-0.5, 0.015), (-0.12, -0.03)], body)  # tail boom
    p.poly(f, [(-0.45, 0.04), (-0.53, 0.04), (-0.56, 0.17), (-0.5, 0.17)], body)  # fin
    p.ellipse(f, -0.5, 0.07, 0.055, 0.055, (90, 90, 95, 110), emissive=None)  # tail rotor disc
    p.bar(f, (-0.5, 0.015), (-0.5, 0.125), 0.012, dark)
    p.bar(f, (0.0, -0.1), (-0.04, -0.18), 0.02, dark)  # skid struts and skids
    p.bar(f, (0.24, -0.1), (0.26, -0.18), 0.02, dark)
    p.bar(f, (-0.12, -0.18), (0.36, -0.18), 0.022, dark)
    p.bar(f, (0.36, -0.18), (0.41, -0.15), 0.022, dark)
    p.ellipse(f, 0.12, 0.0, 0.26, 0.125, body)  # fuselage
    p.poly(f, [(-0.02, 0.1), (0.24, 0.1), (0.2, 0.16), (0.02, 0.16)], body)  # engine housing
    p.poly(f, [(-0.12, -0.01), (0.37, -0.01), (0.37, -0.045), (-0.1, -0.045)], stripe)
    p.poly(f, [(0.22, 0.1), (0.33, 0.06), (0.38, 0.0), (0.24, 0.0)], (90, 120, 150))  # cockpit glass
    p.ellipse(f, 0.05, 0.04, 0.04, 0.035, (90, 120, 150))
    p.bar(f, (0.11, 0.16), (0.11, 0.2), 0.03, dark)  # mast
    blade = 0.55 if variant % 2 == 0 else 0.45
    p.bar(f, (0.11 - blade, 0.205), (0.11 + blade, 0.205), 0.016, dark)
    p.ellipse(f, 0.11, 0.205, 0.5, 0.02, (90, 90, 95, 70), emissive=None)  # rotor blur
    if ctx.lights_on:
        p.ellipse(f, -0.52, 0.17, 0.02, 0.02, (255, 40, 40), emissive=True)
        p.ellipse(f, 0.12, -0.12, 0.018, 0.018, (255, 255, 255), emissive=True)
        p.ellipse(f, 0.36, -0.04, 0.025, 0.02, (255, 250, 210), emissive=True)


def _draw_drone(p: Painter, f: Frame, rng: np.random.Generator, ctx: Ctx, variant: int) -> None:
    body = pick(rng, [(40, 40, 44), (225, 225, 225), (90, 90, 95), (200, 80, 30)])
    dark = (30, 30, 32)
    disc = (150, 150, 155, 110)
    if variant < 2:  # seen from below and the side: four motors on a line, discs flattened
        for x, y, s in ((-0.3, 0.08, 0.8), (0.3, 0.08, 0.8), (-0.42, 0.02, 1.0), (0.42, 0.02, 1.0)):
            p.bar(f, (0, 0), (x, y), 0.035 * s, body)
            p.rect(f, x - 0.025 * s, y, x + 0.025 * s, y + 0.06 * s, dark)
            p.ellipse(f, x, y + 0.07 * s, 0.17 * s, 0.035 * s, disc, emissive=None)
            p.bar(f, (x - 0.16 * s, y + 0.07 * s), (x + 0.16 * s, y + 0.07 * s), 0.012, dark)
        p.ellipse(f, 0, 0.0, 0.14, 0.07, body)
        p.bar(f, (-0.08, -0.04), (-0.12, -0.16), 0.018, dark)
        p.bar(f, (0.08, -0.04), (0.12, -0.16), 0.018, dark)
        p.bar(f, (-0.18, -0.16), (-0.06, -0.16), 0.018, dark)
        p.bar(f, (0.06, -0.16), (0.18, -0.16), 0.018, dark)
        p.ellipse(f, 0, -0.08, 0.04, 0.04, (20, 20, 20))
        leds = ((-0.42, 0.02), (0.42, 0.02))
    else:  # from above: an X with four rotor circles
        for sx, sy in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
            x, y = 0.3 * sx, 0.3 * sy
            p.bar(f, (0, 0), (x, y), 0.05, body)
            p.ellipse(f, x, y, 0.19, 0.19, disc, emissive=None)
            p.ellipse(f, x, y, 0.04, 0.04, dark)
            p.bar(f, (x - 0.17, y), (x + 0.17, y), 0.02, dark)
        p.ellipse(f, 0, 0, 0.13, 0.16, body)
        p.ellipse(f, 0, 0.08, 0.04, 0.03, (20, 20, 20))
        leds = ((-0.3, 0.3), (0.3, 0.3))
    if ctx.lights_on:
        p.ellipse(f, leds[0][0], leds[0][1], 0.03, 0.03, (255, 40, 40), emissive=True)
        p.ellipse(f, leds[1][0], leds[1][1], 0.03, 0.03, (40, 255, 80), emissive=True)


def _draw_horse(p: Painter, f: Frame, rng: np.random.Generator, ctx: Ctx, variant: int) -> None:
    coat = jitter(
        rng, pick(rng, [(120, 70, 35), (150, 90, 45), (40, 30, 25), (170, 165, 160), (230, 225, 215), (95, 60, 35)]), 8
    )
    mane = tuple(int(c * 0.45) for c in coat) if sum(coat) > 200 else (20, 18, 16)
    for x, lean in ((-0.38, -0.03), (-0.28, 0.04), (0.28, -0.02), (0.38, 0.05)):
        p.bar(f, (x, 0.56), (x + lean, 0.03), 0.07, coat)
        p.rect(f, x + lean - 0.04, 0.0, x + lean + 0.04, 0.04, (30, 25, 20))
    p.poly(f, [(-0.46, 0.76), (-0.53, 0.74), (-0.62, 0.38), (-0.55, 0.36), (-0.5, 0.6)], mane)  # tail
    p.ellipse(f, 0, 0.65, 0.46, 0.17, coat)
    p.ellipse(f, -0.33, 0.67, 0.17, 0.18, coat)
    p.ellipse(f, 0.33, 0.66, 0.15, 0.17, coat)
    p.poly(f, [(0.26, 0.74), (0.46, 0.58), (0.66, 0.95), (0.53, 1.03)], coat)  # neck
    p.poly(f, [(0.52, 1.0), (0.6, 1.07), (0.87, 0.85), (0.83, 0.77), (0.73, 0.78), (0.58, 0.9)], coat)  # head
    p.poly(f, [(0.55, 1.03), (0.57, 1.13), (0.62, 1.05)], coat)  # ear
    p.poly(f, [(0.28, 0.8), (0.52, 1.04), (0.56, 1.0), (0.36, 0.77)], mane)
    p.ellipse(f, 0.64, 0.96, 0.018, 0.018, (10, 10, 10))
    if variant < 2:  # a mounted searcher
        jacket = jitter(rng, pick(rng, JACKETS), 10)
        p.poly(f, [(-0.12, 0.8), (0.12, 0.8), (0.1, 0.72), (-0.1, 0.72)], (60, 40, 25))  # saddle
        p.bar(f, (0.0, 0.8), (0.1, 0.5), 0.08, (40, 45, 60))
        p.poly(f, [(-0.09, 0.8), (0.09, 0.8), (0.08, 1.2), (-0.06, 1.2)], jacket)
        p.bar(f, (0.05, 1.15), (0.3, 0.95), 0.06, jacket)
        p.ellipse(f, 0.01, 1.29, 0.07, 0.075, pick(rng, SKIN))
        p.poly(f, _ellipse_pts(0.01, 1.31, 0.075, 0.06, upper_half=True), (30, 30, 30))


def _draw_diver(p: Painter, f: Frame, rng: np.random.Generator, ctx: Ctx, variant: int) -> None:
    suit = (22, 22, 26)
    tank = jitter(rng, pick(rng, [(235, 200, 30), (230, 120, 30), (190, 190, 195), (200, 40, 40)]), 6)
    fins = pick(rng, [(235, 200, 30), (30, 30, 35), (40, 90, 200), (230, 120, 30)])
    strap = pick(rng, [(235, 200, 30), (40, 90, 200), (200, 40, 40)])
    water = ctx.water
    light_water = tuple(min(255, int(c * 1.4) + 30) for c in water)
    if variant < 2:  # swimming on the surface, seen from the side
        p.ellipse(f, 0.0, 0.0, 0.3, 0.075, suit)
        p.bar(f, (-0.28, 0.0), (-0.48, 0.04), 0.06, suit)
        p.bar(f, (-0.28, -0.01), (-0.47, -0.05), 0.06, suit)
        p.poly(f, [(-0.47, 0.06), (-0.64, 0.12), (-0.65, 0.0), (-0.48, 0.02)], fins)
        p.poly(f, [(-0.46, -0.03), (-0.63, -0.02), (-0.64, -0.13), (-0.47, -0.07)], fins)
        p.poly(f, [(-0.17, 0.05), (0.2, 0.05), (0.22, 0.09), (0.2, 0.135), (-0.17, 0.135), (-0.19, 0.09)], tank)
        p.rect(f, 0.2, 0.08, 0.25, 0.11, (60, 60, 60))
        p.bar(f, (0.24, 0.02), (0.5, 0.06), 0.05, suit)
        p.ellipse(f, 0.36, 0.05, 0.075, 0.07, suit)
        p.ellipse(f, 0.41, 0.055, 0.05, 0.04, strap)
        p.ellipse(f, 0.42, 0.055, 0.035, 0.027, (150, 200, 225))
        p.ellipse(f, 0.43, 0.065, 0.01, 0.008, (255, 255, 255))
        p.bar(f, (0.35, 0.1), (0.35, 0.2), 0.018, strap)  # snorkel
        below = [(-0.66, -0.02), (0.54, -0.02), (0.54, -0.16), (-0.66, -0.16)]
        ring = (0.6, 0.1)
    else:  # head and shoulders out of the water, one hand up
        p.ellipse(f, 0, 0.04, 0.2, 0.08, suit)
        p.rect(f, 0.1, 0.04, 0.19, 0.33, tank)
        p.rect(f, 0.12, 0.33, 0.17, 0.36, (60, 60, 60))
        p.bar(f, (-0.15, 0.06), (-0.27, 0.42), 0.06, suit)
        p.ellipse(f, -0.27, 0.44, 0.04, 0.04, suit)
        p.ellipse(f, 0, 0.22, 0.1, 0.11, suit)
        p.ellipse(f, 0, 0.24, 0.09, 0.06, strap)
        p.ellipse(f, 0, 0.24, 0.07, 0.045, (150, 200, 225))
        p.ellipse(f, 0.025, 0.255, 0.015, 0.01, (255, 255, 255))
        p.ellipse(f, 0, 0.15, 0.035, 0.03, (70, 70, 75))  # regulator
        p.poly(f, [(0.32, -0.01), (0.42, 0.14), (0.48, 0.12), (0.44, -0.01)], fins)  # a fin tip sticks out
        below = [(-0.4, 0.0), (0.54, 0.0), (0.54, -0.16), (-0.4, -0.16)]
        ring = (0.45, 0.07)
    p.poly(f, below, water + (190,), emissive=None)
    cx, cy = f.pts([(0, 0)])
    rx, ry = ring[0] * f.s, ring[1] * f.s
    for k in (1.0, 1.12):
        p.ring_px((cx - rx * k, cy - ry * k, cx + rx * k, cy + ry * k), light_water + (170,), int(0.012 * f.s) + 1)


def _draw_bird(p: Painter, f: Frame, rng: np.random.Generator, ctx: Ctx, variant: int) -> None:
    color = (25, 25, 28) if ctx.time != NIGHT else (10, 10, 12)
    p.bar(f, (-0.5, 0.15), (0, 0), 0.08, color)
    p.bar(f, (0, 0), (0.5, 0.15 - 0.2 * (variant % 2)), 0.08, color)


DRAW: dict[str, Callable[[Painter, Frame, np.random.Generator, Ctx, int], None]] = {
    "car": _draw_car,
    "sherp": _draw_sherp,
    "helicopter": _draw_helicopter,
    "drone": _draw_drone,
    "horse": _draw_horse,
    "dog_handler": _draw_dog_handler,
    "hugs": _draw_hugs,
    "diver": _draw_diver,
    "person": _draw_person,
    "bird": _draw_bird,
}


def _occluder(p: Painter, rng: np.random.Generator, ctx: Ctx, occ: Occluder) -> None:
    x0, y0, x1, y1 = occ.box[0] * ctx.w, occ.box[1] * ctx.h, occ.box[2] * ctx.w, occ.box[3] * ctx.h
    if occ.kind == "trunk":
        shade = jitter(rng, (80, 60, 42), 10) if rng.random() < 0.7 else (220, 216, 205)
        p.poly_px([x0, y0, x1, y0, x1 + (x1 - x0) * 0.1, y1, x0 - (x1 - x0) * 0.1, y1], shade)
        return
    if ctx.season == WINTER:
        palette = [SNOW, (222, 228, 240)]
    elif ctx.season in FOLIAGE:
        palette = FOLIAGE[ctx.season]
    else:
        palette = [(60, 90, 50), (80, 100, 60)]
    for _ in range(int(rng.integers(4, 8))):
        cx = rng.uniform(x0, x1)
        rx = (x1 - x0) * rng.uniform(0.2, 0.35)
        ry = (y1 - y0) * rng.uniform(0.5, 0.9)
        p.ellipse(Frame(cx, y1, 1.0), 0, 0, rx, ry, jitter(rng, pick(rng, palette), 10))


# --- rendering -----------------------------------------------------------------------


def render_size(size: tuple[int, int], render_short: int = RENDER_SHORT) -> tuple[int, int]:
    """The canvas a photo of ``size`` is drawn on: the shorter side at most ``render_short``."""
    w, h = size
    k = min(1.0, render_short / min(w, h))
    return max(1, round(w * k)), max(1, round(h * k))


LIGHT = {DAY: (1.0, 1.0, 1.0), DUSK: (1.0, 0.8, 0.62), NIGHT: (0.55, 0.65, 1.0)}
DUSK_NEAR = (0.84, 0.82, 0.95)  # dusk light in the foreground: skylight, not sun


def _render(plan: ScenePlan, render_short: int = RENDER_SHORT) -> Image.Image:
    w, h = render_size(plan.size, render_short)
    rng = stream_rng(plan.seed, plan.index, STREAM_BACKGROUND)
    labels = plan.labels
    # Smooth backgrounds (sky, ground, water, walls) are computed at half resolution and
    # resized: a quarter of the numpy work, and nothing in them is sharp.
    bw, bh = (w + 1) // 2, (h + 1) // 2
    if plan.framing == "sky":
        bhz = bh  # all sky
    else:
        bhz = 0 if plan.horizon is None else round(plan.horizon * bh)
    hz = min(h, 2 * bhz)
    arr = np.zeros((bh, bw, 3), np.float32)
    ctx = Ctx(
        w, h, labels["time_of_day"], labels["season"], labels["terrain"], plan.framing, hz or None, (0, 0, 0), (0, 0, 0)
    )
    if bhz:
        arr[:bhz] = _sky(rng, ctx, bhz, bw, min(bw, bh))
        ctx.sky_horizon = tuple(float(v) for v in arr[bhz - 1].mean(axis=0))
    else:
        ctx.sky_horizon = (150.0, 165.0, 180.0)
    water_base = {NIGHT: (30, 45, 65), DUSK: (70, 60, 80)}.get(ctx.time, (40, 85, 115))
    ctx.water = jitter(rng, water_base, 6)

    edge = 0.0  # close-ups: where ground (or pavement) begins, as a fraction of the height
    if plan.framing == "wide":
        arr[bhz:] = _ground(rng, bh - bhz, bw, ctx.season, close=False)
        # atmospheric haze: the far ground fades into the sky's horizon colour
        t = np.linspace(0, 1, bh - bhz, dtype=np.float32)[:, None, None]
        arr[bhz:] += (np.float32(ctx.sky_horizon) - arr[bhz:]) * 0.35 * (1 - t) ** 4
    elif plan.framing == "water":
        arr[bhz:] = _water_pixels(rng, bh - bhz, bw, ctx)
    elif plan.framing == "close_ground":
        arr[:] = _ground(rng, bh, bw, ctx.season, close=True)
    elif plan.framing == "close_water":
        arr[:] = _water_pixels(rng, bh, bw, ctx)
    elif plan.framing == "close_forest":
        edge = _close_forest_fill(rng, ctx, arr)
    elif plan.framing == "close_city":
        edge = _close_city_fill(rng, ctx, arr)

    canvas = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB").resize((w, h), Image.Resampling.BILINEAR)
    emission = Image.new("L", (w, h), 0)
    if hz:
        emission.paste(255, (0, 0, w, hz))
    painter = Painter(canvas, emission, emissive_bottom=hz - 1 if hz else -1.0)
    if plan.framing == "close_forest":
        _close_forest(painter, rng, ctx, edge)
    elif plan.framing == "close_city":
        _close_city(painter, rng, ctx, edge)
    if hz:
        _stars(painter, rng, ctx, hz)
        _clouds(painter, rng, ctx, hz)
        _moon(painter, rng, ctx, hz, arr)
    if plan.framing == "wide":
        if ctx.terrain == FOREST:
            _forest(painter, rng, ctx, hz)
        elif ctx.terrain == CITY:
            _city(painter, rng, ctx, hz, plan.road)
        else:
            _field(painter, rng, ctx, hz)
        if plan.lake:
            _lake(painter, rng, ctx, plan.lake)
    elif plan.framing == "water":
        _ripples(painter, rng, ctx, (0, hz, w, h), 120)
    elif plan.framing == "close_water":
        _ripples(painter, rng, ctx, (0, 0, w, h), 160)
    elif plan.framing == "close_ground":
        _ground_details(painter, rng, ctx, 0, h, int(rng.integers(60, 160)))

    short = min(w, h)
    for placement in sorted(plan.objects, key=lambda o: (o.kind not in FLYING_KINDS, o.y)):
        frame = Frame(placement.x * w, placement.y * h, placement.size * short, placement.flip, placement.angle)
        DRAW[placement.kind](
            painter, frame, stream_rng(plan.seed, plan.index, placement.stream), ctx, placement.variant
        )
    for occluder in plan.occluders:
        _occluder(painter, stream_rng(plan.seed, plan.index, occluder.stream), ctx, occluder)
    return _light(canvas, emission, ctx, rng)


def render_canvas(plan: ScenePlan, render_short: int = RENDER_SHORT) -> np.ndarray:
    """The lit scene (before exposure, noise, blur and resizing) as an (h, w, 3) uint8 array."""
    return np.asarray(_render(plan, render_short))


def _light(canvas: Image.Image, emission: Image.Image, ctx: Ctx, rng: np.random.Generator) -> Image.Image:
    """Multiply the non-emissive pixels by the light of the time of day (emissive ones keep theirs)."""
    rows = (np.arange(ctx.h, dtype=np.float32) / ctx.h)[:, None, None]
    if ctx.time == NIGHT:
        # a torch or flash: the foreground is lit, the distance fades into the dark
        near, far = rng.uniform(0.55, 0.9), rng.uniform(0.33, 0.45)
        light = (far + (near - far) * rows**2) * np.float32(LIGHT[NIGHT])
    elif ctx.time == DUSK:
        # low sun: warm towards the horizon, the foreground lit by the sky (snow stays pale, bluish)
        level = np.float32(rng.uniform(0.75, 0.92))
        light = level * (np.float32(LIGHT[DUSK]) + (np.float32(DUSK_NEAR) - np.float32(LIGHT[DUSK])) * rows**1.5)
    elif ctx.time == DAY:
        light = (np.float32(LIGHT[DAY]) * np.float32(rng.uniform(0.92, 1.0)))[None, None, :]
    else:  # no sky in view: any light, so that brightness alone does not say the time
        light = (np.float32(rng.uniform(0.55, 1.0)) * rng.uniform(0.95, 1.0, 3).astype(np.float32))[None, None, :]
    if light.shape[0] == 1:  # uniform light: a per-channel table is cheaper than a multiply
        table = [min(255, int(v * float(k) + 0.5)) for k in light[0, 0] for v in range(256)]
        lit = canvas.point(table)
    else:
        light_img = Image.fromarray(np.clip(light * 255 + 0.5, 0, 255).astype(np.uint8), "RGB")
        lit = ImageChops.multiply(canvas, light_img.resize(canvas.size, Image.Resampling.NEAREST))
    return Image.composite(canvas, lit, emission)


# Standard normal quantiles of the 256 byte values: random bytes through this table are
# Gaussian noise at the cost of drawing bytes.
_NORMAL_OF_BYTE = [NormalDist().inv_cdf((b + 0.5) / 256) for b in range(256)]


def _upscale(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Bilinear up to 2x, nearest beyond: a 12 MP bilinear resize costs more than the whole scene."""
    if img.size == size:
        return img
    if size[0] > 2.5 * img.width:
        img = img.resize((img.width * 2, img.height * 2), Image.Resampling.BILINEAR)
        return img.resize(size, Image.Resampling.NEAREST)
    return img.resize(size, Image.Resampling.BILINEAR)


def render_photo(plan: ScenePlan, render_short: int = RENDER_SHORT) -> Image.Image:
    """The finished photo at ``plan.size``: scene, exposure, sensor noise, blur, resize."""
    img = _render(plan, render_short)
    rng = stream_rng(plan.seed, plan.index, STREAM_FINISH)
    exposure = [min(255, int(v * plan.exposure + 0.5)) for v in range(256)]
    img = img.point(exposure * 3)
    noise_lut = [min(255, max(0, round(128 + plan.noise * z))) for z in _NORMAL_OF_BYTE]
    noise = Image.frombytes("RGB", img.size, rng.bytes(img.width * img.height * 3)).point(noise_lut * 3)
    img = ImageChops.add(img, noise, 1.0, -128)
    if plan.blur:  # defocus: down and up again, cheaper than a Gaussian and as good at this size
        k = 1.0 + plan.blur
        img = img.resize((max(1, round(img.width / k)), max(1, round(img.height / k))), Image.Resampling.BILINEAR)
    return _upscale(img, plan.size)


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def generate(
    seed: int, index: int, min_size: int = DEFAULT_MIN_SIZE, max_size: int = DEFAULT_MAX_SIZE, tag_boost: float = 1.0
) -> tuple[bytes, ScenePlan]:
    """JPEG bytes and plan of image ``index`` of the data set ``seed``."""
    plan = plan_scene(seed, index, min_size, max_size, tag_boost)
    return encode_jpeg(render_photo(plan), plan.quality), plan


# --- the data set and the contact sheet -----------------------------------------------


def image_name(index: int) -> str:
    return f"{index:05d}.jpg"


TAG_FOR_OBJECT = {kind: tag for tag, kind in OBJECT_FOR_TAG.items()}
BOXES_FILENAME = "boxes.json"


def tag_boxes(plan: ScenePlan) -> list[list]:
    """``[tag, x0, y0, x1, y1]`` per drawn object of a binary tag, the box in fractions of the
    photo (clipped to it). Distractors (lone people, birds) are left out. Training uses these to
    label crops correctly (``train.py --low-res-mode crop``)."""
    w, h = plan.size
    out = []
    for placement in plan.objects:
        tag = TAG_FOR_OBJECT.get(placement.kind)
        if tag is None:
            continue
        x0, y0, x1, y1 = object_bbox(placement, w, h)
        out.append([tag, round(max(0.0, x0 / w), 4), round(max(0.0, y0 / h), 4),
                    round(min(1.0, x1 / w), 4), round(min(1.0, y1 / h), 4)])
    return out


def _write_one(job: tuple[Path, int, int, int, int, float]) -> tuple[int, dict[str, int], list[list]]:
    images_dir, seed, index, min_size, max_size, tag_boost = job
    data, plan = generate(seed, index, min_size, max_size, tag_boost)
    (images_dir / image_name(index)).write_bytes(data)
    return index, plan.labels, tag_boxes(plan)


def make_dataset(
    out: Path,
    count: int,
    seed: int,
    min_size: int,
    max_size: int,
    jobs: int,
    spec: AttributeSpec,
    progress: bool = True,
    tag_boost: float = 1.0,
) -> list[tuple[str, dict[str, int]]]:
    """Write ``out/images/*.jpg``, ``out/labels.csv`` and ``out/boxes.json`` (where each tagged
    object was drawn, see :func:`tag_boxes`); returns the rows written."""
    from tqdm import tqdm

    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    work = [(images_dir, seed, i, min_size, max_size, tag_boost) for i in range(count)]
    labels: dict[int, dict[str, int]] = {}
    boxes: dict[int, list[list]] = {}
    bar = tqdm(total=count, unit="img", desc="scenes", disable=not progress, mininterval=1.0)
    if jobs > 1 and count > 1:
        with multiprocessing.Pool(jobs) as pool:
            for index, row, drawn in pool.imap_unordered(_write_one, work, chunksize=4):
                labels[index], boxes[index] = row, drawn
                bar.update()
    else:
        for job in work:
            index, row, drawn = _write_one(job)
            labels[index], boxes[index] = row, drawn
            bar.update()
    bar.close()
    rows = [(image_name(i), labels[i]) for i in range(count)]
    write_labels(out / "labels.csv", rows, spec)
    (out / BOXES_FILENAME).write_text(json.dumps({image_name(i): boxes[i] for i in range(count)}, separators=(",", ":")) + "\n")
    return rows


def _caption(labels: dict[str, int], spec: AttributeSpec) -> tuple[str, str]:
    scene = " / ".join(spec[k].class_for(labels[k]).label for k in ("time_of_day", "season", "terrain"))
    tags = ", ".join(spec[k].class_for(1).label for k in OBJECT_FOR_TAG if labels[k]) or "-"
    return scene, tags


def pick_showcase(seed: int, count: int = 16, pool: int = 300) -> list[int]:
    """Indices whose scenes together show every tag and every class, greedily."""
    plans = [plan_scene(seed, i, 640, 640) for i in range(pool)]

    def features(plan: ScenePlan) -> set[str]:
        f = {f"{k}={plan.labels[k]}" for k in EXPECTED_CODES}
        f |= {k for k in OBJECT_FOR_TAG if plan.labels[k]}
        return f

    chosen: list[int] = []
    covered: set[str] = set()
    while len(chosen) < count:
        best = max((i for i in range(pool) if i not in chosen), key=lambda i: (len(features(plans[i]) - covered), -i))
        if not features(plans[best]) - covered:
            covered = set()  # everything shown once: start a second round
            if not any(features(plans[i]) for i in range(pool) if i not in chosen):
                break
            continue
        chosen.append(best)
        covered |= features(plans[best])
    return sorted(chosen)


def contact_sheet(
    path: Path, seed: int, spec: AttributeSpec, indices: Sequence[int] | None = None, cell: tuple[int, int] = (300, 225)
) -> Path:
    """A 4x4 grid of generated photos (as saved: JPEG) with their tags underneath, as PNG."""
    indices = list(indices) if indices is not None else pick_showcase(seed)
    font = ImageFont.load_default(size=13)
    cw, ch = cell
    caption_h = 36
    sheet = Image.new("RGB", (4 * cw, 4 * (ch + caption_h)), (24, 24, 26))
    draw = ImageDraw.Draw(sheet)
    for n, index in enumerate(indices[:16]):
        plan = plan_scene(seed, index, 640, 960)
        photo = Image.open(io.BytesIO(encode_jpeg(render_photo(plan), plan.quality)))
        photo.thumbnail((cw - 4, ch - 4), Image.Resampling.LANCZOS)
        x, y = (n % 4) * cw, (n // 4) * (ch + caption_h)
        sheet.paste(photo, (x + (cw - photo.width) // 2, y + (ch - photo.height) // 2))
        scene, tags = _caption(plan.labels, spec)
        draw.text((x + 4, y + ch), f"#{index} {scene}", fill=(230, 230, 230), font=font)
        draw.text((x + 4, y + ch + 16), tags, fill=(255, 200, 90), font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return path


def frequency_table(rows: Sequence[tuple[str, dict[str, int]]], spec: AttributeSpec) -> str:
    """Per attribute, how many rows have each code."""
    lines = []
    total = len(rows)
    for a in spec.attributes:
        counts = {c: sum(1 for _, labels in rows if labels[a.key] == c) for c in a.codes}
        cells = ", ".join(
            f"{a.class_for(c).label} {n} ({100 * n / max(total, 1):.1f}%)"
            for c, n in counts.items()
            if not a.is_binary or c == 1
        )
        lines.append(f"  {a.key:<12} {cells}")
    return "\n".join(lines)


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
    args = parser.parse_args(argv)
    if args.out is None and args.contact_sheet is None:
        parser.error("give --out DIR (the data set), --contact-sheet PNG, or both")
    min_size = args.min_size if args.min_size is not None else min(DEFAULT_MIN_SIZE, args.max_size)
    if not 16 <= min_size <= args.max_size:
        parser.error(f"expected 16 <= --min-size <= --max-size, got {min_size} and {args.max_size}")
    if args.count < 0 or args.jobs < 1:
        parser.error(f"expected --count >= 0 and --jobs >= 1, got {args.count} and {args.jobs}")
    spec = load_spec(args.spec) if args.spec else load_spec()
    check_spec(spec)

    if args.out is not None:
        start = time.monotonic()
        rows = make_dataset(
            args.out, args.count, args.seed, min_size, args.max_size, args.jobs, spec, progress=not args.quiet,
            tag_boost=args.tag_boost,
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


if __name__ == "__main__":
    sys.exit(main())
