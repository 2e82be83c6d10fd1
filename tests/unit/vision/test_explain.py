"""Explanations in vision/: Grad-CAM (explain.py), the fp32 model that explains, the overlay drawn for a
person (common/overlay.py) and the pointing game of the shipped model. A request's explain options and the
handler's explain requests are tested in tests/unit/serving/test_explain_requests.py; the real
TorchServe's /explanations in tests/integration/test_explanations.py."""
from __future__ import annotations

import io
import json

import pytest
import torch
from PIL import Image

from conftest import ROOT

SHIPPED = ROOT / "models" / "default"


# --- explain.py ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    from lizaalert_tagger.vision.model import LizaAlertTagger

    torch.manual_seed(7)
    return LizaAlertTagger().eval()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(3)
    return torch.randn(2, 3, 128, 128)


@pytest.mark.parametrize("layer, cells", [("layer3", 8), ("layer4", 4)])
def test_maps_are_in_unit_range_with_the_layers_shape(small_model, images, spec, layer, cells):
    from lizaalert_tagger.vision.explain import GradCAM

    explanation = GradCAM(small_model, layer).explain(images)
    assert explanation.maps.shape == (2, len(spec.attributes), cells, cells) and explanation.shape == (cells, cells)
    assert float(explanation.maps.min()) >= 0.0 and float(explanation.maps.max()) <= 1.0
    peaks = explanation.maps.amax(dim=(2, 3))
    assert bool(((peaks - 1).abs() < 1e-6).logical_or(peaks == 0).all())  # each map peaks at 1, or is all zeros
    assert bool((peaks == 1).any())
    with torch.inference_mode():
        assert torch.allclose(explanation.logits, small_model(images), atol=1e-4)


def test_one_forward_and_one_backward_per_attribute_stopping_at_the_layer(small_model, images, spec):
    """The trunk runs once; each of the 11 backward passes goes through layer4 down to layer3's output,
    never into layer3 or below; no parameter gets a gradient."""
    from lizaalert_tagger.vision.explain import GradCAM

    explainer = GradCAM(small_model, "layer3")
    calls = {"conv1": 0, "layer4_forward": 0, "layer4_backward": 0, "layer3_backward": 0, "layer2_backward": 0}
    trunk = small_model.trunk
    hooks = [
        trunk.conv1.register_forward_hook(lambda *_: calls.__setitem__("conv1", calls["conv1"] + 1)),
        trunk.layer4.register_forward_hook(lambda *_: calls.__setitem__("layer4_forward", calls["layer4_forward"] + 1)),
        trunk.layer4.register_full_backward_hook(lambda *_: calls.__setitem__("layer4_backward", calls["layer4_backward"] + 1)),
        trunk.layer3.register_full_backward_hook(lambda *_: calls.__setitem__("layer3_backward", calls["layer3_backward"] + 1)),
        trunk.layer2.register_full_backward_hook(lambda *_: calls.__setitem__("layer2_backward", calls["layer2_backward"] + 1)),
    ]
    try:
        explainer.explain(images)
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == {"conv1": 1, "layer4_forward": 1, "layer4_backward": len(spec.attributes),
                     "layer3_backward": 0, "layer2_backward": 0}
    assert all(p.grad is None and not p.requires_grad for p in small_model.parameters())


def test_a_map_equals_grad_cam_through_the_whole_network(small_model, images, spec):
    """Reference: the full model with autograd from the input, layer3's output captured by a hook."""
    from lizaalert_tagger.vision.explain import GradCAM

    explanation = GradCAM(small_model, "layer3").explain(images, [{"car": 1, "season": 2}, {"car": 0, "season": 4}])
    captured = {}
    hook = small_model.trunk.layer3.register_forward_hook(lambda m, i, o: captured.__setitem__("a", o))
    try:
        with torch.enable_grad():
            logits = small_model(images.clone().requires_grad_(True))
    finally:
        hook.remove()
    activation = captured["a"]
    car, season = spec["car"], spec["season"]
    for row, (car_sign, season_class) in enumerate(((1.0, 2), (-1.0, 4))):
        for attribute, score in ((car, car_sign * logits[row, car.logits[0]]),
                                 (season, logits[row, season.logits[0] + season_class])):
            (grad,) = torch.autograd.grad(score, activation, retain_graph=True)
            cam = torch.relu((grad[row].mean(dim=(1, 2), keepdim=True) * activation[row]).sum(0)).detach()
            expected = cam / cam.max() if cam.max() > 0 else cam
            k = spec.keys.index(attribute.key)
            assert torch.allclose(explanation.maps[row, k], expected, atol=1e-5), (row, attribute.key)


def test_targets_choose_the_value_explained(small_model, images, spec):
    from lizaalert_tagger.vision.answers import codes_from_logits
    from lizaalert_tagger.vision.explain import GradCAM, target_scores

    explainer = GradCAM(small_model, "layer4")
    plain = explainer.explain(images)
    predicted = codes_from_logits(plain.logits, spec)
    assert plain.codes == [{key: predicted[key][row] for key in spec.keys} for row in range(2)]
    asked = explainer.explain(images, [{"car": 1 - predicted["car"][0]}, {}])
    assert asked.codes[0]["car"] == 1 - predicted["car"][0] and asked.codes[1] == plain.codes[1]
    assert {k: v for k, v in asked.codes[0].items() if k != "car"} == {k: v for k, v in plain.codes[0].items() if k != "car"}
    k = spec.keys.index("car")
    assert not torch.allclose(asked.maps[0, k], plain.maps[0, k])  # the opposite value: another map
    assert torch.equal(asked.maps[1], plain.maps[1])
    # the scores: +logit present, -logit absent, the class's logit for categorical attributes
    logits = torch.arange(2 * spec.num_logits, dtype=torch.float32).reshape(2, -1)
    car, terrain = spec["car"], spec["terrain"]
    assert target_scores(logits, car, [1, 0]).tolist() == [logits[0, car.logits[0]].item(), -logits[1, car.logits[0]].item()]
    assert target_scores(logits, terrain, [2, 0]).tolist() == [logits[0, terrain.logits[0] + 2].item(), logits[1, terrain.logits[0]].item()]
    with pytest.raises(ValueError, match="no class with code 9"):
        target_scores(logits, terrain, [9, 0])


def test_explanation_json(small_model, images, spec):
    from lizaalert_tagger.vision.explain import GradCAM, explanation_json

    explanation = GradCAM(small_model, "layer3").explain(images, [{"car": 1}, {}])
    body = json.loads(json.dumps(explanation_json(explanation, 0, spec, {"car": 1})))
    assert list(body) == list(spec.keys)  # wanted=None: every attribute
    for key, entry in body.items():
        assert entry["shape"] == [8, 8] and len(entry["map"]) == 8 and all(len(line) == 8 for line in entry["map"])
        assert all(0.0 <= v <= 1.0 for line in entry["map"] for v in line)
        assert entry["value"] == explanation.codes[0][key] and entry["label"] == spec[key].class_for(entry["value"]).label
        assert entry["target"] == ("requested" if key == "car" else "predicted")
    assert body["car"]["value"] == 1 and body["car"]["label"] == "car"


def test_only_the_wanted_maps_are_computed_one_backward_per_attribute(small_model, images, spec, grad_calls):
    """``wanted``: per row, the attributes to explain. One backward per attribute some row wants (car and
    season: 2, not 11); each map is the one every-attribute Grad-CAM gives that row, the others are not there."""
    from lizaalert_tagger.vision.explain import GradCAM, explanation_json

    explainer = GradCAM(small_model, "layer3")
    every = explainer.explain(images, [{"car": 1}, {}])
    assert len(grad_calls) == len(spec.attributes) and every.explained == [frozenset(spec.keys)] * 2
    grad_calls.clear()
    some = explainer.explain(images, [{"car": 1}, {}], wanted=[{"car", "season"}, ["car"]])
    assert len(grad_calls) == 2
    assert some.explained == [frozenset({"car", "season"}), frozenset({"car"})]
    assert some.codes == [{"season": every.codes[0]["season"], "car": 1}, {"car": every.codes[1]["car"]}]
    for row, keys in enumerate(some.explained):
        for k, key in enumerate(spec.keys):
            if key in keys:
                assert torch.allclose(some.maps[row, k], every.maps[row, k], atol=1e-6), (row, key)
            else:
                assert not some.maps[row, k].any(), (row, key)
    assert list(explanation_json(some, 0, spec, {"car": 1})) == ["season", "car"]
    assert list(explanation_json(some, 1, spec)) == ["car"]
    assert torch.allclose(some.logits, every.logits)
    with pytest.raises(ValueError, match=r"unknown attributes \['boat'\]"):
        explainer.explain(images, wanted=[{"boat"}, set()])
    with pytest.raises(ValueError, match="1 wanted for 2 photos"):
        explainer.explain(images, wanted=[{"car"}])


def test_nothing_wanted_runs_no_model(small_model, images, spec, grad_calls):
    from lizaalert_tagger.vision.explain import GradCAM, explanation_json

    forwards = []
    hook = small_model.trunk.conv1.register_forward_hook(lambda *_: forwards.append(1))
    try:
        explanation = GradCAM(small_model, "layer3").explain(images, wanted=[(), set()])
    finally:
        hook.remove()
    assert grad_calls == [] and forwards == [] and explanation.logits is None
    assert explanation.explained == [frozenset(), frozenset()] and explanation.layer == "layer3"
    assert explanation_json(explanation, 0, spec) == {} == explanation_json(explanation, 1, spec)


def test_bf16_explaining_pass(small_model, images, spec):
    """``precision="bf16"``: autocast over the fp32 weights (any x86 CPU runs it); the maps are float32
    in [0, 1] of the layer's shape, and the logits are float32; an unknown precision is refused."""
    from lizaalert_tagger.vision.explain import GradCAM, explanation_info

    explanation = GradCAM(small_model, "layer3", "bf16").explain(images[:1], wanted=[{"car", "terrain"}])
    assert explanation.precision == "bf16" and explanation.maps.dtype == torch.float32
    assert explanation.maps.shape == (1, len(spec.attributes), 8, 8) and explanation.logits.dtype == torch.float32
    assert float(explanation.maps.min()) >= 0.0 and float(explanation.maps.max()) <= 1.0
    for key in ("car", "terrain"):
        peak = float(explanation.maps[0, spec.keys.index(key)].max())
        assert peak == pytest.approx(1.0) or peak == 0.0
    assert explanation_info("layer3", explanation.precision)["model_precision"] == "bf16"
    with pytest.raises(ValueError, match=r"precision must be one of \('fp32', 'bf16'\), got 'fp16'"):
        GradCAM(small_model, "layer3", "fp16")


def test_explaining_model_shares_fp32_and_loads_weights_for_int8(model_dir, spec):
    from lizaalert_tagger.vision.explain import explaining_model
    from lizaalert_tagger.vision.model import LizaAlertTagger
    from lizaalert_tagger.vision.quantize import INT8_FILENAME, load_int8

    fp32 = LizaAlertTagger(spec)
    assert explaining_model(fp32, model_dir, spec) is fp32
    loaded = explaining_model(load_int8(model_dir / INT8_FILENAME), model_dir, spec)
    assert isinstance(loaded, LizaAlertTagger) and not loaded.training


def test_overlay_draws_present_tags_and_a_legend():
    from lizaalert_tagger.common.overlay import draw_overlay, drawn_keys, presence

    cells = [[0.0] * 4 for _ in range(4)]
    cells[0][3] = 1.0  # top right
    answer = {"model": {"name": "lizaalert_tagger", "version": "1.0"},
              "attributes": {"terrain": {"code": 1, "label": "forest", "score": 0.9, "probabilities": {}},
                             "car": {"code": 1, "label": "car", "score": 0.8},
                             "drone": {"code": 0, "label": "no drone", "score": 0.7}},
              "explanations": {"terrain": {"value": 1, "map": cells}, "car": {"value": 1, "label": "car", "map": cells},
                               "drone": {"value": 0, "label": "no drone", "map": cells}}}
    assert drawn_keys(answer) == ["car"] and presence(answer, "car") == 0.8 and presence(answer, "drone") == pytest.approx(0.3)
    photo = Image.new("RGB", (400, 300), (90, 90, 90))
    image = draw_overlay(photo, answer)
    assert image.height == 300 and image.width > 400
    pixels = image.load()
    assert pixels[390, 10][0] > pixels[10, 290][0] + 40  # car's red over the top right corner, not the bottom left


def test_overlay_png_is_the_drawing_shrunk_to_its_long_side():
    from lizaalert_tagger.common.overlay import draw_overlay, overlay_png

    answer = {"attributes": {"car": {"code": 1, "label": "car", "score": 0.8}},
              "explanations": {"car": {"value": 1, "label": "car", "map": [[0.0, 1.0], [0.0, 0.0]]}}}
    photo = Image.new("RGB", (1600, 1200), (90, 90, 90))
    png = Image.open(io.BytesIO(overlay_png(photo, answer, 400)))
    assert png.format == "PNG" and png.height == 300 and png.width > 400  # 400x300 photo + the legend
    assert photo.size == (1600, 1200)  # the caller's photo is left as it was
    same = draw_overlay(photo.resize((400, 300), Image.Resampling.LANCZOS), answer)
    assert png.size == same.size


# --- is it right? the pointing game with the shipped model --------------------------------


POINTING_SCENES = 80


def test_pointing_game_with_the_shipped_model():
    """The map's peak falls inside the object's box for >= 80 % of the objects present and predicted
    present on held-out scenes; the same maps with their cells shuffled score far lower."""
    from lizaalert_tagger.vision.explain import DEFAULT_LAYER
    from lizaalert_tagger.vision.model import load_tagger
    from lizaalert_tagger.bench.pointing import TARGET, play, table
    from lizaalert_tagger.common.spec import load_spec

    weights, spec_path = SHIPPED / "weights.safetensors", SHIPPED / "attributes.json"
    missing = [str(p.relative_to(ROOT)) for p in (weights, spec_path) if not p.is_file()]
    if missing:
        pytest.fail(f"the shipped default model is missing ({', '.join(missing)}): the repository ships it "
                    f"(`make train-default` retrains it); the pointing game is measured on it")
    spec = load_spec(spec_path)
    results = play(load_tagger(weights, spec), spec, [DEFAULT_LAYER], count=POINTING_SCENES)
    total = results[DEFAULT_LAYER].total
    print(table(results))
    assert total.cases >= 40, table(results)
    assert total.rate >= TARGET, table(results)
    assert total.control_rate <= total.rate / 2, table(results)


def test_pointing_game_mechanics(small_model, spec):
    """A box hit is a peak inside the box; the command refuses missing weights in one line."""
    import contextlib

    from lizaalert_tagger.bench.pointing import inside, main, play

    assert inside((0.5, 0.5), [[0.4, 0.4, 0.6, 0.6]]) and not inside((0.7, 0.5), [[0.4, 0.4, 0.6, 0.6]])
    results = play(small_model, spec, ["layer4"], count=3, batch=2)
    assert results["layer4"].scenes == 3 and results["layer4"].shape == (8, 8)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["--weights", "/nonexistent/weights.safetensors"]) == 1
    assert "not found" in err.getvalue()
