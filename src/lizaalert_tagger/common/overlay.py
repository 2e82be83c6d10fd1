"""An explanation drawn over the photo for a person: the Grad-CAM maps of the present tags and a
legend with every tag and its score.

Pillow and numpy only (no torch): ``tagctl explain`` draws with it from the maps the server
returns, and the server uses it for ``"overlay": true``; both therefore draw the same picture.

The maps cover the photo squashed to the model's input, so each is stretched over the whole
photo, whatever its aspect ratio. Only binary attributes explained as present (predicted, or
asked for with ``target``) are drawn: each gets a colour, a tinted area where its map is above
``LOW``, an outline where it is above ``EDGE`` and a ring at its peak; categorical attributes
(time of day, season, terrain) describe the whole scene and are listed in the legend only.
"""
from __future__ import annotations

import colorsys
import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from lizaalert_tagger.common.formats import open_image

# The binary attributes' colours in the answer's (the spec's) order, distinct on green, grey, white
# and dark scenes; attributes beyond them get hues of their own (colour_of).
PALETTE = ((255, 140, 0), (255, 40, 40), (0, 200, 255), (255, 0, 220), (255, 230, 0), (0, 255, 120), (60, 110, 255),
           (255, 120, 170))
LOW = 0.35  # below this share of the peak a map is not drawn
EDGE = 0.6  # the outline
MAX_ALPHA = 0.55
LEGEND_WIDTH = 300  # px, at the reference size (the legend scales with the photo's height)
REFERENCE_HEIGHT = 768


def open_photo(data: bytes, long_side: int | None = None) -> Image.Image:
    """The photo upright (EXIF orientation, as the server sees it), RGB, its long side at most ``long_side``.

    A JPEG is decoded in draft mode: libjpeg downscales by 1/2..1/8 to the smallest scale that still
    covers the size asked for (in both directions), then :func:`fit` shrinks it with Lanczos."""
    image = open_image(data)
    if long_side and image.format in ("JPEG", "MPO"):
        scale = long_side / max(image.size)
        image.draft("RGB", (max(1, math.ceil(image.width * scale)), max(1, math.ceil(image.height * scale))))
    image = ImageOps.exif_transpose(image) or image
    return fit(image.convert("RGB"), long_side)


def fit(image: Image.Image, long_side: int | None) -> Image.Image:
    """``image`` with its long side at most ``long_side``: a shrunk copy, or ``image`` itself when it fits."""
    if not long_side or max(image.size) <= long_side:
        return image
    image = image.copy()
    image.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    return image


def overlay_png(photo: Image.Image, answer: Mapping[str, Any], long_side: int | None = None) -> bytes:
    """:func:`draw_overlay` over ``photo`` (upright RGB, shrunk to ``long_side``) as PNG bytes: what the
    server answers with ``"overlay": true``, drawn on the photo it has already decoded."""
    buffer = io.BytesIO()
    draw_overlay(fit(photo, long_side), answer).save(buffer, "PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def _font(size: int) -> ImageFont.ImageFont:
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def drawn_keys(answer: Mapping[str, Any]) -> list[str]:
    """Binary attributes explained as present, in the answer's order."""
    explanations = answer.get("explanations") or {}
    return [key for key, e in explanations.items() if key in _binary_keys(answer) and e.get("value") == 1]


def colour_of(answer: Mapping[str, Any], key: str) -> tuple[int, int, int]:
    """The colour of binary attribute ``key``: its place among the answer's binary attributes picks it
    from ``PALETTE``; past its end, hues a golden angle apart."""
    binary = _binary_keys(answer)
    keys = [k for k in (answer.get("attributes") or {}) if k in binary]
    index = keys.index(key) if key in keys else len(keys)
    if index < len(PALETTE):
        return PALETTE[index]
    red, green, blue = colorsys.hsv_to_rgb((index - len(PALETTE)) * 0.618034 % 1.0, 0.85, 1.0)
    return round(255 * red), round(255 * green), round(255 * blue)


def _binary_keys(answer: Mapping[str, Any]) -> set[str]:
    """Binary attributes are those without class probabilities in the answer."""
    return {key for key, value in (answer.get("attributes") or {}).items() if "probabilities" not in value}


def presence(answer: Mapping[str, Any], key: str) -> float | None:
    """P(present) of a binary attribute from the answer (its score is the decision's score)."""
    value = (answer.get("attributes") or {}).get(key)
    if not value or "score" not in value:
        return None
    return float(value["score"]) if value.get("code") == 1 else 1.0 - float(value["score"])


def _upsample(cells: list[list[float]], size: tuple[int, int]) -> np.ndarray:
    grid = np.asarray(cells, dtype=np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def draw_overlay(photo: Image.Image, answer: Mapping[str, Any]) -> Image.Image:
    """The photo with the present tags' maps over it and a legend on the right."""
    photo = photo.convert("RGB")
    width, height = photo.size
    base = np.asarray(photo, dtype=np.float32) * 0.8 + 0.2 * 128  # a little flatter, so the colours stand out
    explanations = answer.get("explanations") or {}
    keys = drawn_keys(answer)
    outlines = []
    for key in keys:
        heat = _upsample(explanations[key]["map"], (width, height))
        colour = np.asarray(colour_of(answer, key), dtype=np.float32)
        alpha = np.clip((heat - LOW) / (1 - LOW), 0, 1)[..., None] * MAX_ALPHA
        base = base * (1 - alpha) + colour * alpha
        mask = Image.fromarray(((heat >= EDGE) * 255).astype(np.uint8), "L")
        edge = mask.filter(ImageFilter.FIND_EDGES).filter(ImageFilter.MaxFilter(3))
        peak_y, peak_x = np.unravel_index(int(np.argmax(heat)), heat.shape)
        outlines.append((key, edge, (int(peak_x), int(peak_y))))
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    scale = max(0.6, height / REFERENCE_HEIGHT)
    label_font = _font(int(15 * scale))
    radius = int(9 * scale)
    for key, edge, (x, y) in outlines:
        colour = colour_of(answer, key)
        image.paste(Image.new("RGB", image.size, colour), mask=edge)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=(0, 0, 0), width=max(2, radius // 3 + 1))
        draw.ellipse((x - radius + 2, y - radius + 2, x + radius - 2, y + radius - 2), outline=colour, width=max(1, radius // 4))
        text = _label(answer, key)
        tx, ty = min(x + radius + 3, width - 4), max(2, y - radius)
        box = draw.textbbox((tx, ty), text, font=label_font)
        if box[2] > width - 2:  # no room on the right of the peak: put the label on its left
            tx -= box[2] - box[0] + 2 * radius + 6
            box = draw.textbbox((tx, ty), text, font=label_font)
        draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
        draw.text((tx, ty), text, fill=colour, font=label_font)
    return _with_legend(image, answer, keys, scale)


def _label(answer: Mapping[str, Any], key: str) -> str:
    value = (answer.get("attributes") or {}).get(key) or {}
    explained = (answer.get("explanations") or {}).get(key) or {}
    name = explained.get("label") or value.get("label") or key
    return str(name)


def _with_legend(image: Image.Image, answer: Mapping[str, Any], keys: list[str], scale: float) -> Image.Image:
    width, height = image.size
    legend_width = int(LEGEND_WIDTH * scale)
    title_font, font, small = _font(int(17 * scale)), _font(int(15 * scale)), _font(int(13 * scale))
    canvas = Image.new("RGB", (width + legend_width, height), (24, 24, 28))
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    x, y = width + int(12 * scale), int(10 * scale)
    line = int(21 * scale)
    swatch = int(13 * scale)
    attributes = answer.get("attributes") or {}
    explanations = answer.get("explanations") or {}

    def text(value: str, fill=(235, 235, 235), used=font, step=line) -> None:
        nonlocal y
        draw.text((x, y), value, fill=fill, font=used)
        y += step

    text("Where the model looked", used=title_font, step=int(line * 1.2))
    if keys:
        for key in keys:
            colour = colour_of(answer, key)
            draw.rectangle((x, y + 3, x + swatch, y + 3 + swatch), fill=colour)
            p = presence(answer, key)
            asked = explanations.get(key, {}).get("target") == "requested"
            predicted = attributes.get(key, {}).get("code") == 1
            note = "" if predicted else " (asked; not predicted)" if asked else ""
            draw.text((x + swatch + 8, y), f"{_label(answer, key)}  {p:.2f}{note}" if p is not None else _label(answer, key),
                      fill=colour, font=font)
            y += line
    else:
        text("no objects found", fill=(200, 200, 200))
    y += line // 2
    text("Scene", fill=(170, 170, 170), used=small, step=int(line * 0.9))
    for key, value in attributes.items():
        if "probabilities" in value:
            text(f"{key.replace('_', ' ')}: {value.get('label')}  {float(value.get('score', 0)):.2f}", used=small,
                 step=int(line * 0.9))
    absent = [value.get("label", key) for key, value in attributes.items()
              if "probabilities" not in value and key not in keys and value.get("code") != 1]
    if absent:
        y += line // 2
        text("Not found (score = P(absent))", fill=(170, 170, 170), used=small, step=int(line * 0.9))
        for key, value in attributes.items():
            if "probabilities" not in value and key not in keys and value.get("code") != 1:
                text(f"{key.replace('_', ' ')}  {float(value.get('score', 0)):.2f}", fill=(150, 150, 150), used=small,
                     step=int(line * 0.85))
    model = answer.get("model") or {}
    info = answer.get("explained_with") or {}
    footer = f"{model.get('name', '')} {model.get('version', '')}".strip()
    method = f"{info.get('method', 'grad-cam')} at {info.get('layer', '?')}" if info else ""
    y = height - int(2.2 * line)
    if method:
        draw.text((x, y), method, fill=(150, 150, 150), font=small)
    if footer:
        draw.text((x, y + int(line * 0.95)), footer, fill=(150, 150, 150), font=small)
    return canvas
