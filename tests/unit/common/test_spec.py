"""The attribute spec: the seed's attributes, and refusal of specs whose slices do not tile."""
import copy
import json

import pytest

from lizaalert_tagger.common.spec import DEFAULT_SPEC_PATH, SpecError, load_spec, spec_from_dict

SEED_COLUMNS = ["Время суток", "Время года", "Местность", "Шерп", "Авто", "Вертолет", "БПЛА", "Кони", "Кинолог", "Водолаз", "Объятия"]


@pytest.fixture()
def raw():
    return json.loads(DEFAULT_SPEC_PATH.read_text(encoding="utf-8"))


def test_default_spec_matches_the_seed(spec):
    assert [a.column for a in spec.attributes] == SEED_COLUMNS
    assert spec.num_logits == 20
    assert [a.key for a in spec.attributes if not a.is_binary] == ["time_of_day", "season", "terrain"]
    assert spec["time_of_day"].codes == (0, 1, 2, 3)
    assert spec["season"].codes == (0, 1, 2, 3, 4)
    assert spec["terrain"].codes == (0, 1, 2)
    assert spec["car"].columns == ("Авто", "Автомобили")
    assert spec["aviation"].columns == ("Вертолет", "Авиа")
    assert all(a.width == 1 and a.threshold == 0.5 for a in spec.attributes if a.is_binary)
    assert spec.preprocessing.size == (256, 256)
    assert spec.preprocessing.resize == "squash"


def test_round_trip_through_dict(spec, tmp_path):
    spec.save(tmp_path / "s.json")
    assert load_spec(tmp_path / "s.json") == spec


def test_overlapping_slices_are_refused(raw):
    raw["attributes"][1]["logits"] = [3, 8]  # season overlaps time_of_day
    with pytest.raises(SpecError, match="season.*overlaps"):
        spec_from_dict(raw)


def test_gap_is_refused(raw):
    bad = copy.deepcopy(raw)
    for a in bad["attributes"][1:]:
        a["logits"] = [a["logits"][0] + 1, a["logits"][1] + 1]
    with pytest.raises(SpecError, match=r"logits \[4, 5\) belong to no attribute"):
        spec_from_dict(bad)


def test_wrong_width_against_the_model_is_refused(raw):
    with pytest.raises(SpecError, match="cover 20 logits but the model outputs 28"):
        spec_from_dict(raw, num_logits=28)


def test_slice_width_must_match_classes(raw):
    raw["attributes"][0]["classes"].pop()
    with pytest.raises(SpecError, match="time_of_day.*3 classes but its logit slice \\[0, 4\\) has 4"):
        spec_from_dict(raw)


def test_binary_needs_one_logit_and_a_threshold(raw):
    bad = copy.deepcopy(raw)
    bad["attributes"][3]["threshold"] = 1.5
    with pytest.raises(SpecError, match="sherp.*threshold"):
        spec_from_dict(bad)


def test_missing_file_says_where(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nope.json")


def test_with_thresholds(spec):
    tuned = spec.with_thresholds({"car": 0.3})
    assert tuned["car"].threshold == 0.3 and spec["car"].threshold == 0.5
    with pytest.raises(SpecError):
        spec.with_thresholds({"season": 0.3})


def test_unknown_interpolation_is_refused_when_the_spec_loads(raw):
    """Not on the first request (a KeyError per photo): at load time, listing the known values."""
    raw["preprocessing"] = {**raw.get("preprocessing", {}), "interpolation": "lanczos"}
    with pytest.raises(SpecError, match="interpolation must be one of bilinear, bicubic, nearest; got 'lanczos'"):
        spec_from_dict(raw)


def test_every_known_interpolation_has_a_resampling_filter():
    from lizaalert_tagger.vision.preprocess import _RESAMPLING
    from lizaalert_tagger.common.spec import INTERPOLATIONS

    assert set(_RESAMPLING) == set(INTERPOLATIONS)


# --- answers of the served model -------------------------------------------------------------------------


def _answer(spec, **codes):
    return {"attributes": {a.key: {"code": codes.get(a.key, 0), "label": "x"} for a in spec.attributes}}


def test_answer_codes_are_checked_against_the_spec(spec):
    """Every code must exist: a served answer with an unknown code is refused when it arrives, saying which
    attribute, what arrived and what was expected (tag-folder used to lose the CSV at save time)."""
    assert spec.answer_codes(_answer(spec, terrain=2, car=1)) == {**{k: 0 for k in spec.keys}, "terrain": 2, "car": 1}
    cases = {
        "terrain has code 9, expected one of (0, 1, 2)": _answer(spec, terrain=9),
        "car has code -1, expected one of (0, 1)": _answer(spec, car=-1),
        "car has code True": _answer(spec, car=True),
        "season has code '1'": _answer(spec, season="1"),
        "season has code 1.5": _answer(spec, season=1.5),
        "hugs has no code": {"attributes": {k: {"code": 0} for k in spec.keys if k != "hugs"}},
        "expected an object with 'attributes', got list": {"attributes": []},
        "expected an object with 'attributes', got str": "not an answer",
    }
    for expected, answer in cases.items():
        with pytest.raises(ValueError, match="not an answer of this spec's model") as info:
            spec.answer_codes(answer)
        assert expected in str(info.value), (expected, str(info.value))


def test_is_tag_is_the_one_rule_for_tags(spec):
    """Code 0 ("not visible", "absent") is no tag, every other code is one: the served ``tags``, the
    client's details.csv and report, and ``spec.tags`` agree on it."""
    from lizaalert_tagger.common.spec import is_tag

    assert [is_tag(code) for code in (0, 1, 2, 3)] == [False, True, True, True]
    codes = {**{k: 0 for k in spec.keys}, "time_of_day": 2, "terrain": 0, "car": 1, "diver": 1}
    assert spec.tags(codes) == ["night", "car", "diver"]
    assert spec.tags(codes, "ru") == [spec["time_of_day"].class_for(2).label_ru, spec["car"].class_for(1).label_ru,
                                      spec["diver"].class_for(1).label_ru]


def test_the_default_spec_is_package_data_and_no_second_copy():
    """The spec a client-only install reads (``DEFAULT_SPEC_PATH``) lies in the package; in the checkout it
    is a link to handler/attributes.json, the one source of truth, not a copy that could drift."""
    from importlib.resources import files
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    packaged = files("lizaalert_tagger.common").joinpath("attributes.json")
    assert Path(str(packaged)) == DEFAULT_SPEC_PATH and DEFAULT_SPEC_PATH.is_file()
    assert DEFAULT_SPEC_PATH.is_symlink() and DEFAULT_SPEC_PATH.resolve() == (root / "handler" / "attributes.json").resolve()
    assert load_spec() == load_spec(root / "handler" / "attributes.json")
