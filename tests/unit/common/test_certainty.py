"""Decision margins (``common.certainty``): what the report's "least certain first" sorts by."""
from __future__ import annotations

import pytest

from lizaalert_tagger.common.certainty import attribute_margin, decision_margin


def _certain(spec) -> tuple[dict[str, int], dict[str, float]]:
    return {a.key: 0 for a in spec.attributes}, {a.key: 1.0 for a in spec.attributes}


def test_binary_margin_is_scaled_on_each_side_of_the_threshold(spec):
    car = spec.with_thresholds({"car": 0.2})["car"]
    # tagged with p = 0.6: (0.6 - 0.2) / 0.8 = 0.5; not tagged with p(present) = 0.1 (score 0.9): (0.2 - 0.1) / 0.2 = 0.5
    assert attribute_margin(car, 1, 0.6) == pytest.approx(0.5)
    assert attribute_margin(car, 0, 0.9) == pytest.approx(0.5)
    assert attribute_margin(car, 1, 0.2) == pytest.approx(0.0)
    assert attribute_margin(car, 1, 1.0) == pytest.approx(1.0) and attribute_margin(car, 0, 1.0) == pytest.approx(1.0)


def test_categorical_margin_is_measured_from_an_even_split(spec):
    season = spec["season"]  # 5 classes: an even split is 0.2
    assert attribute_margin(season, 3, 0.2) == pytest.approx(0.0)
    assert attribute_margin(season, 3, 0.6) == pytest.approx(0.5)
    assert attribute_margin(season, 3, 1.0) == pytest.approx(1.0)


def test_a_photo_is_as_certain_as_its_least_certain_attribute(spec):
    spec = spec.with_thresholds({"drone": 0.5})
    codes, scores = _certain(spec)
    assert decision_margin(codes, scores, spec) == pytest.approx(1.0)
    scores["terrain"] = 0.5  # 3 classes: (0.5 - 1/3) / (2/3) = 0.25
    scores["drone"] = 0.9  # not tagged, p(present) = 0.1, threshold 0.5: 0.8
    assert decision_margin(codes, scores, spec) == pytest.approx(0.25)
    scores["sherp"] = None  # no score: nothing says the model was sure
    assert decision_margin(codes, scores, spec) == 0.0
