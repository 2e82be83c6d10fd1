"""Explain requests through the handler in-process: options (serving/explain_options.py), what is explained
(the objects found, what ``target`` names, or all), mixed batches of explanations and predictions, overlays
drawn on the photo decoded once, the cap per request, metrics, the explaining pass's precision."""
from __future__ import annotations

import base64
import io
import json
import re

import pytest
from PIL import Image

from conftest import ROOT, load_handler_module, make_context, make_photo

EXPLAIN = {"explain": "True"}


def found(spec, answer) -> set[str]:
    """The objects (binary attributes) an answer says are present."""
    return {a.key for a in spec.attributes if a.is_binary and answer["attributes"][a.key]["code"] == 1}


# --- options ---------------------------------------------------------------------------------


def test_request_options(spec):
    from lizaalert_tagger.common.errors import InvalidInput
    from lizaalert_tagger.serving.explain_options import explain_options, parse_target

    from lizaalert_tagger.serving.explain_options import Target

    plain = explain_options({"body": b"jpeg"}, spec)
    assert plain.target == Target() and plain.target.scope == "found" and not plain.overlay
    json_body = explain_options({"body": {"data": "...", "target": {"car": 1, "season": "winter"}, "overlay": True}}, spec)
    assert json_body.target == Target(values={"car": 1, "season": 1}) and json_body.overlay
    form = explain_options({"data": b"jpeg", "target": b"car:1, terrain:city", "overlay": b"true"}, spec)
    assert form.target.values == {"car": 1, "terrain": 2} and form.overlay
    assert parse_target('{"hugs": "0", "season": "Зима"}', spec).values == {"hugs": 0, "season": 1}
    for bad, words in ((b"boat", "unknown attribute 'boat'"), ("boat:1", "unknown attribute 'boat'"),
                       ("car:7", re.escape("0 (no car), 1 (car)")), ("{nope", "not valid JSON"), ("[nope", "not valid JSON"),
                       ([1], "list item 1: expected an attribute name"), (["season", ["car"]], r"list item \['car'\]"),
                       ([{"car": 1}], "list item {'car': 1}"), ('["season", 2]', "list item 2"), ([None], "list item None"),
                       (["boat"], "unknown attribute 'boat'"), (7, "must be 'all'"), (True, "must be 'all'"),
                       (b"\xff\xfe", "not UTF-8")):
        with pytest.raises(InvalidInput, match=words) as error:
            parse_target(bad, spec)
        assert error.value.reason == "bad_target" and error.value.status == 400, bad
    with pytest.raises(InvalidInput, match="true or false") as error:
        explain_options({"body": b"x", "overlay": b"maybe"}, spec)
    assert error.value.reason == "bad_option"


def test_target_all_bare_names_and_lists(spec):
    """``all`` (JSON or form text), names without a value (explained at the predicted value) beside
    ``key:value`` pairs, and a JSON list of names; what each wants explained beside the objects found."""
    from lizaalert_tagger.serving.explain_options import Target, explain_options, parse_target

    every = Target(every=True)
    for value in ("all", b"all", " ALL ", ["all"], '["all"]'):
        assert parse_target(value, spec) == every, value
    assert explain_options({"body": {"data": "...", "target": "all"}}, spec).target == every
    assert explain_options({"data": b"jpeg", "target": b"all"}, spec).target == every
    mixed = parse_target(b"season,car:1", spec)
    assert mixed == Target(values={"car": 1}, named=frozenset({"season"})) and mixed.scope == "found+target"
    assert parse_target("season, season:winter,", spec) == Target(values={"season": 1})  # the value wins
    assert parse_target("all,car:0", spec) == Target(values={"car": 0}, every=True)
    names = Target(named=frozenset({"season", "terrain"}))
    assert parse_target(["season", "terrain"], spec) == names == parse_target('["season", "terrain"]', spec)
    assert explain_options({"body": {"data": "...", "target": ["season", "terrain"]}}, spec).target == names
    assert parse_target([], spec) == Target() == parse_target("", spec) == parse_target(" , ", spec)
    served = {key: 0 for key in spec.keys} | {"car": 1, "drone": 1, "season": 2}
    assert Target().wanted(spec, served) == {"car", "drone"}  # the objects found; a categorical value is no object
    assert mixed.wanted(spec, served) == {"car", "drone", "season"}
    assert Target(values={"hugs": 1}).wanted(spec, served) == {"car", "drone", "hugs"}
    assert every.wanted(spec, served) == set(spec.keys) and every.scope == "all"


@pytest.mark.parametrize("target", [
    '{"a":' * 2000,  # json.loads raises RecursionError, not ValueError
    '{"car": ' + "[" * 5000 + "]" * 5000 + "}",
    "car:" + "9" * 5000,  # int() refuses more than 4300 digits
    "car:²",  # a digit to str.isdigit, not to int()
    {"car": {"a": {"b": {"c": {"d": {"e": {"f": "x" * 100_000}}}}}}},
    {"x" * 100_000: 1},
    "[" * 5000 + "]" * 5000,  # a JSON list nested too deeply
    ["x" * 100_000],
    ["season", [[[[[["x" * 100_000]]]]]]],
    "season," * 1000 + "x" * 100_000,
])
def test_odd_targets_are_a_short_400(spec, target):
    """Whatever a client puts in ``target`` is its own 400 with a message of bounded length."""
    from lizaalert_tagger.common.errors import InvalidInput
    from lizaalert_tagger.serving.explain_options import parse_target

    with pytest.raises(InvalidInput) as error:
        parse_target(target, spec)
    assert error.value.status == 400 and error.value.reason == "bad_target" and len(error.value.message) < 300


# --- the handler: explain requests per request, mixed with predictions ---------------------


def test_mixed_batch_answers_each_request(handler, run_batch, scene_photo, spec):
    """[explain, predict, bad photo, explain]: predictions as /predictions answers them, maps for the
    explain requests (of the served values), the bad photo's own 400."""
    photo, other = scene_photo(0), scene_photo(1)
    answers, statuses = run_batch(handler, [{"body": photo, "target": b"all"}, {"body": photo}, {"body": b"not a photo"},
                                            {"body": other, "target": b"all"}, {"body": other}],
                                  [EXPLAIN, {}, EXPLAIN, EXPLAIN, EXPLAIN])
    assert statuses[2] == 400 and answers[2]["type"] == "not_an_image"
    assert all(status in (None, 200) for i, status in enumerate(statuses) if i != 2)
    assert "explanations" not in answers[1] and answers[0]["attributes"] == answers[1]["attributes"]
    alone, _ = run_batch(handler, [{"body": other}], [{}])
    assert answers[3]["attributes"] == alone[0]["attributes"] == answers[4]["attributes"]
    assert list(answers[4]["explanations"]) == [k for k in spec.keys if k in found(spec, answers[4])]  # by default
    for key, entry in answers[4]["explanations"].items():  # the same map as with target=all (another row of the batch)
        every = answers[3]["explanations"][key]
        assert entry["value"] == every["value"] and entry["shape"] == every["shape"]
        assert max(abs(a - b) for x, y in zip(entry["map"], every["map"]) for a, b in zip(x, y)) <= 2e-3
    for answer in (answers[0], answers[3]):  # target=all
        assert list(answer["explanations"]) == list(spec.keys)
        assert answer["explained_with"]["method"] == "grad-cam" and answer["explained_with"]["layer"] == "layer3"
        for key, entry in answer["explanations"].items():
            assert entry["value"] == answer["attributes"][key]["code"] and entry["target"] == "predicted"
            assert entry["shape"] == [16, 16] and len(entry["map"]) == 16
            assert all(0.0 <= v <= 1.0 for line in entry["map"] for v in line)
    assert answers[0]["explanations"] != answers[3]["explanations"]
    # predictions are served by int8: the explanations use the archive's fp32 weights, loaded once
    from lizaalert_tagger.vision.model import LizaAlertTagger

    explainer = handler.service.explainer
    assert isinstance(explainer.model, LizaAlertTagger) and explainer.model is not handler.service.model


def test_explain_first_in_a_batch_of_predictions(handler, run_batch, spec):
    """TorchServe's BaseHandler decided "explain" for the whole batch from the first request."""
    photo = make_photo("JPEG")
    answers, statuses = run_batch(handler, [{"body": photo}] * 3, [EXPLAIN, {}, {}])
    assert "explanations" in answers[0] and "explanations" not in answers[1] and "explanations" not in answers[2]
    assert set(answers[1]["attributes"]) == set(spec.keys) and statuses[1] in (None, 200)


def test_targets_overlay_and_every_payload_form(handler, run_batch, scene_photo, spec):
    from lizaalert_tagger.serving.service import decode_photo

    photo = scene_photo(2)
    b64 = base64.b64encode(photo).decode()
    requests = [
        {"body": {"data": b64, "target": {"car": 1, "season": "winter"}, "overlay": True}},  # JSON
        {"data": photo, "target": b"car:1,season:1", "overlay": b"true"},  # multipart form fields
        {"body": photo, "target": b"car:1,season:winter"},  # raw body, query parameters
        {"body": {"instances": [b64, b64]}, "target": {"car": 1}},  # KServe-style instances
        {"body": photo, "target": b"boat:1"},  # unknown attribute: its own 400
    ]
    answers, statuses = run_batch(handler, requests, [EXPLAIN] * len(requests))
    assert statuses[:4] in ([None] * 4, [200] * 4) and statuses[4] == 400
    assert answers[4]["type"] == "bad_target" and "unknown attribute 'boat'" in answers[4]["message"]
    for i, answer in enumerate(answers[:3] + answers[3]["predictions"]):  # the KServe body takes the target from the query
        car = answer["explanations"]["car"]
        assert car["value"] == 1 and car["target"] == "requested"
        assert "terrain" not in answer["explanations"]  # neither asked for nor an object
        assert set(answer["explanations"]) == found(spec, answer) | {"car"} | ({"season"} if i < 3 else set())
    for answer in answers[:3]:
        assert answer["explanations"]["season"] == {**answer["explanations"]["season"], "value": 1, "label": "winter"}
    assert answers[0]["explanations"] == answers[1]["explanations"] == answers[2]["explanations"]
    width, height = decode_photo(photo, spec.preprocessing, handler.service.settings).image.size
    for answer in answers[:2]:  # drawn on the photo as decoded for the model, the legend beside it
        overlay = Image.open(io.BytesIO(base64.b64decode(answer["overlay"])))
        assert overlay.format == "PNG" and overlay.height == height and overlay.width > width + 100
    assert "overlay" not in answers[2]


def test_each_photo_is_decoded_once_overlays_included(handler, run_batch, monkeypatch):
    """Overlays are drawn on the photo decoded for the model (they decoded every instance again per row):
    3 instances with overlays and a prediction are 4 decodes, each instance gets its own overlay, and the
    explanation is that of the photo /predictions answers for."""
    from lizaalert_tagger.serving import service

    decoded = []
    original = service.decode_image
    monkeypatch.setattr(service, "decode_image", lambda data, **kw: decoded.append(kw["target_size"]) or original(data, **kw))
    colours = ((200, 40, 40), (40, 200, 40), (40, 40, 200))
    photos = [make_photo("JPEG", size=(1600, 1200), color=c) for c in colours]
    body = {"instances": [base64.b64encode(p).decode() for p in photos], "overlay": True}
    answers, statuses = run_batch(handler, [{"body": body}, {"body": photos[0]}], [EXPLAIN, {}])
    assert statuses in ([None, None], [200, 200])
    assert answers[0]["predictions"][0]["attributes"] == answers[1]["attributes"]
    assert decoded == [(256, 256)] * 4
    overlays = [Image.open(io.BytesIO(base64.b64decode(p["overlay"]))).convert("RGB") for p in answers[0]["predictions"]]
    assert all(o.height == 300 for o in overlays)  # the JPEG decoded at 1/4 scale (400x300), the legend beside it
    corners = [o.getpixel((390, 290)) for o in overlays]  # a corner of each photo's own colour field
    assert [max(range(3), key=lambda channel: c[channel]) for c in corners] == [0, 1, 2]


def test_explanations_per_request_are_capped(handler, run_batch, spec):
    """More than MAX_EXPLAINED_PHOTOS instances in one explanation request is its own 413, before any
    decoding; the same body to /predictions, and the batch's other requests, are answered."""
    from lizaalert_tagger.serving.explain_options import MAX_EXPLAINED_PHOTOS

    b64 = base64.b64encode(make_photo("JPEG", size=(64, 48))).decode()
    body = {"instances": [b64] * (MAX_EXPLAINED_PHOTOS + 1)}
    answers, statuses = run_batch(handler, [{"body": body}, {"body": body}], [EXPLAIN, {}])
    assert statuses[0] == 413 and answers[0]["type"] == "too_many_instances"
    assert f"at most {MAX_EXPLAINED_PHOTOS}" in answers[0]["message"] and f"{MAX_EXPLAINED_PHOTOS + 1} photos" in answers[0]["message"]
    assert statuses[1] in (None, 200) and len(answers[1]["predictions"]) == MAX_EXPLAINED_PHOTOS + 1


def test_an_explain_failure_fails_the_explain_requests_only(handler, run_batch, monkeypatch):
    from lizaalert_tagger.vision.explain import GradCAM

    def broken(self, images, targets=None, wanted=None):
        raise RuntimeError("autograd exploded")

    monkeypatch.setattr(GradCAM, "explain", broken)
    photo = make_photo("JPEG")
    answers, statuses = run_batch(handler, [{"body": photo, "target": b"all"}, {"body": photo}], [EXPLAIN, {}])
    assert statuses[0] == 500 and answers[0] == {"code": 500, "type": "internal_error",
                                                 "message": "explain failed: RuntimeError: autograd exploded"}
    assert statuses[1] in (None, 200) and "attributes" in answers[1]


def test_explanations_are_counted_and_timed(handler, model_dir):
    """The service reports plain metrics; the adapter hands each to TorchServe with ModelName and Level."""
    ctx = make_context(model_dir, batch_size=3, headers=[EXPLAIN, {}, EXPLAIN])
    recorded = []
    original = ctx.metrics.add_metric

    def spy(name, value, unit, idx=None, dimensions=None, metric_type=None):
        recorded.append((name, value, unit, {d.name: d.value for d in dimensions or []}))
        return original(name, value, unit, idx, dimensions, metric_type)

    ctx.metrics.add_metric = spy
    handler.handle([{"body": make_photo("JPEG")}] * 3, ctx)
    model = {"ModelName": "lizaalert_tagger", "Level": "Model"}
    assert ("lizaalert_explanations", 2, "count", {**model, "outcome": "ok"}) in recorded
    (ms,) = [value for name, value, unit, dims in recorded if name == "lizaalert_explain_ms" and unit == "ms" and dims == model]
    assert ms > 0
    assert ("lizaalert_images_decoded", 3, "count", model) in recorded


def test_fp32_handler_explains_with_its_own_model(model_dir, run_batch, spec):
    h = load_handler_module(model_dir).LizaAlertHandler()
    h.initialize(make_context(model_dir, batch_size=2, yaml_overrides={"handler": {"precision": "fp32"}}))
    answers, _ = run_batch(h, [{"body": make_photo("JPEG"), "target": b"all"}], [EXPLAIN])
    assert h.service.explainer.model is h.service.model and len(answers[0]["explanations"]) == len(spec.attributes)


def test_the_archive_chooses_the_layer(model_dir, run_batch):
    """``handler.explain_layer`` in model-config.yaml: layer4 answers 8x8 maps; an unknown layer is
    refused when the worker starts, naming the known ones."""
    from lizaalert_tagger.serving.settings import HandlerSettings

    h = load_handler_module(model_dir).LizaAlertHandler()
    h.initialize(make_context(model_dir, batch_size=2, yaml_overrides={"handler": {"explain_layer": "layer4"}}))
    answers, _ = run_batch(h, [{"body": make_photo("JPEG"), "target": b"all"}], [EXPLAIN])
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


# --- what is explained, through the serving core (TaggerService, no TorchServe) ----------------------


@pytest.fixture(scope="module")
def fp32_model(model_dir, spec):
    from lizaalert_tagger.vision.inference import load_model

    return load_model(model_dir, spec, "fp32", channels_last=True)


def tuned_service(model, spec, model_dir, present: set[str], **settings):
    """A service over the seeded fp32 weights whose served answers find exactly ``present`` (any photo): its
    predictions' logits are made up (+20 for those objects, -20 for the others); the explaining pass is real."""
    import torch

    from lizaalert_tagger.serving.service import TaggerService
    from lizaalert_tagger.serving.settings import HandlerSettings

    service = TaggerService(model, spec, HandlerSettings(**{"precision": "fp32", "explain_precision": "fp32", **settings}),
                            model_dir=model_dir, batch_size=4)
    logits = torch.zeros(spec.num_logits)
    for a in spec.attributes:
        if a.is_binary:
            logits[a.logits[0]] = 20.0 if a.key in present else -20.0
    service.forward = lambda images: logits.expand(images.shape[0], -1).clone()
    return service


def handled(service, requests):
    result = service.handle(requests, [EXPLAIN] * len(requests))
    assert [r.status for r in result.replies] == [200] * len(requests), [r.body[:300] for r in result.replies]
    return [json.loads(r.body) for r in result.replies]


def test_by_default_only_the_objects_found_are_explained(fp32_model, spec, model_dir, grad_calls):
    """car and drone found: their two maps, two backward passes (not 11), and the answer says what was
    explained, in what precision, and how to get more."""
    service = tuned_service(fp32_model, spec, model_dir, {"car", "drone"})
    photo = make_photo("JPEG")
    answer, instances = handled(service, [{"body": photo}, {"body": {"instances": [base64.b64encode(photo).decode()] * 2}}])
    assert found(spec, answer) == {"car", "drone"}
    assert list(answer["explanations"]) == ["car", "drone"] and len(grad_calls) == 2  # one chunk of 3 photos
    for entry in answer["explanations"].values():
        assert entry["value"] == 1 and entry["label"] and entry["target"] == "predicted" and entry["shape"] == [16, 16]
        assert len(entry["map"]) == 16 and all(0.0 <= v <= 1.0 for line in entry["map"] for v in line)
    info = answer["explained_with"]
    assert info["attributes_explained"] == "found" and info["explained"] == ["car", "drone"]
    assert info["model_precision"] == "fp32" and info["method"] == "grad-cam" and info["layer"] == "layer3"
    assert "target=all" in info["more"]
    assert [p["explanations"] for p in instances["predictions"]] == [answer["explanations"]] * 2


def test_target_all_and_named_attributes_add_maps(fp32_model, spec, model_dir, grad_calls):
    service = tuned_service(fp32_model, spec, model_dir, {"car", "drone"})
    photo = make_photo("JPEG")
    b64 = base64.b64encode(photo).decode()
    every, season, pairs, listed = handled(service, [
        {"body": {"data": b64, "target": "all"}},
        {"data": photo, "target": b"season"},
        {"data": photo, "target": b"season,car:0"},
        {"body": {"data": b64, "target": ["season", "terrain"]}},
    ])
    assert len(grad_calls) == len(spec.attributes)  # one chunk: every attribute is wanted by some row, each one backward pass
    assert list(every["explanations"]) == list(spec.keys)
    assert every["explained_with"]["attributes_explained"] == "all" and every["explained_with"]["explained"] == list(spec.keys)
    assert "more" not in every["explained_with"]
    assert list(season["explanations"]) == ["season", "car", "drone"]  # the spec's order
    assert season["explanations"]["season"]["value"] == season["attributes"]["season"]["code"]
    assert season["explanations"]["season"]["target"] == "predicted"
    assert season["explained_with"]["attributes_explained"] == "found+target"
    assert season["explained_with"]["explained"] == ["season", "car", "drone"]
    assert pairs["explanations"]["car"] == {**pairs["explanations"]["car"], "value": 0, "label": "no car", "target": "requested"}
    assert list(pairs["explanations"]) == ["season", "car", "drone"]
    assert list(listed["explanations"]) == ["season", "terrain", "car", "drone"]
    for key in ("season", "car", "drone"):  # the same photo: the same maps, whatever else was asked
        assert season["explanations"][key] == every["explanations"][key]


def test_nothing_found_nothing_asked_costs_no_explaining_pass(fp32_model, spec, model_dir, grad_calls):
    """No object found and no target: ``"explanations": {}``, and no model runs beyond the prediction
    (made up here: no model at all; the explainer is not even built)."""
    service = tuned_service(fp32_model, spec, model_dir, set())
    forwards = []
    hook = fp32_model.trunk.conv1.register_forward_hook(lambda *_: forwards.append(1))
    try:
        (answer,) = handled(service, [{"body": make_photo("JPEG"), "overlay": b"true"}])
    finally:
        hook.remove()
    assert answer["explanations"] == {} and found(spec, answer) == set()
    assert forwards == [] and grad_calls == [] and service._explainer is None
    assert answer["explained_with"]["explained"] == [] and answer["explained_with"]["attributes_explained"] == "found"
    assert "target=all" in answer["explained_with"]["more"]
    assert Image.open(io.BytesIO(base64.b64decode(answer["overlay"]))).format == "PNG"  # "no objects found"


def test_explain_precision_setting(fp32_model, spec, model_dir, monkeypatch, tmp_path):
    """``handler.explain_precision``: auto (bf16 where the CPU has native bf16, else fp32), fp32 or bf16; anything
    else refused when the worker starts. The answer reports the precision used; bf16 maps are in [0, 1]."""
    from lizaalert_tagger.common.machine import has_native_bf16
    from lizaalert_tagger.serving import settings as settings_module
    from lizaalert_tagger.serving.settings import HandlerSettings

    assert HandlerSettings.from_yaml({}).explain_precision == "auto"
    with pytest.raises(ValueError, match=re.escape("handler.explain_precision: expected one of ('auto', 'fp32', 'bf16'), got 'fp16'")):
        HandlerSettings.from_yaml({"explain_precision": "fp16"})
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert has_native_bf16(str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")  # AVX-512 BF16 alone (Zen 4): yes
    assert has_native_bf16(str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n")  # bf16 would be emulated: no
    assert not has_native_bf16(str(cpuinfo)) and not has_native_bf16(str(tmp_path / "missing"))
    for amx, auto in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(settings_module, "has_native_bf16", lambda amx=amx: amx)
        assert HandlerSettings.from_yaml({"explain_precision": "auto"}).resolved_explain_precision() == auto
        assert HandlerSettings.from_yaml({"explain_precision": "fp32"}).resolved_explain_precision() == "fp32"
        assert HandlerSettings.from_yaml({"explain_precision": "bf16"}).resolved_explain_precision() == "bf16"
    monkeypatch.setattr(settings_module, "has_native_bf16", lambda: True)
    service = tuned_service(fp32_model, spec, model_dir, {"car"}, explain_precision="auto")
    (answer,) = handled(service, [{"body": make_photo("JPEG")}])
    assert service.explainer.precision == "bf16" and answer["explained_with"]["model_precision"] == "bf16"
    (entry,) = answer["explanations"].values()
    assert entry["shape"] == [16, 16] and all(0.0 <= v <= 1.0 for line in entry["map"] for v in line)
    assert max(v for line in entry["map"] for v in line) in (0.0, 1.0)
