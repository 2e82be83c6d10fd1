"""The one photo-format whitelist (lizaalert_tagger.common.formats) and the places that open photos with it:
the server's decoder, the overlays, EXIF, the report's thumbnails, the labels CSV and tag-folder."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from conftest import PHOTO_CASES, make_photo
from lizaalert_tagger.common.formats import (PHOTO_EXTENSIONS, PHOTO_FORMATS, file_format, is_photo_name, open_image,
                                             sniff_format)

# Formats Pillow decodes that are no photo format of ours: each must be refused everywhere.
OUTSIDE = {"ico": lambda: make_photo("ICO", size=(32, 32)), "tga": lambda: make_photo("TGA"),
           "pcx": lambda: make_photo("PCX"), "ppm": lambda: make_photo("PPM")}


@pytest.mark.parametrize("case", PHOTO_CASES)
def test_every_photo_format_is_sniffed_and_opened(case):
    data = PHOTO_CASES[case]()
    with open_image(data) as img:
        opened = img.format
    assert opened in PHOTO_FORMATS
    assert sniff_format(data[:16]) == opened


def test_a_multi_picture_jpeg_counts_as_jpeg():
    buf = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buf, "MPO", save_all=True, append_images=[Image.new("RGB", (64, 48), (9, 9, 9))])
    with open_image(buf.getvalue()) as img:
        assert img.format == "MPO" and getattr(img, "n_frames", 1) == 2
    assert sniff_format(buf.getvalue()) == "JPEG"


def test_extensions_name_only_whitelisted_formats():
    """Each photo extension is one Pillow opens as a whitelisted format (MPO is JPEG's multi-picture)."""
    Image.init()
    registered = Image.registered_extensions()
    for extension in PHOTO_EXTENSIONS:
        assert registered.get(extension) in (*PHOTO_FORMATS, "MPO"), extension
    assert is_photo_name("a/B.JPG") and is_photo_name("x.tiff") and not is_photo_name("clip.mp4") and not is_photo_name("x")


def _refusals(data: bytes, tmp_path) -> dict[str, object]:
    """What each place that opens a photo makes of ``data`` (named like a JPEG)."""
    from lizaalert_tagger.client.report import _thumbnail
    from lizaalert_tagger.common.exif import read_exif
    from lizaalert_tagger.common.overlay import open_photo
    from lizaalert_tagger.vision.preprocess import decode_image

    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    outcomes: dict[str, object] = {"sniff": file_format(path), "exif": read_exif(path).warnings}
    for name, opener in {"open_image": lambda: open_image(data), "overlay": lambda: open_photo(data, 64),
                         "decode": lambda: decode_image(data),
                         "thumbnail": lambda: _thumbnail(path, tmp_path / "t.jpg", None, 32, 0)}.items():
        try:
            opener()
            outcomes[name] = "opened"
        except Exception as e:  # noqa: BLE001 - which exception it is is asserted below
            outcomes[name] = getattr(e, "reason", None) or type(e).__name__  # the decoder's errors carry a reason
    return outcomes


@pytest.mark.parametrize("case", OUTSIDE)
def test_a_format_outside_the_whitelist_is_refused_everywhere(case, tmp_path):
    """Pillow opens ICO, TGA, PCX and PPM; none of them reaches a decoder through the package."""
    data = OUTSIDE[case]()
    Image.open(io.BytesIO(data)).load()  # Pillow itself would decode it
    got = _refusals(data, tmp_path)
    assert got["sniff"] is None
    assert got["exif"] == ("no EXIF read: not a photo (JPEG, PNG, WebP, BMP, TIFF or GIF)",)
    assert got["open_image"] == got["overlay"] == got["thumbnail"] == "UnidentifiedImageError", got
    assert got["decode"] == "not_an_image", got


def test_a_whitelisted_photo_opens_everywhere(tmp_path):
    got = _refusals(make_photo("JPEG"), tmp_path)
    assert got == {"sniff": "JPEG", "exif": (), "open_image": "opened", "overlay": "opened", "decode": "opened",
                   "thumbnail": "opened"}
