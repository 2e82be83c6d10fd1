"""Opt-in weather over a lit scene, before exposure, noise and resizing: photos of a kind the default
model saw none of (``lizaalert-scenes --weather``; ``docs/review-loop.md`` measures what they cost it).

- ``clear``: nothing (the default; every scene is byte for byte what it was before the option existed);
- ``fog``: a haze of the scene's own light, densest at and above the horizon, thinning towards the
  foreground (near objects stay visible), uniform and lighter in close-ups;
- ``dim``: an underexposed photo (a quarter to under half the light) with extra sensor noise.

Each draws from a stream of its own (``STREAM_WEATHER``), so the plan, the drawing and the finish
draw exactly what they drew before.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from lizaalert_tagger.scenes.plan import ScenePlan, stream_rng

CLEAR = "clear"
STREAM_WEATHER = 3
FOG_DENSITY = (0.55, 0.85)  # at the horizon and above
FOG_NEAR = 0.2  # the foreground's share of that density
FOG_CLOSE_UP = 0.6  # close-ups (no horizon): this share of it, uniform
FOG_GREY = (210.0, 214.0, 220.0)  # daylight fog; darker scenes give darker fog
DIM_LIGHT = (0.25, 0.45)
DIM_NOISE = (4.0, 10.0)  # standard deviation of the extra noise, in 8-bit levels


def _fog(img: Image.Image, plan: ScenePlan, rng: np.random.Generator) -> Image.Image:
    arr = np.asarray(img, dtype=np.float32)
    h = arr.shape[0]
    density = float(rng.uniform(*FOG_DENSITY))
    mean = arr.reshape(-1, 3).mean(axis=0)
    brightness = float(np.clip(mean @ np.float32([0.299, 0.587, 0.114]) / 110.0, 0.3, 1.0))
    colour = 0.4 * mean + 0.6 * brightness * np.float32(FOG_GREY)
    rows = (np.arange(h, dtype=np.float32) + 0.5) / h
    if plan.horizon is None and plan.framing != "sky":
        alpha = np.full(h, density * FOG_CLOSE_UP, dtype=np.float32)
    else:
        horizon = plan.horizon if plan.horizon is not None else 1.0
        below = np.clip((rows - horizon) / max(1e-6, 1.0 - horizon), 0.0, 1.0)
        alpha = density * (FOG_NEAR + (1.0 - FOG_NEAR) * (1.0 - below) ** 1.5)
    alpha = alpha[:, None, None]
    out = arr * (1.0 - alpha) + colour * alpha
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGB")


def _dim(img: Image.Image, plan: ScenePlan, rng: np.random.Generator) -> Image.Image:  # noqa: ARG001
    arr = np.asarray(img, dtype=np.float32)
    light = float(rng.uniform(*DIM_LIGHT))
    noise = rng.normal(0.0, float(rng.uniform(*DIM_NOISE)), size=arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr * light + noise + 0.5, 0, 255).astype(np.uint8), "RGB")


WEATHERS: dict[str, Callable[[Image.Image, ScenePlan, np.random.Generator], Image.Image]] = {
    "fog": _fog,
    "dim": _dim,
}
WEATHER_CHOICES = (CLEAR, *WEATHERS)


def check_weather(weather: str) -> None:
    """Refuse a weather this generator does not draw."""
    if weather not in WEATHER_CHOICES:
        raise ValueError(f"weather: expected one of {WEATHER_CHOICES}, got {weather!r}")


def apply_weather(img: Image.Image, plan: ScenePlan, weather: str) -> Image.Image:
    """``img`` (the lit scene of ``plan``) under ``weather``, one of ``WEATHER_CHOICES``."""
    check_weather(weather)
    if weather == CLEAR:
        return img
    return WEATHERS[weather](img, plan, stream_rng(plan.seed, plan.index, STREAM_WEATHER))
