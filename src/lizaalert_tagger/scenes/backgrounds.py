"""Backgrounds: sky, clouds, stars and moon; ground by season; forest, city, open field and
water; the close-up fills (forest interior, facade) where no sky is in view."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from lizaalert_tagger.scenes.context import CONIFER, FOLIAGE, SNOW, Ctx
from lizaalert_tagger.scenes.paint import Frame, Painter, _gradient, _mix, _smoothstep, jitter, pick, value_noise
from lizaalert_tagger.scenes.plan import AUTUMN, CITY, DAY, DUSK, NIGHT, SEASON_NONE, SPRING, SUMMER, WINTER


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
