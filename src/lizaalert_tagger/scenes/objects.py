"""The drawn objects in their local units (``DRAW``: the tagged kinds of ``plan.DRAWN_TAGS``, lone
people and birds as distractors) and the occluders (bushes, snowdrifts, trunks) in front of them."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from lizaalert_tagger.scenes.context import FOLIAGE, SNOW, Ctx
from lizaalert_tagger.scenes.paint import Frame, Painter, _ellipse_pts, jitter, pick
from lizaalert_tagger.scenes.plan import NIGHT, WINTER, Occluder


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


def _draw_tent(p: Painter, f: Frame, rng: np.random.Generator, ctx: Ctx, variant: int) -> None:
    """A ridge tent seen at an angle: its long side in shade, the lit front with the door."""
    fly = jitter(rng, pick(rng, [(240, 110, 25), (40, 90, 170), (60, 120, 60), (200, 40, 40), (235, 200, 40)]), 10)
    shade = (int(fly[0] * 0.65), int(fly[1] * 0.65), int(fly[2] * 0.65))
    p.poly(f, [(-0.55, 0.0), (0.2, 0.0), (0.34, 0.6), (-0.3, 0.6)], shade)
    p.poly(f, [(0.2, 0.0), (0.55, 0.0), (0.34, 0.6)], fly)
    p.poly(f, [(0.3, 0.0), (0.46, 0.0), (0.37, 0.32)], (35, 32, 30))  # the open door
    if ctx.season == WINTER and variant % 2 == 0:
        p.bar(f, (-0.3, 0.6), (0.34, 0.6), 0.03, SNOW)
    p.rect(f, 0.33, 0.0, 0.35, 0.6, (45, 45, 45) if variant < 2 else shade)  # the front pole


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
    "tent": _draw_tent,
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
