"""The serving core's batches: one entry point without TorchServe, KServe instances in chunks of the
batch size, and every step's failure answered to the requests it concerns only."""
from __future__ import annotations

import base64
import json

import pytest
import torch
import yaml

from conftest import make_context, make_photo

EXPLAIN = {"explain": "True"}


def b64(photo: bytes) -> str:
    return base64.b64encode(photo).decode()


def test_the_service_answers_without_torchserve(handler, model_dir):
    """TaggerService.handle is the whole job: plain replies and metrics, the same bodies the adapter returns."""
    from lizaalert_tagger.serving.service import Metric, TaggerService

    config = yaml.safe_load((model_dir / "model-config.yaml").read_text())
    service = TaggerService.load(model_dir, config, model_name="lizaalert_tagger", model_version="9.9-test")
    requests = [{"body": make_photo("JPEG")}, {"body": b"junk"}, {"body": {"instances": [b64(make_photo("PNG"))] * 2}}]
    result = service.handle(requests)
    assert [r.status for r in result.replies] == [200, 400, 200]
    assert result.replies[1].reason == "not_an_image" and all(r.content_type.startswith("application/json") for r in result.replies)
    through_torchserve = handler.handle(requests, make_context(model_dir, batch_size=3))
    assert [r.body for r in result.replies] == through_torchserve
    names = {m.name for m in result.metrics}
    assert {"lizaalert_images_decoded", "lizaalert_images_refused", "lizaalert_tag_predictions", "HandlerTime"} <= names
    assert Metric("lizaalert_images_decoded", 3, "count") in result.metrics
    assert Metric("lizaalert_images_refused", 1, "count", "counter", (("reason", "not_an_image"),)) in result.metrics
    time_of_day = [m.value for m in result.metrics if m.name == "lizaalert_tag_predictions" and m.dimensions[0] == ("attribute", "time_of_day")]
    assert sum(time_of_day) == 3  # one per answered photo, instances included


def test_instances_run_in_chunks_no_larger_than_the_batch(handler, run_batch, monkeypatch):
    """Two requests of 20 instances and a photo: 41 photos in forward passes of at most batchSize (8),
    each answered as it is alone (they used to make one forward pass over every photo of the batch)."""
    sizes = []
    original = handler.service.forward
    monkeypatch.setattr(handler.service, "forward", lambda images: sizes.append(images.shape[0]) or original(images))
    photos = [make_photo("JPEG", size=(64, 48), color=(12 * i, 90, 255 - 12 * i)) for i in range(20)]
    answers, statuses = run_batch(handler, [{"body": {"instances": [b64(p) for p in photos]}}, {"body": photos[3]},
                                            {"body": {"instances": [b64(p) for p in reversed(photos)]}}])
    assert statuses in ([None] * 3, [200] * 3)
    assert sum(sizes) == 41 and max(sizes) <= handler.service.batch_size == 8
    first, second = answers[0]["predictions"], answers[2]["predictions"]
    assert len(first) == len(second) == 20
    for i in range(20):
        assert first[i]["attributes"].keys() == second[19 - i]["attributes"].keys()
        for key, value in first[i]["attributes"].items():  # the same photo, another chunk and position
            assert value["code"] == second[19 - i]["attributes"][key]["code"]
            assert value["score"] == pytest.approx(second[19 - i]["attributes"][key]["score"], abs=1e-3)
    assert [v["code"] for v in answers[1]["attributes"].values()] == [v["code"] for v in first[3]["attributes"].values()]


def test_a_bad_instance_late_in_a_long_request_fails_that_request_only(handler, run_batch):
    photo = b64(make_photo("JPEG", size=(64, 48)))
    answers, statuses = run_batch(handler, [{"body": {"instances": [photo] * 19 + ["###"]}}, {"body": make_photo("PNG")}])
    assert statuses[0] == 400 and answers[0]["type"] == "bad_base64" and answers[0]["message"].startswith("instance 19:")
    assert statuses[1] in (None, 200) and "attributes" in answers[1]
    not_a_photo = b64(b"not a photo at all")
    answers, statuses = run_batch(handler, [{"body": {"instances": [photo] * 12 + [not_a_photo]}}, {"body": make_photo("PNG")}])
    assert statuses[0] == 400 and answers[0]["type"] == "not_an_image" and answers[0]["message"].startswith("instance 12:")
    assert statuses[1] in (None, 200) and "attributes" in answers[1]


def test_out_of_memory_in_torch_stack_fails_only_its_chunk(handler, run_batch, monkeypatch):
    """A MemoryError stacking one chunk is a named 500 for that chunk's requests; the next chunk is answered."""
    from lizaalert_tagger.serving import service

    calls = []
    original = torch.stack

    def stack(tensors, *args, **kwargs):
        calls.append(len(tensors))
        if len(calls) == 1:
            raise MemoryError()
        return original(tensors, *args, **kwargs)

    monkeypatch.setattr(service.torch, "stack", stack)
    answers, statuses = run_batch(handler, [{"body": make_photo("JPEG", size=(64, 48))} for _ in range(9)])
    assert calls[0] == 8
    assert statuses[:8] == [500] * 8 and statuses[8] in (None, 200)
    assert answers[0] == {"code": 500, "type": "out_of_memory", "message": answers[0]["message"]}
    assert answers[0]["message"].startswith("preprocess ran out of memory") and "attributes" in answers[8]


def test_deeply_nested_target_is_a_400_amid_predictions(handler, run_batch):
    """'{"a":' * 2000 in ``target`` raised RecursionError outside the per-request try: TorchServe answered
    503 to the whole batch. Now it is that request's 400; the predictions beside it get their 200."""
    photo = make_photo("JPEG")
    nested = '{"a":' * 2000
    requests = [{"body": photo}, {"data": photo, "target": nested.encode()}, {"body": photo},
                {"body": {"data": b64(photo), "target": nested}}, {"body": photo}]
    answers, statuses = run_batch(handler, requests, [{}, EXPLAIN, {}, EXPLAIN, {}])
    assert [statuses[i] for i in (1, 3)] == [400, 400]
    assert all(answers[i]["type"] == "bad_target" and "nested too deeply" in answers[i]["message"] for i in (1, 3))
    assert all(statuses[i] in (None, 200) and "attributes" in answers[i] for i in (0, 2, 4))


VICTIM = make_photo("JPEG", color=(1, 2, 3))
FIRST_CALL = {"calls": 0}
# A function of the serving core -> when it fails: for the victim's request only (the victim is the batch's
# first photo and its only explain request).
STEPS = {
    "read_payload": lambda args: args[0].get("body") is VICTIM,
    "explain_options": lambda args: True,
    "decode_image": lambda args: args[0] is VICTIM,
    "image_to_tensor": lambda args: FIRST_CALL.__setitem__("calls", FIRST_CALL["calls"] + 1) or FIRST_CALL["calls"] == 1,
    "explanation_json": lambda args: True,
    "overlay_png": lambda args: True,
}


@pytest.mark.parametrize("step", sorted(STEPS))
def test_a_bug_in_any_step_is_a_named_500_for_its_request_only(handler, run_batch, monkeypatch, step):
    """Whatever raises, and wherever: the request it concerns gets a 500 {code, type, message} naming the
    step; the batch's other requests (a prediction, a bad photo) get their own answers."""
    from lizaalert_tagger.serving import service

    original = getattr(service, step)
    FIRST_CALL["calls"] = 0

    def broken(*args, **kwargs):
        if STEPS[step](args):
            raise RuntimeError(f"{step} exploded")
        return original(*args, **kwargs)

    monkeypatch.setattr(service, step, broken)
    requests = [{"body": VICTIM, "overlay": b"true"}, {"body": make_photo("PNG")}, {"body": b"junk"}]
    answers, statuses = run_batch(handler, requests, [EXPLAIN, {}, {}])
    assert statuses in ([500, None, 400], [500, 200, 400]), (statuses, answers)
    step_name = "explain" if step in ("explanation_json", "overlay_png") else "preprocess"
    assert answers[0] == {"code": 500, "type": "internal_error", "message": f"{step_name} failed: RuntimeError: {step} exploded"}
    assert "attributes" in answers[1] and answers[2]["type"] == "not_an_image"


def test_a_failed_answer_is_not_counted_but_a_refusal_is(handler):
    from lizaalert_tagger.serving.service import Metric

    result = handler.service.handle([{"body": b""}, {"body": {"instances": []}}, {"body": make_photo("JPEG")}])
    refused = {m.dimensions: m.value for m in result.metrics if m.name == "lizaalert_images_refused"}
    assert refused == {(("reason", "empty"),): 1, (("reason", "bad_json"),): 1}
    assert Metric("lizaalert_images_decoded", 1, "count") in result.metrics
    assert [json.loads(r.body).get("type") for r in result.replies] == ["empty", "bad_json", None]
