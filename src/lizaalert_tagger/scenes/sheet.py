"""The contact sheet: a 4x4 grid of generated photos with their tags underneath, showing
every tag and every class (``pick_showcase``)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from lizaalert_tagger.scenes.plan import ScenePlan, plan_scene
from lizaalert_tagger.scenes.render import encode_jpeg, render_photo
from lizaalert_tagger.common.spec import AttributeSpec
from PIL import Image, ImageDraw, ImageFont


def _caption(labels: dict[str, int], spec: AttributeSpec) -> tuple[str, str]:
    scene = " / ".join(a.class_for(labels[a.key]).label for a in spec.attributes if not a.is_binary)
    tags = ", ".join(a.class_for(1).label for a in spec.attributes if a.is_binary and labels[a.key]) or "-"
    return scene, tags


def pick_showcase(seed: int, spec: AttributeSpec, count: int = 16, pool: int = 300) -> list[int]:
    """Indices whose scenes together show every tag and every class, greedily."""
    plans = [plan_scene(seed, i, 640, 640, spec=spec) for i in range(pool)]

    def features(plan: ScenePlan) -> set[str]:
        f = {f"{a.key}={plan.labels[a.key]}" for a in spec.attributes if not a.is_binary}
        f |= {a.key for a in spec.attributes if a.is_binary and plan.labels[a.key]}
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
    indices = list(indices) if indices is not None else pick_showcase(seed, spec)
    font = ImageFont.load_default(size=13)
    cw, ch = cell
    caption_h = 36
    sheet = Image.new("RGB", (4 * cw, 4 * (ch + caption_h)), (24, 24, 26))
    draw = ImageDraw.Draw(sheet)
    for n, index in enumerate(indices[:16]):
        plan = plan_scene(seed, index, 640, 960, spec=spec)
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
