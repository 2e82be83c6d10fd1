"""Explanations: Grad-CAM in explain.py, the handler's explain requests (mixed batches), the real
TorchServe's /explanations endpoint, ``tagctl explain`` and the pointing game of the shipped model."""
from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import ROOT, load_handler_module, make_context, make_photo

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
    assert list(body) == list(spec.keys)
    for key, entry in body.items():
        assert entry["shape"] == [8, 8] and len(entry["map"]) == 8 and all(len(line) == 8 for line in entry["map"])
        assert all(0.0 <= v <= 1.0 for line in entry["map"] for v in line)
        assert entry["value"] == explanation.codes[0][key] and entry["label"] == spec[key].class_for(entry["value"]).label
        assert entry["target"] == ("requested" if key == "car" else "predicted")
    assert body["car"]["value"] == 1 and body["car"]["label"] == "car"


def test_request_options(spec):
    from lizaalert_tagger.vision.explain import explain_options, parse_target
    from lizaalert_tagger.vision.preprocess import ImageError

    assert explain_options({"body": b"jpeg"}, spec).target == {} and not explain_options({"body": b"jpeg"}, spec).overlay
    json_body = explain_options({"body": {"data": "...", "target": {"car": 1, "season": "winter"}, "overlay": True}}, spec)
    assert json_body.target == {"car": 1, "season": 1} and json_body.overlay
    form = explain_options({"data": b"jpeg", "target": b"car:1, terrain:city", "overlay": b"true"}, spec)
    assert form.target == {"car": 1, "terrain": 2} and form.overlay
    assert parse_target('{"hugs": "0", "season": "Зима"}', spec) == {"hugs": 0, "season": 1}
    for bad, reason, words in ((b"car", "bad_target", "key:value"), ("boat:1", "bad_target", "unknown attribute 'boat'"),
                               ("car:7", "bad_target", re.escape("0 (no car), 1 (car)")), ("{nope", "bad_target", "not valid JSON"),
                               ([1], "bad_target", "must be an object")):
        with pytest.raises(ImageError, match=words) as error:
            parse_target(bad, spec)
        assert error.value.reason == reason and error.value.status == 400
    with pytest.raises(ImageError, match="true or false") as error:
        explain_options({"body": b"x", "overlay": b"maybe"}, spec)
    assert error.value.reason == "bad_option"


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


# --- the handler: explain requests per request, mixed with predictions ---------------------


def run_with_headers(handler, model_dir, requests, headers):
    ctx = make_context(model_dir, batch_size=len(requests), headers=headers)
    out = handler.handle(requests, ctx)
    return [json.loads(o) for o in out], [ctx.get_response_status(i)[0] for i in range(len(requests))]


EXPLAIN = {"explain": "True"}


def scene_photo(index: int = 0) -> bytes:
    from lizaalert_tagger import scenes

    return scenes.generate(2001, index, 480, 800)[0]


def test_mixed_batch_answers_each_request(handler, model_dir, spec):
    """[explain, predict, bad photo, explain]: predictions as /predictions answers them, maps for the
    explain requests (of the served values), the bad photo's own 400."""
    photo, other = scene_photo(0), scene_photo(1)
    answers, statuses = run_with_headers(handler, model_dir,
                                         [{"body": photo}, {"body": photo}, {"body": b"not a photo"}, {"body": other}],
                                         [EXPLAIN, {}, EXPLAIN, EXPLAIN])
    assert statuses[2] == 400 and answers[2]["type"] == "not_an_image"
    assert all(status in (None, 200) for i, status in enumerate(statuses) if i != 2)
    assert "explanations" not in answers[1] and answers[0]["attributes"] == answers[1]["attributes"]
    alone, _ = run_with_headers(handler, model_dir, [{"body": other}], [{}])
    assert answers[3]["attributes"] == alone[0]["attributes"]
    for answer in (answers[0], answers[3]):
        assert list(answer["explanations"]) == list(spec.keys)
        assert answer["explained_with"]["method"] == "grad-cam" and answer["explained_with"]["layer"] == "layer3"
        for key, entry in answer["explanations"].items():
            assert entry["value"] == answer["attributes"][key]["code"] and entry["target"] == "predicted"
            assert entry["shape"] == [16, 16] and len(entry["map"]) == 16
            assert all(0.0 <= v <= 1.0 for line in entry["map"] for v in line)
    assert answers[0]["explanations"] != answers[3]["explanations"]
    # predictions are served by int8: the explanations use the archive's fp32 weights, loaded once
    from lizaalert_tagger.vision.model import LizaAlertTagger

    assert isinstance(handler.explainer.model, LizaAlertTagger) and handler.explainer.model is not handler.model


def test_explain_first_in_a_batch_of_predictions(handler, model_dir, spec):
    """TorchServe's BaseHandler decided "explain" for the whole batch from the first request."""
    photo = make_photo("JPEG")
    answers, statuses = run_with_headers(handler, model_dir, [{"body": photo}] * 3, [EXPLAIN, {}, {}])
    assert "explanations" in answers[0] and "explanations" not in answers[1] and "explanations" not in answers[2]
    assert set(answers[1]["attributes"]) == set(spec.keys) and statuses[1] in (None, 200)


def test_targets_overlay_and_every_payload_form(handler, model_dir, spec):
    photo = scene_photo(2)
    b64 = base64.b64encode(photo).decode()
    requests = [
        {"body": {"data": b64, "target": {"car": 1, "season": "winter"}, "overlay": True}},  # JSON
        {"data": photo, "target": b"car:1,season:1", "overlay": b"true"},  # multipart form fields
        {"body": photo, "target": b"car:1,season:winter"},  # raw body, query parameters
        {"body": {"instances": [b64, b64]}, "target": {"car": 1}},  # KServe-style instances
        {"body": photo, "target": b"boat:1"},  # unknown attribute: its own 400
    ]
    answers, statuses = run_with_headers(handler, model_dir, requests, [EXPLAIN] * len(requests))
    assert statuses[:4] in ([None] * 4, [200] * 4) and statuses[4] == 400
    assert answers[4]["type"] == "bad_target" and "unknown attribute 'boat'" in answers[4]["message"]
    for answer in answers[:3] + answers[3]["predictions"]:  # the KServe body takes the target from the query
        car = answer["explanations"]["car"]
        assert car["value"] == 1 and car["target"] == "requested"
        assert answer["explanations"]["terrain"]["target"] == "predicted"
    for answer in answers[:3]:
        assert answer["explanations"]["season"] == {**answer["explanations"]["season"], "value": 1, "label": "winter"}
    assert answers[0]["explanations"] == answers[1]["explanations"] == answers[2]["explanations"]
    for answer in answers[:2]:
        overlay = Image.open(io.BytesIO(base64.b64decode(answer["overlay"])))
        assert overlay.format == "PNG" and overlay.height >= 480 and overlay.width > 640  # the photo + the legend (a long legend adds height)
    assert "overlay" not in answers[2]


def test_an_explain_failure_fails_the_explain_requests_only(handler, model_dir, monkeypatch):
    from lizaalert_tagger.vision.explain import GradCAM

    def broken(self, images, targets=None):
        raise RuntimeError("autograd exploded")

    monkeypatch.setattr(GradCAM, "explain", broken)
    photo = make_photo("JPEG")
    answers, statuses = run_with_headers(handler, model_dir, [{"body": photo}, {"body": photo}], [EXPLAIN, {}])
    assert statuses[0] == 500 and answers[0] == {"code": 500, "type": "internal_error",
                                                 "message": "explain failed: RuntimeError: autograd exploded"}
    assert statuses[1] in (None, 200) and "attributes" in answers[1]


def test_explanations_are_counted_and_timed(handler, model_dir, monkeypatch):
    recorded = []
    original = handler._metric
    monkeypatch.setattr(handler, "_metric", lambda name, amount, *a, **dims: (recorded.append((name, amount, dims)),
                                                                                original(name, amount, *a, **dims)))
    run_with_headers(handler, model_dir, [{"body": make_photo("JPEG")}] * 3, [EXPLAIN, {}, EXPLAIN])
    assert ("lizaalert_explanations", 2, {"outcome": "ok"}) in recorded
    (ms,) = [amount for name, amount, _ in recorded if name == "lizaalert_explain_ms"]
    assert ms > 0


def test_fp32_handler_explains_with_its_own_model(model_dir):
    h = load_handler_module(model_dir).LizaAlertHandler()
    h.initialize(make_context(model_dir, batch_size=2, yaml_overrides={"handler": {"precision": "fp32"}}))
    answers, _ = run_with_headers(h, model_dir, [{"body": make_photo("JPEG")}], [EXPLAIN])
    assert h.explainer.model is h.model and len(answers[0]["explanations"]) == 11


def test_the_archive_chooses_the_layer(model_dir):
    """``handler.explain_layer`` in model-config.yaml: layer4 answers 8x8 maps; an unknown layer is
    refused when the worker starts, naming the known ones."""
    from lizaalert_tagger.serving.service import HandlerSettings

    h = load_handler_module(model_dir).LizaAlertHandler()
    h.initialize(make_context(model_dir, batch_size=2, yaml_overrides={"handler": {"explain_layer": "layer4"}}))
    answers, _ = run_with_headers(h, model_dir, [{"body": make_photo("JPEG")}], [EXPLAIN])
    assert answers[0]["explained_with"]["layer"] == "layer4"
    assert {tuple(e["shape"]) for e in answers[0]["explanations"].values()} == {(8, 8)}
    with pytest.raises(ValueError, match=r"handler.explain_layer: expected one of \('layer1', 'layer2', 'layer3', 'layer4'\), got 'layer5'"):
        HandlerSettings.from_yaml({"explain_layer": "layer5"})


def test_explain_metrics_are_declared():
    import yaml

    config = yaml.safe_load((ROOT / "metrics.yaml").read_text())
    declared = {m["name"]: m for kind in config["model_metrics"].values() for m in kind}
    assert "outcome" in declared["lizaalert_explanations"]["dimensions"]
    assert "lizaalert_explain_ms" in declared


# --- the real TorchServe ---------------------------------------------------------------------


def auth(server):
    return {"Authorization": f"Bearer {server.keys()['inference']}"}


@pytest.mark.integration
def test_explanations_endpoint(server, spec):
    import requests

    url = f"{server.inference_url}/explanations/lizaalert_tagger"
    photo = scene_photo(3)
    r = requests.post(url, data=photo, headers=auth(server), timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body["explanations"]) == list(spec.keys) and body["explanations"]["car"]["shape"] == [16, 16]
    predicted = requests.post(f"{server.inference_url}/predictions/lizaalert_tagger", data=photo, headers=auth(server), timeout=60).json()
    assert body["attributes"] == predicted["attributes"]
    # query parameters with a raw body, a version in the path
    # TorchServe 0.12 drops /explanations' query parameters: the options travel as form fields
    r = requests.post(f"{url}/1.0", files={"data": ("photo.jpg", photo, "image/jpeg")}, data={"target": "drone:1", "overlay": "true"},
                      headers=auth(server), timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["explanations"]["drone"]["target"] == "requested"
    assert Image.open(io.BytesIO(base64.b64decode(r.json()["overlay"]))).format == "PNG"
    # multipart: the photo and the options as form fields
    r = requests.post(url, files={"data": ("photo.jpg", photo, "image/jpeg")}, data={"target": "hugs:1"}, headers=auth(server), timeout=120)
    assert r.status_code == 200 and r.json()["explanations"]["hugs"]["value"] == 1, r.text
    # JSON
    r = requests.post(url, json={"data": base64.b64encode(photo).decode(), "target": {"season": "winter"}}, headers=auth(server), timeout=120)
    assert r.status_code == 200 and r.json()["explanations"]["season"]["label"] == "winter", r.text
    r = requests.post(url, files={"data": ("photo.jpg", photo, "image/jpeg")}, data={"target": "boat:1"}, headers=auth(server), timeout=60)
    assert r.status_code == 400 and r.json()["type"] == "bad_target"
    r = requests.post(url, data=b"not a photo", headers=auth(server), timeout=60)
    assert r.status_code == 400 and r.json()["type"] == "not_an_image"
    metrics = requests.get(f"{server.metrics_url}/metrics", timeout=30).text
    assert 'lizaalert_explanations{ModelName="lizaalert_tagger",Level="Model",outcome="ok"' in metrics
    assert "lizaalert_explain_ms{" in metrics


@pytest.mark.integration
def test_workers_rss_with_explanations_loaded(server):
    """Workers serving int8 load the fp32 weights on their first explanation; the budget is 1.2 GB each."""
    import psutil
    import requests

    photo = scene_photo(4)
    for _ in range(6):  # likely every worker
        assert requests.post(f"{server.inference_url}/explanations/lizaalert_tagger", data=photo, headers=auth(server),
                             timeout=120).status_code == 200
    rss = {pid: psutil.Process(pid).memory_info().rss / 2**20 for pid in server.worker_pids()}
    print(f"worker RSS after explanations: {', '.join(f'{v:.0f} MB' for v in rss.values())}")
    assert rss and max(rss.values()) <= 1200, rss


@pytest.mark.integration
def test_tagctl_explain_writes_one_overlay_per_photo(server, tmp_path):
    from conftest import run_tagctl

    photos = []
    for i in (5, 6):
        path = tmp_path / f"scene_{i}.jpg"
        path.write_bytes(scene_photo(i))
        photos.append(str(path))
    out = tmp_path / "explained"
    code, printed = run_tagctl(server, "explain", *photos, str(tmp_path / "missing.jpg"), "--out", str(out))
    assert code == 1  # the missing photo; the others are written
    for photo in photos:
        image = Image.open(out / f"{Path(photo).name}.png")
        assert image.format == "PNG" and image.width > image.height
        assert f"{photo}: " in printed and str(out / f"{Path(photo).name}.png") in printed
    code, _ = run_tagctl(server, "explain", photos[0], "--out", str(out), "--target", "boat:1")
    assert code == 1


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
