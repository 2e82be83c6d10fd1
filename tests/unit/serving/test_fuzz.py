"""Property-based fuzzing: of preprocessing (any bytes give a 3x256x256 tensor or a clean 4xx), and of the
handler in-process (nested, huge and odd JSON, form fields and headers beside predictions: every other
request of the batch still gets its 200, and the odd one a 200 or a 4xx, never a 5xx)."""
import base64
import functools

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_photo
from lizaalert_tagger.common.errors import InvalidInput
from lizaalert_tagger.vision.preprocess import preprocess_image

SEEDS = [make_photo(fmt, size=(48, 32)) for fmt in ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")]
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(data: bytes) -> None:
    try:
        t = preprocess_image(data, max_pixels=4_000_000)
    except InvalidInput as e:
        assert 400 <= e.status < 500 and e.reason and e.message
        return
    assert t.shape == (3, 256, 256) and torch.isfinite(t).all()


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    check(data)


@FUZZ
@given(st.sampled_from(range(len(SEEDS))), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=12), st.integers(0, 10**6))
def test_mutated_real_photos(seed_index, flips, cut):
    data = bytearray(SEEDS[seed_index])
    for position, value in flips:
        data[position % len(data)] = value
    if cut % 3 == 0:
        data = data[: max(1, cut % len(data))]
    check(bytes(data))


# --- the handler, in-process ---------------------------------------------------------------

PHOTO = make_photo("JPEG", size=(64, 48))
PHOTO_B64 = base64.b64encode(PHOTO).decode()


def nested(depth: int, leaf=1, key: str = "a"):
    """``{"a": {"a": ... leaf}}``, ``depth`` levels: what the worker's json.loads hands over (it gives up near 1000)."""
    return functools.reduce(lambda inner, _: {key: inner}, range(depth), leaf)


json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                          max_leaves=12)
nested_text = st.builds(lambda opener, depth: opener * depth, st.sampled_from(['{"a":', "[", '{"car":', '{"target":', "{"]),
                        st.sampled_from([1, 2, 50, 2000, 20_000, 100_000]) | st.integers(1, 5000))
huge_text = st.builds(lambda char, n: char * n, st.sampled_from(["9", "x", "{", "é", "\x00", "car:1,"]), st.integers(1000, 200_000))
nested_json = st.builds(nested, st.sampled_from([1, 2, 50, 900]) | st.integers(1, 900), st.sampled_from([1, "x", [], PHOTO_B64]), st.sampled_from(["a", "car", "data"]))
odd = json_value | nested_text | huge_text | nested_json | st.binary(max_size=300)
field = odd | st.sampled_from([b"car:1", b"true", b"maybe", PHOTO, PHOTO_B64, "car:1,season:winter", {"car": 1}, True])
body = st.dictionaries(st.sampled_from(["data", "instances", "target", "overlay", "b64", "image", "other"]),
                       field | st.lists(st.sampled_from([PHOTO_B64, "###", 7, None]) | odd, max_size=10), max_size=4)
odd_request = (st.dictionaries(st.sampled_from(["body", "data", "target", "overlay", "File", "image", "x"]), field | body, max_size=4)
               | st.fixed_dictionaries({"target": odd}, optional={"data": field, "body": body, "overlay": field}))
odd_headers = (st.just({"explain": "True"})  # /explanations, as TorchServe marks it
               | st.dictionaries(st.sampled_from(["explain", "content-type", "x-odd", "target"]),
                                 st.sampled_from(["True", "true", "False", ""]) | st.text(max_size=20)
                                 | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2), max_size=3))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.tuples(odd_request, odd_headers), min_size=1, max_size=3), st.integers(0, 3))
def test_odd_requests_never_cost_the_predictions_beside_them(handler, run_batch, odd_requests, position):
    requests = [{"body": PHOTO}, {"data": PHOTO}]
    headers = [{}, {}]
    for request, head in odd_requests:
        at = position % (len(requests) + 1)
        requests.insert(at, request)
        headers.insert(at, head)
    good = [i for i, r in enumerate(requests) if r in ({"body": PHOTO}, {"data": PHOTO}) and headers[i] == {}]
    answers, statuses = run_batch(handler, requests, headers)
    for i in good:
        assert statuses[i] in (None, 200) and len(answers[i]["attributes"]) == 11, (i, statuses, answers[i])
    for i, (status, answer) in enumerate(zip(statuses, answers)):
        if status not in (None, 200):
            assert 400 <= status < 500 and answer["code"] == status and answer["type"] and answer["message"], (requests[i], answer)
            assert len(answer["message"]) < 400, answer["message"][:400]
