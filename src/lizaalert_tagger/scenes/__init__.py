"""Synthetic search-and-rescue photos: the training data of the default model.

A scene is planned first (labels, size, where each object goes), then drawn, lit, noised,
upscaled to the photo size and saved as JPEG; the same seed gives the same bytes. The
modules, each importing only the ones listed before it:

- ``paint``: ``Frame`` (local units to pixels), ``Painter``, colour, noise and gradient helpers;
- ``plan``: the spec's codes, how each binary tag is drawn (``DRAWN_TAGS``), frequencies and sizes,
  RNG streams, ``plan_scene``, ``tag_boxes``;
- ``context``: ``Ctx`` (what the drawing knows of the scene) and the shared palettes;
- ``backgrounds``: sky, ground, forest, city, field, water and the close-up fills;
- ``objects``: the drawn objects (``DRAW``) and the occluders;
- ``weather``: opt-in fog or dim light over a lit scene (``apply_weather``; default ``clear``: none);
- ``render``: lighting, ``render_photo``, ``encode_jpeg`` and ``generate``;
- ``dataset``: ``make_dataset`` (images, ``labels.csv``, ``boxes.json``), ``frequency_table``;
- ``sheet``: the contact sheet;
- ``cli``: the ``lizaalert-scenes`` command (``make_dataset`` is what other code calls).

A new binary attribute needs an entry in ``plan.DRAWN_TAGS``, its extents and sizes in ``plan``
and its drawing in ``objects.DRAW``; the spec says whether it is drawn.
"""

from __future__ import annotations

from lizaalert_tagger.scenes.context import Ctx
from lizaalert_tagger.scenes.dataset import BOXES_FILENAME, frequency_table, image_name, make_dataset
from lizaalert_tagger.scenes.objects import DRAW
from lizaalert_tagger.scenes.paint import Frame, Painter
from lizaalert_tagger.scenes.plan import (
    AUTUMN,
    CITY,
    DAY,
    DEFAULT_MAX_SIZE,
    DEFAULT_MIN_SIZE,
    DUSK,
    DRAWN_TAGS,
    EXPECTED_CODES,
    EXTENTS,
    FLYING_KINDS,
    FOREST,
    GROUND_KINDS,
    MAX_BOOSTED_PROBABILITY,
    NIGHT,
    PLACES,
    RENDER_SHORT,
    SEASON_NONE,
    SIZE_RANGE,
    SPRING,
    STREAM_BACKGROUND,
    STREAM_FINISH,
    STREAM_OBJECT,
    STREAM_OCCLUDER,
    STREAM_PLAN,
    SUMMER,
    TAG_FOR_OBJECT,
    TERRAIN_NONE,
    TIME_NONE,
    WINTER,
    Occluder,
    Placement,
    ScenePlan,
    DrawnTag,
    check_spec,
    default_min_size,
    drawn_tags,
    object_bbox,
    plan_scene,
    sample_labels,
    sample_size,
    stream_rng,
    tag_boxes,
)
from lizaalert_tagger.scenes.render import encode_jpeg, generate, render_canvas, render_photo, render_size
from lizaalert_tagger.scenes.sheet import contact_sheet, pick_showcase
from lizaalert_tagger.scenes.weather import WEATHER_CHOICES, apply_weather

__all__ = [
    "AUTUMN",
    "BOXES_FILENAME",
    "CITY",
    "DAY",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_MIN_SIZE",
    "DRAW",
    "DRAWN_TAGS",
    "DUSK",
    "EXPECTED_CODES",
    "EXTENTS",
    "FLYING_KINDS",
    "FOREST",
    "GROUND_KINDS",
    "MAX_BOOSTED_PROBABILITY",
    "NIGHT",
    "PLACES",
    "RENDER_SHORT",
    "SEASON_NONE",
    "SIZE_RANGE",
    "SPRING",
    "STREAM_BACKGROUND",
    "STREAM_FINISH",
    "STREAM_OBJECT",
    "STREAM_OCCLUDER",
    "STREAM_PLAN",
    "SUMMER",
    "TAG_FOR_OBJECT",
    "TERRAIN_NONE",
    "TIME_NONE",
    "WEATHER_CHOICES",
    "WINTER",
    "Ctx",
    "DrawnTag",
    "Frame",
    "Occluder",
    "Painter",
    "Placement",
    "ScenePlan",
    "apply_weather",
    "check_spec",
    "default_min_size",
    "drawn_tags",
    "contact_sheet",
    "encode_jpeg",
    "frequency_table",
    "generate",
    "image_name",
    "make_dataset",
    "object_bbox",
    "pick_showcase",
    "plan_scene",
    "render_canvas",
    "render_photo",
    "render_size",
    "sample_labels",
    "sample_size",
    "stream_rng",
    "tag_boxes",
]
