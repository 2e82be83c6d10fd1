"""Synthetic search-and-rescue photos: the training data of the default model.

A scene is planned first (labels, size, where each object goes), then drawn, lit, noised,
upscaled to the photo size and saved as JPEG; the same seed gives the same bytes. The
modules, each importing only the ones listed before it:

- ``paint``: ``Frame`` (local units to pixels), ``Painter``, colour, noise and gradient helpers;
- ``plan``: the spec's codes, frequencies and sizes, RNG streams, ``plan_scene``, ``tag_boxes``;
- ``context``: ``Ctx`` (what the drawing knows of the scene) and the shared palettes;
- ``backgrounds``: sky, ground, forest, city, field, water and the close-up fills;
- ``objects``: the drawn objects (``DRAW``) and the occluders;
- ``render``: lighting, ``render_photo``, ``encode_jpeg`` and ``generate``;
- ``dataset``: ``make_dataset`` (images, ``labels.csv``, ``boxes.json``), ``frequency_table``;
- ``sheet``: the contact sheet;
- ``cli``: ``main``, the ``lizaalert-scenes`` command.
"""

from __future__ import annotations

from lizaalert_tagger.scenes.cli import main
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
    EXPECTED_CODES,
    EXTENTS,
    FLYING_KINDS,
    FOREST,
    GROUND_KINDS,
    MAX_BOOSTED_PROBABILITY,
    NIGHT,
    OBJECT_FOR_TAG,
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
    check_spec,
    object_bbox,
    plan_scene,
    sample_labels,
    sample_size,
    stream_rng,
    tag_boxes,
)
from lizaalert_tagger.scenes.render import encode_jpeg, generate, render_canvas, render_photo, render_size
from lizaalert_tagger.scenes.sheet import contact_sheet, pick_showcase

__all__ = [
    "AUTUMN",
    "BOXES_FILENAME",
    "CITY",
    "DAY",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_MIN_SIZE",
    "DRAW",
    "DUSK",
    "EXPECTED_CODES",
    "EXTENTS",
    "FLYING_KINDS",
    "FOREST",
    "GROUND_KINDS",
    "MAX_BOOSTED_PROBABILITY",
    "NIGHT",
    "OBJECT_FOR_TAG",
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
    "WINTER",
    "Ctx",
    "Frame",
    "Occluder",
    "Painter",
    "Placement",
    "ScenePlan",
    "check_spec",
    "contact_sheet",
    "encode_jpeg",
    "frequency_table",
    "generate",
    "image_name",
    "main",
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
