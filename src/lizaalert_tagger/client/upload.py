"""What the client sends for a photo: a reduced JPEG copy when the photo is much larger than the model needs.

The model sees 256 x 256 pixels; a 12-20 MP photo is 3-9 MB, and over a field headquarters'
mobile link the upload is the slowest step of tagging a search. By default ``tagctl predict``,
``explain`` and ``tag-folder`` therefore send a copy of the photo upright (EXIF orientation
applied, so the server sees the picture it would have seen), its long side ``SEND_LONG_SIDE``,
as a JPEG of quality ``SEND_QUALITY``: a JPEG is decoded in Pillow's draft mode (libjpeg
downscales in the DCT domain to the smallest scale that still covers the copy's size), then
shrunk with Lanczos. BENCHMARKS.md ("Reduced copies") has the measurements the size and quality
were chosen by: the served tags agree with the original's, and the server does a fraction of
the work per photo.

The photo goes as it is (byte for byte) when a copy would not help or might not be the same
picture to the model: its long side is at most ``REDUCE_ABOVE`` x the copy's; its pixels are not
plain 8-bit colour or grey (alpha, 16-bit: the server converts those its own way); Pillow cannot
read it (the server then says what is wrong with it); or the copy is not smaller. EXIF time and
GPS are read from the original by the caller, and overlays are drawn on the original:
only the request body changes. ``Upload(long_side=None)`` (``--send-original``) sends every
photo as it is. The server takes full photos from any client all the same.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from lizaalert_tagger.common.formats import open_image

__all__ = ["ORIGINAL", "REDUCE_ABOVE", "SEND_LONG_SIDE", "SEND_QUALITY", "Upload", "reduced_copy"]

SEND_LONG_SIDE = 1024  # px: 4x the model's 256 px, so the server still decodes in draft mode at 1/2 (BENCHMARKS.md)
SEND_QUALITY = 90
REDUCE_ABOVE = 1.5  # a photo whose long side is at most 1.5 x the copy's goes as it is: little to save
# Modes the server only converts to RGB (Pillow's convert, as here); alpha, 16-bit and float pixels are
# composited or scaled by the server's own rules, so those photos go as they are.
PLAIN_MODES = frozenset({"RGB", "L", "CMYK", "YCbCr", "P"})


def reduced_copy(data: bytes, long_side: int = SEND_LONG_SIDE, quality: int = SEND_QUALITY) -> bytes | None:
    """A JPEG of the photo upright with its long side ``long_side`` px, or ``None`` when the photo
    should be sent as it is (the module's docstring says when)."""
    from lizaalert_tagger.common.overlay import open_photo

    try:
        with open_image(data) as header:
            size, mode, transparent = header.size, header.mode, "transparency" in header.info
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - not a photo Pillow reads: the server says what is wrong with it
        return None
    if max(size) <= REDUCE_ABOVE * long_side or mode not in PLAIN_MODES or transparent:
        return None
    try:
        image = open_photo(data, long_side)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)  # no EXIF: the copy is upright already
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - a truncated or corrupt photo: the server answers for it
        return None
    copy = buffer.getvalue()
    return copy if len(copy) < len(data) else None


@dataclass(frozen=True)
class Upload:
    """How photos are sent: a reduced copy of ``long_side`` px at JPEG ``quality`` (:func:`reduced_copy`),
    or with ``long_side=None`` the file as it is."""

    long_side: int | None = SEND_LONG_SIDE
    quality: int = SEND_QUALITY

    def __post_init__(self) -> None:
        if self.long_side is not None and self.long_side < 1:
            raise ValueError(f"Expected a copy's long side >= 1 px or None (the original). Got {self.long_side}.")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"Expected a JPEG quality from 1 to 100. Got {self.quality}.")

    def body(self, data: bytes) -> bytes:
        """The request body for a photo's bytes: its reduced copy, or ``data`` itself."""
        if self.long_side is None:
            return data
        return reduced_copy(data, self.long_side, self.quality) or data


ORIGINAL = Upload(long_side=None)
