"""Synthetic scenes: deterministic, labels within the spec, sizes and frequencies as
intended, and the attributes really drawn (objects change their pixels, night is dark,
winter is white)."""

from __future__ import annotations

import hashlib

from lizaalert_tagger import scenes as ms
import numpy as np
import pytest
from lizaalert_tagger.common.labels_csv import read_labels, resolve_images
from lizaalert_tagger.common.spec import load_spec
from PIL import Image


def find_plan(predicate, seed: int = 0, limit: int = 3000, **kwargs) -> ms.ScenePlan:
    for index in range(limit):
        plan = ms.plan_scene(seed, index, **kwargs)
        if predicate(plan):
            return plan
    raise AssertionError(f"no plan matched in the first {limit} indices")


def test_same_seed_same_bytes_other_seed_other_bytes():
    first = [ms.generate(7, i, 320, 480)[0] for i in range(3)]
    again = [ms.generate(7, i, 320, 480)[0] for i in range(3)]
    other = [ms.generate(8, i, 320, 480)[0] for i in range(3)]
    assert first == again
    assert all(a != b for a, b in zip(first, other))
    assert len(set(first)) == 3  # and every image differs from the others
    assert all(data[:3] == b"\xff\xd8\xff" for data in first)


# sha256 of the output of seed 11, computed once (with the pinned Pillow 13.0.0 / libjpeg-turbo
# 3.2.0 / numpy 2.4.6 of requirements.txt). A refactor must keep these bytes; a deliberate change
# of the generator (or of those pins) recomputes them and says so.
PINNED_DATASET = {  # make_dataset(count=6, seed=11, 240..360 px, tag_boost=4): wide and close-up, 7 of 8 tags
    "00000.jpg": "18de2daa389891dc8413f20ba6742c0f42b7515db70696ffb162eea75d64c589",
    "00001.jpg": "8e249b02f7af1d7a2e80335d568b1fe0c05d1fece49a8a84d7b9a9bf155b28e7",
    "00002.jpg": "10870b3fb29098a98e8dee6d0e2954dc3d00f9259494a7373653013b3b50cb3e",
    "00003.jpg": "f30129c8d7b43463b77d470e0d09483a5e8cfe89e7c59ad895a7ad27631eee45",
    "00004.jpg": "65e66d7c52b8404bed499862ab91f0302b9ce082ce8a57f77e45019733d6d853",
    "00005.jpg": "9ae6351099b217bd49cc33c0b2be38545cc539c883f2bfeab6aff2677393e577",
    "labels.csv": "f51fc5664c8aaa1070f86b41ac8013d042d0b45d41d715cb288d3dd170e06cac",
    "boxes.json": "9c58d3b9b659f94997cfdb35b6971f600e8fe9f77ae6073232ea7b54f2aaf0a1",
}
PINNED_LARGE = {  # generate(11, index, size, size): upscaled past 2.5x (bilinear + nearest, blurred) and below
    (0, 2000): "0701d5e5dd5ece730f3406c8057a0d50fe5f789d100ad13894277edd54caf9ff",
    (1, 1000): "0d0f98da634903a095ef3b0faf1ff1b87a6884f4b9a0386f0d8008bf7330204f",
}


def test_output_bytes_are_pinned(tmp_path, spec):
    """The generator's output for a fixed seed is byte-for-byte what it was: JPEGs, labels.csv, boxes.json."""
    ms.make_dataset(tmp_path, 6, 11, 240, 360, jobs=1, spec=spec, progress=False, tag_boost=4.0)
    got = {
        name: hashlib.sha256((tmp_path / ("images" if name.endswith(".jpg") else "") / name).read_bytes()).hexdigest()
        for name in PINNED_DATASET
    }
    jpegs = sorted(name for name in PINNED_DATASET if name.endswith(".jpg"))
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == jpegs
    changed = sorted(name for name in PINNED_DATASET if got[name] != PINNED_DATASET[name])
    assert not changed, f"the generator's output changed for seed 11: {changed}"
    for (index, size), digest in PINNED_LARGE.items():
        data, plan = ms.generate(11, index, size, size)
        assert max(plan.size) == size
        assert hashlib.sha256(data).hexdigest() == digest, f"generate(11, {index}, {size}, {size}) changed"


def test_dataset_is_the_same_with_one_or_two_jobs(tmp_path, spec):
    one = ms.make_dataset(tmp_path / "one", 4, 5, 240, 320, jobs=1, spec=spec, progress=False)
    two = ms.make_dataset(tmp_path / "two", 4, 5, 240, 320, jobs=2, spec=spec, progress=False)
    assert one == two
    assert (tmp_path / "one" / "labels.csv").read_bytes() == (tmp_path / "two" / "labels.csv").read_bytes()
    for name, _ in one:
        assert (tmp_path / "one" / "images" / name).read_bytes() == (tmp_path / "two" / "images" / name).read_bytes()


def test_labels_within_spec_codes_and_consistent_with_framing(spec):
    ms.check_spec(spec)
    for index in range(400):
        plan = ms.plan_scene(1, index)
        assert tuple(plan.labels) == spec.keys
        for key, code in plan.labels.items():
            assert code in spec[key].codes, (index, key, code)
        sky_visible = plan.framing in ("wide", "sky", "water")
        assert (plan.labels["time_of_day"] != 0) == sky_visible
        if plan.framing in ("sky", "water", "close_water"):
            assert plan.labels["season"] == 0 and plan.labels["terrain"] == 0
        drawn = {o.kind for o in plan.objects}
        for key in ms.drawn_tags(spec):
            assert (ms.DRAWN_TAGS[key].kind in drawn) == bool(plan.labels[key]), (index, key)


def test_sample_labels_is_the_plans_labels():
    for index in range(20):
        assert ms.sample_labels(ms.stream_rng(3, index, ms.STREAM_PLAN)) == ms.plan_scene(3, index).labels


def test_sizes_in_range_both_orientations():
    sizes = [ms.plan_scene(2, i).size for i in range(40)]
    for w, h in sizes:
        assert 640 <= max(w, h) <= 4000 and 480 <= min(w, h) <= 3000, (w, h)
    assert any(w > h for w, h in sizes) and any(h > w for w, h in sizes)
    capped = [ms.plan_scene(2, i, max_size=1024).size for i in range(40)]
    assert all(max(s) <= 1024 for s in capped)
    plan = ms.plan_scene(2, 0, 320, 400)
    assert ms.render_photo(plan).size == plan.size


def test_binary_tags_rare_and_categories_like_the_seed(spec):
    n = 2000
    rows = [ms.sample_labels(ms.stream_rng(11, i, ms.STREAM_PLAN)) for i in range(n)]
    for key in ms.drawn_tags(spec):
        share = sum(r[key] for r in rows) / n
        assert 0.025 <= share <= 0.16, (key, share)
    time_counts = np.bincount([r["time_of_day"] for r in rows], minlength=4)
    assert time_counts.argmax() == 1 and 0.45 < time_counts[1] / n < 0.7  # day, as in the seed's predictions
    assert time_counts[0] > time_counts[2] > time_counts[3]  # none > night > dawn/dusk
    terrain_counts = np.bincount([r["terrain"] for r in rows], minlength=3)
    assert terrain_counts[0] > terrain_counts[1] > terrain_counts[2]
    assert min(np.bincount([r["season"] for r in rows], minlength=5)) > 0.1 * n


def test_objects_are_at_least_six_percent_of_the_shorter_side():
    for index in range(300):
        plan = ms.plan_scene(4, index)
        w, h = ms.render_size(plan.size)
        for o in plan.objects:
            if o.kind in ms.TAG_FOR_OBJECT:
                x0, y0, x1, y1 = ms.object_bbox(o, w, h)
                assert max(x1 - x0, y1 - y0) >= 0.06 * min(w, h), (index, o)


@pytest.mark.parametrize("kind", sorted(ms.DRAW))
def test_drawings_stay_inside_their_extents(kind):
    """object_bbox (used for occluders and the test below) really holds every variant."""
    size = 300
    for variant in range(4):
        for flip in (1, -1):
            placement = ms.Placement(
                kind,
                0.5,
                0.65 if kind in ms.GROUND_KINDS else 0.5,
                0.4,
                flip,
                8.0 if kind == "helicopter" else 0.0,
                variant,
                0,
            )
            img, emission = Image.new("RGB", (size, size)), Image.new("L", (size, size))
            ctx = ms.Ctx(size, size, ms.NIGHT, ms.WINTER, 0, "wide", None, (90, 90, 90), (40, 80, 110))
            frame = ms.Frame(placement.x * size, placement.y * size, placement.size * size, flip, placement.angle)
            ms.DRAW[kind](ms.Painter(img, emission), frame, np.random.default_rng(variant), ctx, variant)
            ys, xs = np.nonzero(np.asarray(img).any(axis=2))
            x0, y0, x1, y1 = ms.object_bbox(placement, size, size)
            assert x0 - 2 <= xs.min() and xs.max() <= x1 + 2 and y0 - 2 <= ys.min() and ys.max() <= y1 + 2
            assert len(xs) > 0.1 * (x1 - x0) * (y1 - y0), "the drawing should fill a fair part of its box"


@pytest.mark.parametrize("tag", sorted(ms.DRAWN_TAGS))
def test_object_changes_pixels_only_in_its_box(tag, twelve_attribute_spec):
    kind = ms.DRAWN_TAGS[tag].kind
    spec = load_spec(twelve_attribute_spec)  # every drawn tag, "tent" too
    plan = find_plan(
        lambda p: p.labels[tag] and sum(o.kind == kind for o in p.objects) == 1, min_size=400, max_size=480, spec=spec
    )
    with_object = ms.render_canvas(plan).astype(np.int16)
    without = ms.render_canvas(plan.without(kind)).astype(np.int16)
    h, w = with_object.shape[:2]
    (placement,) = [o for o in plan.objects if o.kind == kind]
    x0, y0, x1, y1 = ms.object_bbox(placement, w, h)
    inside = np.zeros((h, w), bool)
    inside[max(0, y0 - 2) : y1 + 3, max(0, x0 - 2) : x1 + 3] = True
    diff = np.abs(with_object - without).max(axis=2)
    assert diff[~inside].max(initial=0) == 0, "the object drew outside its box"
    changed = (diff[inside] > 12).mean()
    assert changed > 0.05, f"only {changed:.1%} of the {kind}'s box changed"


def _mean_brightness(plans, rows: slice) -> float:
    return float(np.mean([ms.render_canvas(p, render_short=96)[rows].mean() for p in plans]))


def test_night_is_darker_than_day_and_winter_whiter_than_summer():
    def wide(time_of_day=None, season=None):
        return [
            find_plan(
                lambda p, i=i: (
                    p.framing == "wide"
                    and p.index >= i
                    and (time_of_day is None or p.labels["time_of_day"] == time_of_day)
                    and (season is None or (p.labels["season"] == season and p.labels["time_of_day"] == 1))
                ),
                seed=9,
            )
            for i in (0, 200, 400)
        ]

    assert _mean_brightness(wide(time_of_day=2), slice(0, 20)) < 0.5 * _mean_brightness(
        wide(time_of_day=1), slice(0, 20)
    )
    assert _mean_brightness(wide(season=1), slice(-20, None)) > _mean_brightness(wide(season=3), slice(-20, None)) + 60


def test_main_writes_a_readable_data_set(tmp_path, spec, capsys):
    from lizaalert_tagger.scenes.cli import main

    out = tmp_path / "scenes"
    assert main(["--out", str(out), "--count", "3", "--max-size", "320", "--jobs", "1", "--quiet"]) == 0
    table = read_labels(out / "labels.csv", spec)
    assert [r.filename for r in table.rows] == ["00000.jpg", "00001.jpg", "00002.jpg"] and not table.problems
    resolved = resolve_images(table, out / "images")
    assert len(resolved.usable) == 3
    assert max(Image.open(out / "images" / "00000.jpg").size) <= 320
    assert "images/s" in capsys.readouterr().out


def test_help_shows_defaults(capsys):
    from lizaalert_tagger.scenes.cli import main

    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "(default: 2)" in text and "(default: 4000)" in text and "lizaalert-scenes --contact-sheet" in text
    assert "scripts/" not in text


def test_contact_sheet_is_a_captioned_grid(tmp_path, spec):
    path = ms.contact_sheet(tmp_path / "sheet.png", 0, spec, indices=[0, 1], cell=(160, 120))
    sheet = Image.open(path)
    assert sheet.size == (4 * 160, 4 * (120 + 36))
    pixels = np.asarray(sheet.convert("RGB"))
    assert pixels[:120, :160].std() > 10  # a photo in the first cell
    assert pixels[120:156, :160].max() > 200  # its caption


def test_every_drawn_tag_has_a_drawing_extents_and_sizes():
    """A tag of DRAWN_TAGS is drawn by objects.DRAW, fits its EXTENTS, is sized by SIZE_RANGE and placed somewhere known."""
    for key, drawn in ms.DRAWN_TAGS.items():
        assert drawn.kind in ms.DRAW and drawn.kind in ms.EXTENTS and drawn.kind in ms.SIZE_RANGE, key
        assert drawn.place in ms.PLACES and set(drawn.probability) <= {"wide", "sky", "water", "close_ground",
                                                                        "close_forest", "close_city", "close_water"}, key


def test_a_twelfth_attribute_is_planned_labelled_and_drawn(tmp_path, spec, twelve_attribute_spec):
    """A spec with one more binary attribute ("tent", drawn by the generator): its count comes from
    the spec, every scene carries all of them, a labelled tent is drawn and boxed, and labels.csv
    has its column."""
    twelve = load_spec(twelve_attribute_spec)
    assert len(twelve.attributes) == len(spec.attributes) + 1
    plans = [ms.plan_scene(6, i, 320, 400, tag_boost=4.0, spec=twelve) for i in range(60)]
    assert all(tuple(p.labels) == twelve.keys for p in plans)
    tents = [p for p in plans if p.labels["tent"]]
    assert tents and all(any(o.kind == "tent" for o in p.objects) for p in tents)
    assert all(any(box[0] == "tent" for box in ms.tag_boxes(p)) for p in tents)
    assert not any(o.kind == "tent" for i in range(60) for o in ms.plan_scene(6, i, 320, 400, tag_boost=4.0).objects)
    rows = ms.make_dataset(tmp_path, 4, 6, 240, 320, spec=twelve)
    table = read_labels(tmp_path / "labels.csv", twelve)
    assert not table.problems and [r.labels for r in table.rows] == [labels for _, labels in rows]
    assert "Палатка" in (tmp_path / "labels.csv").read_text(encoding="utf-8").splitlines()[0]


def test_a_spec_attribute_without_a_drawing_is_refused_by_name(spec):
    import dataclasses

    unknown = dataclasses.replace(spec["hugs"], key="boat")
    other = dataclasses.replace(spec, attributes=(*spec.attributes[:-1], unknown))
    with pytest.raises(ValueError, match="no drawing for the spec's 'boat'.*DRAWN_TAGS"):
        ms.check_spec(other)
    without_time = dataclasses.replace(spec, attributes=spec.attributes[1:])
    with pytest.raises(ValueError, match="draws time_of_day"):
        ms.check_spec(without_time)
