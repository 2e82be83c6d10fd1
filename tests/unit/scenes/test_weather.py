"""The opt-in weather of the scene generator (``--weather``): clear is the photo as before, fog and dim change
the pixels but not the plan or the labels, deterministically; an unknown weather is refused up front."""
import io

import numpy as np
import pytest
from PIL import Image

from lizaalert_tagger import scenes


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)


def _wide_plan(seed: int = 41) -> int:
    return next(i for i in range(200) if scenes.plan_scene(seed, i, 320, 480).framing == "wide")


def test_clear_is_the_photo_as_before():
    assert scenes.generate(41, 0, 320, 480, weather="clear") == scenes.generate(41, 0, 320, 480)


@pytest.mark.parametrize("weather", ["fog", "dim"])
def test_weather_changes_pixels_not_labels_and_is_deterministic(weather):
    index = _wide_plan()
    clear_bytes, clear_plan = scenes.generate(41, index, 320, 480)
    data, plan = scenes.generate(41, index, 320, 480, weather=weather)
    assert plan == clear_plan and data != clear_bytes
    assert scenes.generate(41, index, 320, 480, weather=weather)[0] == data


def test_fog_is_densest_at_the_horizon_and_dim_is_darker():
    index = _wide_plan()
    plan = scenes.plan_scene(41, index, 320, 480)
    clear = _pixels(scenes.generate(41, index, 320, 480)[0])
    fog = _pixels(scenes.generate(41, index, 320, 480, weather="fog")[0])
    dim = _pixels(scenes.generate(41, index, 320, 480, weather="dim")[0])
    h = clear.shape[0]
    horizon = int(plan.horizon * h)
    far, near = slice(max(0, horizon - 10), horizon + 10), slice(h - 20, h)
    # fog: far less contrast around the horizon than near the bottom of the photo
    far_loss = fog[far].std() / clear[far].std()
    near_loss = fog[near].std() / clear[near].std()
    assert far_loss < 0.7 and near_loss > far_loss + 0.1
    assert dim.mean() < 0.55 * clear.mean()


def test_an_unknown_weather_is_refused_before_any_photo_is_written(tmp_path):
    with pytest.raises(ValueError, match="expected one of .*'fog'.*got 'rain'"):
        scenes.make_dataset(tmp_path, 2, 0, 240, 320, weather="rain")
    assert not (tmp_path / "labels.csv").exists()


def test_lizaalert_scenes_weather_option(tmp_path):
    from lizaalert_tagger.scenes.cli import main

    assert main(["--out", str(tmp_path / "fog"), "--count", "2", "--seed", "41", "--max-size", "320", "--quiet",
                 "--jobs", "1", "--weather", "fog"]) == 0
    assert main(["--out", str(tmp_path / "clear"), "--count", "2", "--seed", "41", "--max-size", "320", "--quiet",
                 "--jobs", "1"]) == 0
    fog, clear = (sorted((tmp_path / name / "images").iterdir()) for name in ("fog", "clear"))
    assert [p.name for p in fog] == [p.name for p in clear]
    assert all(a.read_bytes() != b.read_bytes() for a, b in zip(fog, clear))
    assert (tmp_path / "fog" / "labels.csv").read_bytes() == (tmp_path / "clear" / "labels.csv").read_bytes()
