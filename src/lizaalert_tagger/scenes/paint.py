"""Drawing primitives: ``Frame`` (an object's local units to pixels), ``Painter`` (polygons on
the canvas and, alongside, on the emission mask), colour helpers and smooth noise/gradients."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw


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
