"""The decoder on hand-made logits: exact codes, labels, scores and tags."""
import math

import pytest
import torch

from lizaalert_tagger.vision.answers import codes_from_logits, decode_logits


def logits_for(spec, picks: dict[str, int], binary_logit: float = 4.0) -> torch.Tensor:
    """Logits that make each categorical attribute pick ``picks[key]`` (a class index)
    and each binary one present (+binary_logit) when ``picks[key] == 1``."""
    row = torch.full((spec.num_logits,), -binary_logit)
    for a in spec.attributes:
        start, stop = a.logits
        if a.is_binary:
            row[start] = binary_logit if picks.get(a.key, 0) == 1 else -binary_logit
        else:
            row[start:stop] = 0.0
            row[start + picks.get(a.key, 0)] = 3.0
    return row


def test_codes_labels_and_tags(spec):
    logits = torch.stack([
        logits_for(spec, {"time_of_day": 2, "season": 1, "terrain": 1, "car": 1, "diver": 1}),
        logits_for(spec, {}),
    ])
    first, second = decode_logits(logits, spec, {"name": "m", "version": "1"})
    assert first["model"] == {"name": "m", "version": "1"}
    assert spec.answer_codes(first) == {
        "time_of_day": 2, "season": 1, "terrain": 1, "sherp": 0, "car": 1, "aviation": 0,
        "drone": 0, "horses": 0, "dog_handler": 0, "diver": 1, "hugs": 0,
    }
    assert first["attributes"]["time_of_day"]["label"] == "night"
    assert first["attributes"]["time_of_day"]["label_ru"] == "Ночь"
    assert first["attributes"]["season"]["label"] == "winter"
    assert first["attributes"]["car"]["label_ru"] == "Авто"
    assert first["tags"] == ["night", "winter", "forest", "car", "diver"]
    # "not visible" and absent binary attributes are not tags
    assert second["tags"] == []
    assert set(second["attributes"]) == set(spec.keys)


def test_scores_are_probabilities_of_the_chosen_value(spec):
    logits = logits_for(spec, {"time_of_day": 1, "horses": 1})[None]
    (answer,) = decode_logits(logits, spec)
    p_day = math.exp(3) / (math.exp(3) + 3)
    assert answer["attributes"]["time_of_day"]["score"] == pytest.approx(p_day, abs=1e-6)
    probs = answer["attributes"]["time_of_day"]["probabilities"]
    assert list(probs) == ["not visible", "day", "night", "dawn or dusk"]
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    sig = 1 / (1 + math.exp(-4))
    assert answer["attributes"]["horses"]["score"] == pytest.approx(sig, abs=1e-6)
    assert answer["attributes"]["drone"]["score"] == pytest.approx(sig, abs=1e-6)  # P(absent)
    assert answer["attributes"]["drone"]["code"] == 0
    assert "probabilities" not in answer["attributes"]["drone"]


def test_binary_threshold_comes_from_the_spec(spec):
    logits = torch.full((1, spec.num_logits), 0.0)
    logits[0, spec["car"].logits[0]] = -0.5  # p = 0.378
    assert decode_logits(logits, spec)[0]["attributes"]["car"]["code"] == 0
    tuned = spec.with_thresholds({"car": 0.3})
    assert decode_logits(logits, tuned)[0]["attributes"]["car"]["code"] == 1


def test_wrong_width_is_explained(spec):
    with pytest.raises(ValueError, match=r"Expected logits \[batch, 20\]. Got \(2, 28\)"):
        decode_logits(torch.zeros(2, 28), spec)


def test_codes_from_logits_decide_as_the_answers_do(spec):
    """Training's evaluation and the served answer share one decision: the codes equal the answers' codes,
    also when a threshold moves; a malformed answer is a clear error."""
    torch.manual_seed(3)
    logits = torch.randn(16, spec.num_logits) * 2
    for s in (spec, spec.with_thresholds({"car": 0.9, "drone": 0.1})):
        codes = codes_from_logits(logits, s)
        answers = decode_logits(logits, s)
        assert [{k: codes[k][i] for k in s.keys} for i in range(16)] == [s.answer_codes(a) for a in answers]
    with pytest.raises(ValueError, match="not an answer"):
        spec.answer_codes({"attributes": {"car": {"code": 1}}})
