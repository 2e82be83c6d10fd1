"""Planning a scene: what the generator knows about the spec's codes, how often each
framing, label and photo size comes up, and where each object goes (``plan_scene``).

Every image ``i`` draws from ``numpy.random.default_rng([seed, i, stream])`` (``stream_rng``):
the plan from ``STREAM_PLAN``; the background, the finish, each object and each occluder
from streams of their own, so that one image's pixels never depend on another's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from lizaalert_tagger.scenes.paint import Frame
from lizaalert_tagger.common.spec import AttributeSpec

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


# --- the tagged objects' boxes (boxes.json) -------------------------------------------

TAG_FOR_OBJECT = {kind: tag for tag, kind in OBJECT_FOR_TAG.items()}


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
