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
    """The same photos through an fp32 and a bf16 handler: same codes, probabilities within bf16's precision."""
    LizaAlertHandler = load_handler_module(model_dir).LizaAlertHandler
    handlers = {}
    for precision in ("fp32", "bf16"):
        h = LizaAlertHandler()
        h.initialize(make_context(model_dir, yaml_overrides={"handler": {"precision": precision}}))
        assert h.service.settings.precision == precision
        handlers[precision] = h
    photos = [{"body": make_photo("JPEG", color=c)} for c in ((90, 90, 200), (200, 180, 20), (30, 30, 30))]
    fp32, _ = run(handlers["fp32"], model_dir, photos)
    bf16, _ = run(handlers["bf16"], model_dir, photos)
    for a, b in zip(fp32, bf16):
        assert set(a["attributes"]) == set(handlers["fp32"].service.spec.keys)
        for key, value in a["attributes"].items():
            assert abs(value["score"] - b["attributes"][key]["score"]) < 0.05, key
            if abs(value["score"] - 0.5) > 0.05:  # a near-tie may flip within bf16's precision
                assert value["code"] == b["attributes"][key]["code"], key


def test_available_cores_respects_a_cgroup_quota(tmp_path):
    import os

    from lizaalert_tagger.common.machine import available_cores

    affinity = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("100000 100000\n")
    assert available_cores(str(quota)) == 1
    quota.write_text("max 100000\n")
    assert available_cores(str(quota)) == affinity
    assert available_cores(str(tmp_path / "missing")) == affinity


def test_explain_requests_are_told_apart_even_first_in_a_batch(handler, run_batch, spec):
    """TorchServe marks explanations per request; the base handler looked at the first one only and
    crashed (503 for the whole batch). Each request gets its own kind of answer."""
    photo = make_photo("JPEG")
    answers, codes = run_batch(handler, [{"body": photo}, {"body": photo}, {"body": photo}],
                               [{"explain": "True"}, {}, {"explain": "True"}])
    assert codes in ([None] * 3, [200] * 3)
    assert "explanations" in answers[0] and "explanations" in answers[2] and "explanations" not in answers[1]
    assert set(answers[0]["explanations"]) == {a.key for a in spec.attributes  # by default: the objects found
                                               if a.is_binary and answers[0]["attributes"][a.key]["code"] == 1}
    assert set(answers[1]["attributes"]) == set(spec.keys) and answers[1]["attributes"] == answers[0]["attributes"]


def test_an_internal_error_is_a_500_per_request_naming_the_step(handler, model_dir, monkeypatch):
    """A bug in inference answers 500 {code, type, message} per request (never a batch-wide 503 that
    clients retry); the bad photo of the same batch keeps its own 400."""
    def broken(images):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(handler.service, "forward", broken)
    answers, ctx = run(handler, model_dir, [{"body": make_photo("JPEG")}, {"body": b"junk"}, {"body": make_photo("PNG")}])
    assert statuses(ctx, 3) == [500, 400, 500]
    assert answers[0] == answers[2] == {"code": 500, "type": "internal_error", "message": "inference failed: RuntimeError: kernel exploded"}
    assert answers[1]["type"] == "not_an_image"


def test_a_postprocess_error_names_postprocess(handler, model_dir, monkeypatch):
    from lizaalert_tagger.serving import service

    def broken_decode(*args, **kwargs):
        raise KeyError("label")

    monkeypatch.setattr(service, "decode_logits", broken_decode)
    answers, ctx = run(handler, model_dir, [{"body": make_photo("JPEG")}])
    assert statuses(ctx, 1) == [500]
    assert answers[0]["type"] == "internal_error" and answers[0]["message"].startswith("postprocess failed: KeyError")


def test_kserve_instances_are_all_answered_in_order(handler, model_dir):
    """{"instances": [a, b, c]} answers every photo, in order, as {"predictions": [...]} (it used to answer only a)."""
    photos = [make_photo("JPEG", color=c) for c in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
    singles, _ = run(handler, model_dir, [{"body": p} for p in photos])
    b64 = [base64.b64encode(p).decode() for p in photos]
    answers, ctx = run(handler, model_dir, [{"body": {"instances": b64}}, {"body": photos[0]}])
    assert [p["attributes"] for p in answers[0]["predictions"]] == [s["attributes"] for s in singles]
    assert answers[1]["attributes"] == singles[0]["attributes"]
    bad, ctx = run(handler, model_dir, [{"body": {"instances": [b64[0], "###"]}}, {"body": photos[1]}])
    assert statuses(ctx, 2)[0] == 400 and bad[0]["type"] == "bad_base64" and bad[0]["message"].startswith("instance 1:")
    assert bad[1]["attributes"] == singles[1]["attributes"]


def test_memory_error_is_not_a_corrupt_image(handler, run_batch, monkeypatch):
    """Running out of memory while decoding is the server's 500, not the client's 400 corrupt_image."""
    from PIL import Image

    def no_memory(self, *args, **kwargs):
        raise MemoryError()

    photo = make_photo("PNG")
    monkeypatch.setattr(Image.Image, "load", no_memory)
    answers, codes = run_batch(handler, [{"body": photo}])
    assert codes == [500] and answers[0]["type"] == "out_of_memory" and "ran out of memory" in answers[0]["message"]
