"""The photo formats the tagger reads: one whitelist for the server, the CSV reader and the client.

- ``PHOTO_FORMATS``: Pillow's names of the decoders a photo may reach. Restricting Pillow's
  openers keeps its large zoo of exotic decoders (and their bugs) away from hostile input;
- ``PHOTO_EXTENSIONS``: the file names ``tagctl tag-folder`` and the labels CSV take for photos;
- ``sniff_format``: the format by the leading bytes, which tells a photo from a video renamed
  ``.jpg`` without decoding it;
- ``open_image``: the one way the package opens a photo with Pillow (server, overlays, EXIF,
  report thumbnails), restricted to ``PHOTO_FORMATS``.

Adding a format (HEIC, say) is a change here and a Pillow plugin, nowhere else.
No Pillow at import: commands that never open a photo stay light.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import IO, Any

__all__ = ["FORMATS_TEXT", "PHOTO_EXTENSIONS", "PHOTO_FORMATS", "file_format", "is_photo_name", "open_image",
           "sniff_format"]

PHOTO_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")  # Pillow's names; JPEG includes MPO (multi-picture)
FORMATS_TEXT = "JPEG, PNG, WebP, BMP, TIFF or GIF"  # the same, for messages

PHOTO_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)

# Leading bytes of each format in PHOTO_FORMATS (WebP is RIFF....WEBP, checked apart).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
SNIFF_BYTES = 16


def sniff_format(head: bytes) -> str | None:
    """The photo format (one of ``PHOTO_FORMATS``) that ``head``, a file's first bytes, starts like; else None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def file_format(path: str | Path) -> str | None:
    """The photo format of a file by its leading bytes, or None if it does not start like a photo."""
    with open(path, "rb") as f:
        return sniff_format(f.read(SNIFF_BYTES))


def is_photo_name(path: str | Path) -> bool:
    """Whether a file name has a photo extension (case-insensitive)."""
    return Path(path).suffix.lower() in PHOTO_EXTENSIONS


def open_image(source: bytes | bytearray | memoryview | str | Path | IO[bytes]) -> Any:
    """``PIL.Image.open`` restricted to ``PHOTO_FORMATS`` (lazy, as Pillow's: the header only).

    Raises Pillow's ``UnidentifiedImageError`` for anything else, whatever its extension says.
    """
    from PIL import Image

    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    return Image.open(source, formats=PHOTO_FORMATS)
