"""Planning a scene: what the generator knows about the spec's codes, how often each
framing, label and photo size comes up, and where each object goes (``plan_scene``).

Every image ``i`` draws from ``numpy.random.default_rng([seed, i, stream])`` (``stream_rng``):
the plan from ``STREAM_PLAN``; the background, the finish, each object and each occluder
from streams of their own, so that one image's pixels never depend on another's.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np
from lizaalert_tagger.common.spec import AttributeSpec, load_spec
from lizaalert_tagger.scenes.paint import Frame

# --- what the generator knows about the spec's codes -----------------------------

TIME_NONE, DAY, NIGHT, DUSK = 0, 1, 2, 3
SEASON_NONE, WINTER, SPRING, SUMMER, AUTUMN = 0, 1, 2, 3, 4
TERRAIN_NONE, FOREST, CITY = 0, 1, 2
# the categorical attributes the backgrounds draw, with their codes
EXPECTED_CODES = {"time_of_day": (0, 1, 2, 3), "season": (0, 1, 2, 3, 4), "terrain": (0, 1, 2)}

RENDER_SHORT = 480  # scenes are drawn at this shorter side (or the photo's, if smaller), then resized
DEFAULT_MIN_SIZE = 640
DEFAULT_MAX_SIZE = 4000


def default_min_size(max_size: int) -> int:
    """The smallest long side of a photo when none is given: ``DEFAULT_MIN_SIZE``, or ``max_size`` if smaller."""
    return min(DEFAULT_MIN_SIZE, max_size)


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
TIME_OF_SKY = {DAY: 0.75, NIGHT: 0.15, DUSK: 0.10}  # when sky is visible (the seed's predictions: 60/12/8 of 80)
SEASONS = {WINTER: 0.28, SPRING: 0.20, SUMMER: 0.30, AUTUMN: 0.22}
WIDE_TERRAIN = {TERRAIN_NONE: 0.34, FOREST: 0.52, CITY: 0.14}
CLOSE_CITY_SEASON = {SEASON_NONE: 0.5, WINTER: 0.25, SUMMER: 0.1, AUTUMN: 0.15}
# --tag-boost multiplies the object probabilities (for training sets: more
# positive examples of the rare tags per second of training); capped here.
MAX_BOOSTED_PROBABILITY = 0.6


@dataclass(frozen=True)
class DrawnTag:
    """How the generator draws one binary attribute.

    ``kind``: the object drawn (``objects.DRAW``, ``EXTENTS``, ``SIZE_RANGE``); ``probability``: its
    chance in each framing (a framing not named: never there); ``city_probability``: the chance in a
    wide city view instead; ``place``: where it goes (one of ``PLACES``); ``extra_copies``: the chance
    of each further copy in the same photo.
    """

    kind: str
    probability: Mapping[str, float]
    place: str = "ground"
    city_probability: float | None = None
    extra_copies: tuple[float, ...] = ()


# Where objects go, in the order they are placed: a water object first (its lake shapes the
# ground), then aircraft (flying, or landed on the ground), then hovering ones (in the sky, or
# anywhere in a close-up), then those standing on the ground.
PLACES = ("water", "aircraft", "hover", "ground")

# Binary attribute key -> how it is drawn. Used for the keys the spec has: a new binary attribute
# needs an entry here and a drawing in objects.DRAW. "tent" is in no shipped spec; it shows
# (and tests) that a twelfth attribute needs only the spec and a drawing.
DRAWN_TAGS: dict[str, DrawnTag] = {
    "sherp": DrawnTag("sherp", {"wide": 0.07, "close_ground": 0.07, "close_forest": 0.03}, city_probability=0.02),
    "car": DrawnTag("car", {"wide": 0.09, "close_ground": 0.07, "close_forest": 0.03, "close_city": 0.3},
                    city_probability=0.28, extra_copies=(0.35, 0.15)),
    "aviation": DrawnTag("helicopter", {"wide": 0.06, "sky": 0.5, "water": 0.15}, place="aircraft"),
    "drone": DrawnTag("drone", {"wide": 0.05, "sky": 0.4, "water": 0.1, "close_ground": 0.08, "close_forest": 0.04,
                                "close_city": 0.05}, place="hover"),
    "horses": DrawnTag("horse", {"wide": 0.08, "close_ground": 0.07, "close_forest": 0.06}, city_probability=0.03,
                       extra_copies=(0.35, 0.15)),
    "dog_handler": DrawnTag("dog_handler", {"wide": 0.07, "close_ground": 0.12, "close_forest": 0.15, "close_city": 0.1}),
    "diver": DrawnTag("diver", {"wide": 0.035, "water": 0.45, "close_water": 0.5}, place="water"),
    "hugs": DrawnTag("hugs", {"wide": 0.06, "close_ground": 0.12, "close_forest": 0.1, "close_city": 0.12}),
    "tent": DrawnTag("tent", {"wide": 0.06, "close_ground": 0.06, "close_forest": 0.05}),
}

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
    "tent": (-0.56, 0.56, -0.01, 0.62),
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
    "tent": (0.13, 0.6),
    "person": (0.1, 0.6),
    "bird": (0.025, 0.06),
}
GROUND_KINDS = ("car", "sherp", "horse", "dog_handler", "hugs", "tent", "person")
FLYING_KINDS = ("helicopter", "drone", "bird")


def check_spec(spec: AttributeSpec) -> None:
    """Refuse a spec whose keys or codes are not the ones this generator draws."""
    for key, codes in EXPECTED_CODES.items():
        if key not in spec.keys:
            raise ValueError(f"the scene generator draws {key} (codes {codes}); the spec has no such attribute")
        if tuple(sorted(spec[key].codes)) != codes:
            raise ValueError(f"the scene generator draws {key} codes {codes}, the spec has {spec[key].codes}")
    for a in spec.attributes:
        if a.key in EXPECTED_CODES:
            continue
        if a.key not in DRAWN_TAGS:
            raise ValueError(f"the scene generator has no drawing for the spec's {a.key!r}: it draws "
                             f"{sorted(DRAWN_TAGS)} (add one: scenes.plan.DRAWN_TAGS and scenes.objects.DRAW)")
        if not a.is_binary:
            raise ValueError(f"the scene generator draws {a.key} as a binary tag, the spec says {a.kind}")


@functools.lru_cache(maxsize=8)
def drawn_tags(spec: AttributeSpec | None = None) -> tuple[str, ...]:
    """The binary keys of ``spec`` (default: the shipped spec) in its order, after :func:`check_spec`."""
    spec = spec if spec is not None else load_spec()
    check_spec(spec)
    return tuple(a.key for a in spec.attributes if a.key not in EXPECTED_CODES)


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


def _sample_framing_and_labels(
    rng: np.random.Generator, tags: tuple[str, ...], tag_boost: float = 1.0
) -> tuple[str, dict[str, int]]:
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
    city = framing == "wide" and terrain == CITY
    draws = rng.random(len(tags))  # always the same number of draws
    for draw, key in zip(draws, tags):
        drawn = DRAWN_TAGS[key]
        p = drawn.city_probability if city and drawn.city_probability is not None else drawn.probability.get(framing, 0.0)
        labels[key] = int(draw < min(MAX_BOOSTED_PROBABILITY, tag_boost * p))
    return framing, labels


def sample_labels(rng: np.random.Generator, spec: AttributeSpec | None = None) -> dict[str, int]:
    """The labels of one scene, without rendering it (the first draws of ``plan_scene``)."""
    return _sample_framing_and_labels(rng, drawn_tags(spec))[1]


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


Spot = Callable[[str], tuple[float, float, float]]  # kind -> anchor x, y and size
GROUND_TOP = {"close_ground": 0.3, "close_forest": 0.55, "close_city": 0.72, "close_water": 0.2}  # close-ups: where ground begins


class _Layout:
    """Where the objects of one scene go. Every method draws from the plan's generator, so the
    order of the calls is part of the output: ``plan_scene`` makes them in a fixed order."""

    def __init__(self, rng: np.random.Generator, framing: str, labels: dict[str, int], size: tuple[int, int]) -> None:
        self.rng, self.framing, self.labels = rng, framing, labels
        self.w, self.h = size
        aspect = self.w / self.h  # fractions of the shorter side -> of width/height
        self.sx, self.sy = (1.0, aspect) if self.w < self.h else (1.0 / aspect, 1.0)  # size fraction * sx = of width
        self.horizon = None
        if framing == "wide":
            self.horizon = float(rng.uniform(0.3, 0.62))
        elif framing == "water":
            self.horizon = float(rng.uniform(0.3, 0.6))
        self.ground_top = GROUND_TOP.get(framing, self.horizon)
        self.boxes: list[np.ndarray] = []
        self.objects: list[Placement] = []
        self.stream = STREAM_OBJECT

    def sized(self, kind: str, t: float | None = None) -> float:
        lo, hi = SIZE_RANGE[kind]
        if t is None:  # log-uniform: small objects as often as large ones
            return float(math.exp(self.rng.uniform(math.log(lo), math.log(hi))))
        return float(max(lo, min(hi, (lo + (hi - lo) * t**1.3) * self.rng.uniform(0.75, 1.15))))

    def add(self, kind: str, x: float, y: float, size: float, flip: int | None = None, angle: float = 0.0,
            force: bool = False) -> bool:
        """Place the object unless it would hide much of one already placed (``force``: anyway)."""
        flip = flip if flip is not None else (1 if self.rng.random() < 0.5 else -1)
        variant = int(self.rng.integers(0, 4))
        box = _frac_bbox(kind, x, y, size, self.w, self.h, flip, angle)
        if not force and any(_overlap(box, other) > 0.35 for other in self.boxes):
            return False
        self.boxes.append(box)
        self.objects.append(Placement(kind, round(x, 5), round(y, 5), round(size, 5), flip, round(angle, 3), variant,
                                      self.stream))
        self.stream += 1
        return True

    def place(self, kind: str, spot: Spot, **kw) -> None:
        """Up to 12 tries at free spots; the last one is placed whatever it hides."""
        for attempt in range(12):
            x, y, size = spot(kind)
            if self.add(kind, x, y, size, force=attempt == 11, **kw):
                return

    def in_frame_x(self, kind: str, size: float) -> float:
        """An anchor that keeps most (~85 %) of the object's width in the frame."""
        reach = max(-EXTENTS[kind][0], EXTENTS[kind][1]) * size * self.sx
        lo, hi = max(0.04, reach * 0.7), min(0.96, 1 - reach * 0.7)
        return float(self.rng.uniform(lo, hi)) if lo < hi else 0.5

    def ground_spot(self, kind: str) -> tuple[float, float, float]:
        top = self.ground_top if self.ground_top is not None else 0.5
        y = float(self.rng.uniform(top + 0.06 * (1 - top), 0.98))
        t = (y - top) / max(1e-6, 1 - top)
        size = self.sized(kind, t if self.framing == "wide" else None)
        return self.in_frame_x(kind, size), y, size

    def sky_spot(self, kind: str) -> tuple[float, float, float]:
        size = self.sized(kind)
        if self.framing == "sky" or self.horizon is None:
            y = float(self.rng.uniform(0.15, 0.85))
        else:
            y = float(self.rng.uniform(0.08, max(0.1, self.horizon - 0.05)))
        return self.in_frame_x(kind, size), y, size

    def landed_spot(self, kind: str) -> tuple[float, float, float]:
        x, y, size = self.ground_spot(kind)
        return x, y - 0.2 * size * self.sy, size  # the anchor is the centre; skids on the ground

    def anywhere_spot(self, kind: str) -> tuple[float, float, float]:
        return float(self.rng.uniform(0.15, 0.85)), float(self.rng.uniform(0.15, 0.75)), self.sized(kind)

    # --- one method per place (PLACES)
    def water(self, kinds: list[str]) -> tuple[float, float, float, float] | None:
        """The water objects, in a lake of a wide view or in open water; else, now and then, an empty lake."""
        rng, lake = self.rng, None
        for kind in kinds:
            if self.framing != "wide":
                top = (self.horizon or 0.0) + 0.08
                self.place(kind, lambda k: (float(rng.uniform(0.2, 0.8)), float(rng.uniform(top + 0.1 * (1 - top), 0.85)),
                                            self.sized(k)))
                continue
            size = self.sized(kind, None) * 0.8
            if lake is None:
                rx = max(float(rng.uniform(0.18, 0.4)), 0.75 * size * self.sx)
                ry = max(float(rng.uniform(0.06, 0.14)), 0.4 * size * self.sy)
                cy = float(rng.uniform(min(0.97, self.horizon + ry + 0.03), max(self.horizon + ry + 0.03, 0.98 - 0.4 * ry)))
                cx = float(rng.uniform(max(rx * 0.7, 0.2), min(1 - rx * 0.7, 0.8)))
                lake = (cx, cy, rx, ry)
            cx, cy, rx, ry = lake
            self.add(kind, cx + float(rng.uniform(-0.2, 0.2)) * rx, cy + float(rng.uniform(-0.1, 0.25)) * ry, size, force=True)
        if not kinds and self.framing == "wide" and self.labels["terrain"] != CITY and rng.random() < 0.12:
            lake = (float(rng.uniform(0.25, 0.75)), float(rng.uniform(self.horizon + 0.12, 0.9)),
                    float(rng.uniform(0.15, 0.4)), float(rng.uniform(0.05, 0.12)))
        return lake

    def aircraft(self, drawn: DrawnTag) -> None:
        if self.framing == "wide" and self.rng.random() < 0.2:  # landed
            self.place(drawn.kind, self.landed_spot, angle=0.0)
        else:
            self.place(drawn.kind, self.sky_spot, angle=float(self.rng.uniform(-12, 8)))

    def hover(self, drawn: DrawnTag) -> None:
        self.place(drawn.kind, self.sky_spot if self.framing in ("wide", "sky", "water") else self.anywhere_spot)

    def ground(self, drawn: DrawnTag) -> None:
        copies = 1 + sum(int(self.rng.random() < p) for p in drawn.extra_copies)
        for _ in range(copies):
            self.place(drawn.kind, self.ground_spot)

    def distractors(self) -> None:
        """Lone people (not hugging, no dog) and birds, so that no tag means just "someone"."""
        if self.framing not in ("sky", "water", "close_water") and self.rng.random() < 0.25:
            for _ in range(int(self.rng.integers(1, 4))):
                self.place("person", self.ground_spot)
        if self.framing in ("wide", "sky", "water") and self.rng.random() < 0.15:
            for _ in range(int(self.rng.integers(1, 6))):
                self.place("bird", self.sky_spot)

    def occluders(self) -> tuple[Occluder, ...]:
        """Now and then a trunk (in forests) or a bush or snowdrift in front of a ground object."""
        rng, out = self.rng, []
        for k, placement in enumerate(self.objects):
            if placement.kind not in GROUND_KINDS or not rng.random() < 0.2:
                continue
            x0, y0, x1, y1 = self.boxes[k]
            bw, bh = x1 - x0, y1 - y0
            if self.framing == "close_forest" or (self.labels["terrain"] == FOREST and rng.random() < 0.4):
                cx = float(rng.uniform(x0 + 0.2 * bw, x1 - 0.2 * bw))
                half = float(rng.uniform(0.06, 0.12)) * bw
                out.append(Occluder("trunk", (cx - half, -0.05, cx + half, min(1.05, y1 + 0.1 * bh)), STREAM_OCCLUDER + k))
            else:
                left = x0 + float(rng.uniform(-0.3, 0.5)) * bw
                top = y1 - float(rng.uniform(0.2, 0.45)) * bh
                right = left + float(rng.uniform(0.4, 0.8)) * bw
                out.append(Occluder("bush", (left, top, right, y1 + 0.04 * bh), STREAM_OCCLUDER + k))
        return tuple(out)


def plan_scene(
    seed: int,
    index: int,
    min_size: int = DEFAULT_MIN_SIZE,
    max_size: int = DEFAULT_MAX_SIZE,
    tag_boost: float = 1.0,
    spec: AttributeSpec | None = None,
) -> ScenePlan:
    """Decide everything about image ``index`` that its labels depend on, for the attributes of
    ``spec`` (default: the shipped spec)."""
    tags = drawn_tags(spec)
    rng = stream_rng(seed, index, STREAM_PLAN)
    framing, labels = _sample_framing_and_labels(rng, tags, tag_boost)
    photo_size = sample_size(rng, min_size, max_size)
    layout = _Layout(rng, framing, labels, photo_size)
    present = [DRAWN_TAGS[key] for key in tags if labels[key]]
    lake = layout.water([drawn.kind for drawn in present if drawn.place == "water"])
    road = framing == "wide" and labels["terrain"] == CITY and rng.random() < 0.8
    placers = {"aircraft": layout.aircraft, "hover": layout.hover, "ground": layout.ground}
    for place in PLACES[1:]:
        for drawn in present:
            if drawn.place == place:
                placers[place](drawn)
    layout.distractors()
    occluders = layout.occluders()
    night = labels["time_of_day"] == NIGHT
    return ScenePlan(
        seed=seed,
        index=index,
        framing=framing,
        labels=labels,
        size=photo_size,
        horizon=layout.horizon,
        lake=lake,
        road=road,
        objects=tuple(layout.objects),
        occluders=occluders,
        quality=int(rng.integers(60, 96)),
        noise=float(rng.uniform(3.0, 9.0) if night else rng.uniform(1.0, 5.0)),
        blur=float(rng.uniform(0.4, 1.3)) if rng.random() < 0.3 else 0.0,
        exposure=float(rng.uniform(0.88, 1.12)),
    )


# --- the tagged objects' boxes (boxes.json) -------------------------------------------

TAG_FOR_OBJECT = {drawn.kind: tag for tag, drawn in DRAWN_TAGS.items()}


def tag_boxes(plan: ScenePlan) -> list[list]:
    """``[tag, x0, y0, x1, y1]`` per drawn object of a binary tag, the box in fractions of the
    photo (clipped to it). Distractors (lone people, birds) are left out. Training uses these to
    label crops correctly (``lizaalert-train --low-res-mode crop``)."""
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
