"""Property-based fuzzing of preprocessing: any bytes either give a 3x256x256 tensor or a clean ImageError."""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_photo
from lizaalert_tagger.vision.preprocess import ImageError, preprocess_image

SEEDS = [make_photo(fmt, size=(48, 32)) for fmt in ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")]
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(data: bytes) -> None:
    try:
        t = preprocess_image(data, max_pixels=4_000_000)
    except ImageError as e:
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
