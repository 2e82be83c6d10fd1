"""The score: sklearn F1 per attribute, macro over present classes, mean over attributes."""
import pytest

from lizaalert_tagger.common.scoring import score_codes


def codes(spec, **overrides):
    n = len(next(iter(overrides.values())))
    base = {a.key: [0] * n for a in spec.attributes}
    base.update(overrides)
    return base


def test_perfect_prediction_scores_one(spec):
    truth = codes(spec, time_of_day=[1, 2, 3, 0], car=[0, 1, 0, 0])
    s = score_codes(truth, truth, spec)
    assert s.overall == 1.0 and s.count == 4


def test_macro_over_classes_present_in_truth_or_prediction(spec):
    truth = codes(spec, time_of_day=[1, 1, 2, 2])
    pred = codes(spec, time_of_day=[1, 1, 2, 3])
    s = score_codes(truth, pred, spec)
    # class 1: F1 1; class 2: P 1, R 0.5 -> 2/3; class 3: 0 (predicted, absent in truth); class 0 absent in both
    assert s.per_attribute["time_of_day"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_binary_f1_of_positive_class(spec):
    truth = codes(spec, car=[1, 1, 0, 0])
    pred = codes(spec, car=[1, 0, 1, 0])
    s = score_codes(truth, pred, spec)
    assert s.per_attribute["car"] == pytest.approx(0.5)
    assert s.per_attribute["diver"] == 1.0  # no diver anywhere: nothing missed
    assert s.overall == pytest.approx((10 + 0.5) / 11)


def test_length_mismatch_is_explained(spec):
    with pytest.raises(ValueError, match="time_of_day: 2 true codes but 3 predicted"):
        score_codes(codes(spec, car=[1, 0]), codes(spec, car=[1, 0, 0]), spec)
