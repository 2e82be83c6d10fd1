"""Rendering a planned scene: background, objects and occluders on a moderate canvas, the
light of the time of day, then exposure, sensor noise, blur and the resize to the photo's
size (``render_photo``); ``generate`` gives the JPEG bytes of one image."""

from __future__ import annotations

import io
from statistics import NormalDist

import numpy as np
from lizaalert_tagger.common.spec import AttributeSpec
from lizaalert_tagger.scenes.backgrounds import (
    _city,
    _close_city,
    _close_city_fill,
    _close_forest,
    _close_forest_fill,
    _clouds,
    _field,
    _forest,
    _ground,
    _ground_details,
    _lake,
    _moon,
    _ripples,
    _sky,
    _stars,
    _water_pixels,
)
from lizaalert_tagger.scenes.context import Ctx
from lizaalert_tagger.scenes.objects import DRAW, _occluder
from lizaalert_tagger.scenes.paint import Frame, Painter, jitter
from lizaalert_tagger.scenes.plan import (
    CITY,
    DAY,
    DEFAULT_MAX_SIZE,
    DEFAULT_MIN_SIZE,
    DUSK,
    FLYING_KINDS,
    FOREST,
    NIGHT,
    RENDER_SHORT,
    STREAM_BACKGROUND,
    STREAM_FINISH,
    ScenePlan,
    plan_scene,
    stream_rng,
)
from lizaalert_tagger.scenes.weather import CLEAR, apply_weather
from PIL import Image, ImageChops


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


def render_photo(plan: ScenePlan, render_short: int = RENDER_SHORT, weather: str = CLEAR) -> Image.Image:
    """The finished photo at ``plan.size``: scene, ``weather`` (``scenes.weather``), exposure, sensor noise,
    blur, resize."""
    img = apply_weather(_render(plan, render_short), plan, weather)
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
    seed: int,
    index: int,
    min_size: int = DEFAULT_MIN_SIZE,
    max_size: int = DEFAULT_MAX_SIZE,
    tag_boost: float = 1.0,
    spec: AttributeSpec | None = None,
    weather: str = CLEAR,
) -> tuple[bytes, ScenePlan]:
    """JPEG bytes and plan of image ``index`` of the data set ``seed`` (the attributes of ``spec``,
    default: the shipped spec; ``weather``: see ``scenes.weather``)."""
    plan = plan_scene(seed, index, min_size, max_size, tag_boost, spec)
    return encode_jpeg(render_photo(plan, weather=weather), plan.quality), plan
