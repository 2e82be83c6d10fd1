"""Preprocessing: every mode and odd shape to 3x256x256, EXIF orientation, clean refusals."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import PHOTO_CASES as CASES, make_photo, png
from lizaalert_tagger.common.errors import InvalidInput
from lizaalert_tagger.vision.preprocess import decode_image, image_to_tensor, preprocess_image
from lizaalert_tagger.common.spec import Preprocessing

RAW = Preprocessing()  # no mean/std: values stay in [0, 1]


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_mode_gives_3x256x256(case, spec):
    t = preprocess_image(CASES[case](), spec.preprocessing)
    assert t.shape == (3, 256, 256) and t.dtype == torch.float32
    assert torch.isfinite(t).all()


def test_raw_values_in_unit_range_and_colour_kept():
    t = preprocess_image(make_photo("PNG", color=(255, 0, 0)), RAW)
    assert 0.0 <= t.min() and t.max() <= 1.0
    assert t[0, 200, 200] == pytest.approx(1.0) and t[1, 200, 200] == pytest.approx(0.0)


def test_16bit_is_scaled_not_clipped():
    t = preprocess_image(png(Image.fromarray(np.full((8, 8), 32896, dtype=np.uint16))), RAW)
    assert t.mean() == pytest.approx(128 / 255, abs=0.01)  # 32896 / 257 = 128, not white


def test_alpha_is_composited_on_white():
    img = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    t = preprocess_image(png(img), RAW)
    assert t.min() == pytest.approx(1.0)


def test_normalisation_follows_the_spec(spec):
    t = preprocess_image(make_photo("PNG", color=(124, 116, 104)), spec.preprocessing)
    mean = torch.tensor(spec.preprocessing.mean)
    std = torch.tensor(spec.preprocessing.std)
    expected = (torch.tensor([124, 116, 104]) / 255 - mean) / std
    assert torch.allclose(t[:, 200, 200], expected, atol=1e-4)


def test_exif_orientation_is_applied():
    # Stored landscape 200x100 with the bright patch top-left; EXIF 6 = rotate 90° clockwise for display.
    img = Image.new("RGB", (200, 100), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 50, 25))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif, quality=95)
    decoded = decode_image(buf.getvalue())
    assert decoded.image.size == (100, 200)  # upright portrait
    arr = np.asarray(decoded.image)
    assert arr[:50, 75:].mean() > 200  # the patch is now top-right
    assert arr[:50, :25].mean() < 50


def test_first_frame_of_animated_gif():
    frames = [Image.new("RGB", (30, 30), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    t = preprocess_image(buf.getvalue(), RAW)
    assert t[0].mean() > 0.9 and t[2].mean() < 0.1


def test_draft_mode_is_close_to_full_decode():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    big = Image.fromarray(base).resize((4000, 3000), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90)
    fast = decode_image(buf.getvalue(), draft=True)
    slow = decode_image(buf.getvalue(), draft=False)
    assert fast.image.size[0] < 4000 and slow.image.size == (4000, 3000)
    assert (fast.width, fast.height) == (4000, 3000)
    diff = (image_to_tensor(fast.image, RAW) - image_to_tensor(slow.image, RAW)).abs().mean()
    assert diff < 2 / 255


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"hello, this is text", "not_an_image"),
    (b"<html><body>hi</body></html>", "not_an_image"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "not_an_image"),
    (b"PK\x03\x04" + b"\x00" * 100, "not_an_image"),
    (bytes(range(256)) * 4, "not_an_image"),
])
def test_non_images_are_refused(data, reason):
    with pytest.raises(InvalidInput) as e:
        preprocess_image(data)
    assert e.value.reason == reason and 400 <= e.value.status < 500


def test_truncated_jpeg_is_refused():
    data = make_photo("JPEG", size=(800, 600))
    with pytest.raises(InvalidInput) as e:
        preprocess_image(data[: len(data) // 2])
    assert e.value.reason in ("truncated_image", "corrupt_image")


def test_header_without_pixels_is_refused():
    data = make_photo("PNG", size=(300, 300))
    with pytest.raises(InvalidInput):
        preprocess_image(data[:60])


def test_pixel_limit_refuses_before_decoding():
    data = make_photo("PNG", size=(2000, 1000))
    with pytest.raises(InvalidInput) as e:
        preprocess_image(data, max_pixels=1_000_000)
    assert e.value.reason == "too_many_pixels" and e.value.status == 413
    assert "2000x1000" in e.value.message
