"""The handler driven through handle() with a real ts Context, no server, no Java."""
import base64
import json

import pytest

from conftest import load_handler_module, make_context, make_photo


def statuses(ctx, n):
    return [ctx.get_response_status(i)[0] for i in range(n)]


def run(handler, model_dir, requests):
    ctx = make_context(model_dir, batch_size=len(requests))
    out = handler.handle(requests, ctx)
    return [json.loads(o) for o in out], ctx


def test_batch_with_garbage_in_the_middle(handler, model_dir, spec):
    requests = [{"body": make_photo("JPEG")}, {"body": b"definitely not a photo"}, {"data": make_photo("PNG")}]
    answers, ctx = run(handler, model_dir, requests)
    assert len(answers) == 3
    for i in (0, 2):
        assert set(answers[i]["attributes"]) == set(spec.keys)
        assert answers[i]["model"] == {"name": "lizaalert_tagger", "version": "9.9-test"}
        for a in spec.attributes:
            assert answers[i]["attributes"][a.key]["code"] in a.codes
    assert answers[1]["code"] == 400 and answers[1]["type"] == "not_an_image"
    assert "not a photo in a supported format" in answers[1]["message"]
    codes = statuses(ctx, 3)
    assert codes[1] == 400 and codes[0] in (200, None) and codes[2] in (200, None)


def test_same_photo_same_answer_in_any_batch_position(handler, model_dir):
    photo = make_photo("JPEG", color=(10, 200, 90))
    alone, _ = run(handler, model_dir, [{"body": photo}])
    batched, _ = run(handler, model_dir, [{"body": make_photo("PNG")}, {"body": photo}])
    for key, value in alone[0]["attributes"].items():
        assert batched[1]["attributes"][key]["code"] == value["code"]
        assert batched[1]["attributes"][key]["score"] == pytest.approx(value["score"], abs=1e-3)


def test_payload_forms(handler, model_dir):
    photo = make_photo("JPEG")
    b64 = base64.b64encode(photo).decode()
    requests = [
        {"body": bytearray(photo)},                 # raw body
        {"File": photo},                            # multipart field named as in the seed's service
        {"body": {"data": b64}},                    # JSON, parsed by the worker
        {"body": {"data": "###"}},                  # JSON with broken base64
        {"body": {"image_url": "http://x"}},        # JSON without a photo
        {"body": "some text body"},                 # text/plain
        {},                                         # nothing at all
    ]
    answers, ctx = run(handler, model_dir, requests)
    assert [a.get("type") for a in answers] == [None, None, None, "bad_base64", "bad_json", "not_an_image", "empty"]
    assert statuses(ctx, 7)[3:] == [400, 400, 400, 400]
    assert answers[0]["attributes"] == answers[2]["attributes"]


def test_all_bad_batch(handler, model_dir):
    answers, ctx = run(handler, model_dir, [{"body": b""}, {"body": b"x"}])
    assert [a["type"] for a in answers] == ["empty", "not_an_image"]
    assert statuses(ctx, 2) == [400, 400]


def test_unknown_setting_is_refused(model_dir):
    LizaAlertHandler = load_handler_module(model_dir).LizaAlertHandler

    with pytest.raises(ValueError, match="unknown keys \\['precison'\\]"):
        LizaAlertHandler().initialize(make_context(model_dir, yaml_overrides={"handler": {"precison": "bf16"}}))


def test_bf16_setting_agrees_with_fp32(model_dir):
    LizaAlertHandler = load_handler_module(model_dir).LizaAlertHandler

    h = LizaAlertHandler()
    h.initialize(make_context(model_dir, yaml_overrides={"handler": {"precision": "bf16"}}))
    photo = make_photo("JPEG", color=(90, 90, 200))
    answers, _ = run(h, model_dir, [{"body": photo}])
    assert set(answers[0]["attributes"]) == set(h.spec.keys)


def test_available_cores_respects_a_cgroup_quota(tmp_path):
    import os

    from lizaalert_tagger.service import available_cores

    affinity = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("100000 100000\n")
    assert available_cores(str(quota)) == 1
    quota.write_text("max 100000\n")
    assert available_cores(str(quota)) == affinity
    assert available_cores(str(tmp_path / "missing")) == affinity
