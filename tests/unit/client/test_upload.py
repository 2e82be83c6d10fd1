"""What tagctl sends for a photo (client/upload.py): a reduced, upright JPEG copy of a large photo; small,
unreadable or unusual photos as they are; ``--send-original`` byte for byte. EXIF time and GPS come from
the original and the overlays are drawn on it; the server sees the picture it would have seen.

The commands run in-process against conftest's ``FakeTorchServe`` (a loopback HTTP server that records
every body) or with ``TaggerClient.explain`` patched.
"""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from conftest import EXIF_RATIONAL, EXIF_SHORT, exif_payload, fake_answer, read_details_csv

TAG_ORIENTATION = 0x0112
GPS = [(1, 2, "N"), (2, EXIF_RATIONAL, [(55, 1), (45, 1), (0, 1)]), (3, 2, "E"), (4, EXIF_RATIONAL, [(37, 1), (30, 1), (0, 1)])]


def big_photo(size=(4000, 3000), orientation: int | None = None, gps: bool = False, quality: int = 90) -> bytes:
    """A JPEG of ``size`` whose content shows any turn or flip: colour gradients across and down, a block
    near the top-left corner, sensor-like noise; with an EXIF orientation and GPS when asked."""
    from lizaalert_tagger.scenes.exif import insert_exif

    width, height = size
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    pixels = np.stack([np.broadcast_to(220 * x, (height, width)), np.broadcast_to(200 * y, (height, width)),
                       np.full((height, width), 90, np.float32)], axis=-1)
    pixels[height // 10: height // 3, width // 12: width // 4] = (250, 250, 30)
    pixels += np.random.default_rng(0).normal(0, 4, pixels.shape).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    data = buffer.getvalue()
    if orientation is None and not gps:
        return data
    ifd0 = [(TAG_ORIENTATION, EXIF_SHORT, [orientation])] if orientation else []
    return insert_exif(data, exif_payload(ifd0, gps=GPS if gps else None))


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def model_input(data: bytes) -> np.ndarray:
    """The 256 x 256 pixels the server's preprocessing makes of a request body."""
    from lizaalert_tagger.vision.preprocess import decode_image, resize_for_model

    return resize_for_model(decode_image(data).image).numpy().astype(np.int16)


# --- the copy ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size, expected", [((4000, 3000), (1024, 768)), ((5472, 3648), (1024, 683)),
                                            ((3000, 4000), (768, 1024)), ((1920, 1080), (1024, 576))])
def test_a_large_photo_goes_as_a_smaller_jpeg_of_long_side_1024(size, expected):
    from lizaalert_tagger.client.upload import Upload

    data = big_photo(size)
    body = Upload().body(data)
    copy = opened(body)
    assert copy.format == "JPEG" and copy.mode == "RGB" and copy.size == expected
    assert len(body) < len(data) / 3
    assert opened(Upload(long_side=512).body(data)).size == tuple(round(v * 512 / max(size)) for v in size)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_the_copy_is_upright_and_the_server_sees_the_same_picture(orientation):
    """EXIF orientation is applied before reducing and not carried into the copy: the server's own decoding of
    the copy gives the model the pixels it gives for the original (a copy left as stored, or turned twice, would
    be far off: the gradients run the other way)."""
    from lizaalert_tagger.client.upload import Upload

    data = big_photo((3200, 2400), orientation=orientation)
    body = Upload().body(data)
    copy = opened(body)
    assert copy.size == ((768, 1024) if orientation in (6, 8) else (1024, 768))
    assert copy.getexif().get(TAG_ORIENTATION) in (None, 1)
    assert np.abs(model_input(body) - model_input(data)).mean() < 1.5
    stored = big_photo((3200, 2400))  # the same pixels without the orientation: a different picture to the model
    assert np.abs(model_input(stored) - model_input(data)).mean() > 20


def test_a_jpeg_is_decoded_in_draft_mode_at_the_smallest_scale_that_covers_the_copy(monkeypatch):
    from PIL import JpegImagePlugin

    from lizaalert_tagger.client.upload import reduced_copy

    decoded = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = draft(self, mode, size)
        decoded.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    assert opened(reduced_copy(big_photo((4000, 3000)))).size == (1024, 768)
    assert opened(reduced_copy(big_photo((5472, 3648)))).size == (1024, 683)
    assert decoded == [(2000, 1500), (1368, 912)]  # 1/2 and 1/4: 1/4 and 1/8 would fall under 1024 px


@pytest.mark.parametrize("case", ["small", "just under the threshold", "not a photo", "alpha", "16-bit", "truncated"])
def test_photos_a_copy_would_not_help_go_as_they_are(case):
    from lizaalert_tagger.client.upload import Upload

    if case == "small":
        data = big_photo((640, 480))
    elif case == "just under the threshold":
        data = big_photo((1536, 1024))  # 1.5 x 1024: little to save
    elif case == "not a photo":
        data = b"photo 1"
    elif case in ("alpha", "16-bit"):
        image = Image.new("RGBA", (3000, 2000), (10, 200, 30, 0)) if case == "alpha" else Image.new("I;16", (3000, 2000), 40000)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        data = buffer.getvalue()
    else:
        data = big_photo((4000, 3000))[:20000]
    assert Upload().body(data) is data


def test_a_copy_that_is_not_smaller_is_not_sent():
    """Pure noise saved at JPEG quality 5 is small; its copy at quality 100 would be larger: the photo goes as it is."""
    from lizaalert_tagger.client.upload import Upload, reduced_copy

    noise = np.random.default_rng(0).integers(0, 255, (1800, 2400, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG", quality=5)
    data = buffer.getvalue()
    assert reduced_copy(data, 1024, 100) is None and Upload(quality=100).body(data) is data
    assert opened(Upload().body(big_photo((2400, 1800)))).size == (1024, 768)  # a photo of the same size is reduced


def test_send_original_sends_every_photo_as_it_is():
    from lizaalert_tagger.client.upload import ORIGINAL, Upload

    data = big_photo((4000, 3000), orientation=6)
    assert ORIGINAL.body(data) is data
    with pytest.raises(ValueError, match="Expected a copy's long side >= 1 px"):
        Upload(long_side=0)
    with pytest.raises(ValueError, match="Expected a JPEG quality from 1 to 100. Got 101"):
        Upload(quality=101)


# --- through tagctl ---------------------------------------------------------------------------------------


def tagctl(url: str, *args: str) -> int:
    from lizaalert_tagger.client import tagctl as cli

    return cli.main(["--inference-url", url, "--management-url", url, "--token", "t", "--retries", "0", *args])


def test_predict_sends_the_copy_and_send_original_the_file(fake_torchserve, tmp_path):
    photo = tmp_path / "drone.jpg"
    photo.write_bytes(big_photo((5472, 3648), orientation=8))
    assert tagctl(fake_torchserve.url, "predict", str(photo)) == 0
    assert tagctl(fake_torchserve.url, "predict", "--send-size", "768", str(photo)) == 0
    assert tagctl(fake_torchserve.url, "predict", "--send-original", str(photo)) == 0
    copy, smaller, original = fake_torchserve.bodies()
    assert opened(copy).format == "JPEG" and opened(copy).size == (683, 1024)  # upright: orientation 8 turns it
    assert opened(smaller).size == (512, 768)
    assert original == photo.read_bytes()


def test_tag_folder_reads_exif_from_the_original_and_sends_copies(fake_torchserve, spec, tmp_path):
    folder, run = tmp_path / "photos", tmp_path / "run"
    folder.mkdir()
    (folder / "big.jpg").write_bytes(big_photo((4000, 3000), gps=True))
    (folder / "small.jpg").write_bytes(small := big_photo((800, 600)))
    assert tagctl(fake_torchserve.url, "tag-folder", str(folder), "--out", f"{run}/", "--quiet") == 0
    bodies = {opened(body).size: body for body in fake_torchserve.bodies()}
    assert set(bodies) == {(1024, 768), (800, 600)}
    assert bodies[(800, 600)] == small  # a small photo goes as it is
    assert "GPSInfo" not in str(opened(bodies[(1024, 768)]).getexif()) and not opened(bodies[(1024, 768)]).getexif()
    rows = {row["path"]: row for row in read_details_csv(run / "details.csv")}
    assert float(rows["big.jpg"]["latitude"]) == pytest.approx(55.75) and float(rows["big.jpg"]["longitude"]) == pytest.approx(37.5)

    assert tagctl(fake_torchserve.url, "tag-folder", str(folder), "--out", f"{run}/", "--quiet", "--restart",
                  "--send-original") == 0
    assert sorted(map(len, fake_torchserve.bodies()[2:])) == sorted(len(p.read_bytes()) for p in folder.iterdir())


def test_explain_sends_the_copy_and_draws_the_overlay_on_the_original(spec, tmp_path, monkeypatch):
    from lizaalert_tagger.client.http import TaggerClient

    sent = []

    def explain(client, photo, model="lizaalert_tagger", version=None, target=None, overlay=False):
        sent.append(photo)
        return json.loads(json.dumps(fake_answer(spec)))

    monkeypatch.setattr(TaggerClient, "explain", explain)
    photo = tmp_path / "big.jpg"
    photo.write_bytes(big_photo((4000, 3000)))
    assert tagctl("http://127.0.0.1:9", "explain", str(photo), "--out", str(tmp_path / "out"), "--size", "2000") == 0
    assert opened(sent[0]).size == (1024, 768)
    overlay = Image.open(tmp_path / "out" / "big.jpg.png")
    assert overlay.height == 1500 and overlay.width > 2000  # the original at --size 2000, the legend beside it
