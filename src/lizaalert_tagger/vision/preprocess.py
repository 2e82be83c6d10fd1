"""Photo bytes -> 3x256x256 float tensor, exactly as the model was trained.

One pure pipeline shared by the TorchServe handler, training, evaluation and
the benchmarks, so that training and serving cannot drift apart:

1. open the bytes with Pillow, restricted to photo formats; refuse anything
   else, and refuse a header that claims more pixels than ``max_pixels``
   *before* decoding (decompression bombs);
2. for large JPEGs, let libjpeg downscale in the DCT domain (draft mode) to the
   smallest scale that still covers the target size: ~4x less decode work on a
   12 MP photo for a mean pixel difference well under 1/255;
3. first frame only, EXIF orientation applied, any mode -> RGB (16-bit scaled,
   alpha composited on white, CMYK converted);
4. squash-resize to the spec's size (no aspect kept, as the seed did);
5. to float in [0, 1], then the spec's mean/std if it has them.

Bad input raises :class:`~lizaalert_tagger.common.errors.InvalidInput` (or
:class:`~lizaalert_tagger.common.errors.TooLarge`) with a machine-readable
``reason`` and a message for a person. No TorchServe import here.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from lizaalert_tagger.common.errors import InvalidInput, TooLarge
from lizaalert_tagger.common.formats import FORMATS_TEXT, open_image
from lizaalert_tagger.common.spec import Preprocessing

# The largest photos real cameras write are ~100-110 MP (medium format, 108 MP
# phone sensors); 120 MP admits them all. A PNG of that size costs ~360 MB to
# decode, so the limit is also a memory bound per worker.
DEFAULT_MAX_PIXELS = 120_000_000

_RESAMPLING = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}

# We enforce our own pixel limit before decoding; Pillow's global bomb check
# (warning above 89 MP, error above 179 MP) would otherwise fire first with a
# less useful message.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)
# Register every Pillow plugin now so that no request pays for the import (``open_image``
# names the photo formats, which Pillow would otherwise load on the first request).
Image.init()


@dataclass
class DecodedImage:
    image: Image.Image  # RGB, possibly already downscaled by draft mode
    width: int  # as stored in the file, before any downscaling
    height: int
    format: str

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if mode.startswith("I;16") or arr.max(initial=0) > 255:
            arr = arr / 257.0
        elif mode == "F" and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode_image(
    data: bytes,
    *,
    target_size: tuple[int, int] = (256, 256),  # (width, height)
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft: bool = True,
) -> DecodedImage:
    """Decode photo bytes to an RGB image, upright, first frame.

    ``draft`` lets libjpeg decode large JPEGs at 1/2, 1/4 or 1/8 scale, never
    below ``target_size``. Raises :class:`InvalidInput` for anything that is not
    a decodable photo of an allowed format within ``max_pixels``.
    """
    if not data:
        raise InvalidInput("empty", f"The request body is empty: expected a photo ({FORMATS_TEXT}).")
    try:
        img = open_image(data)
    except Image.DecompressionBombError as e:
        raise TooLarge("too_many_pixels", f"The image claims too many pixels: {e}") from None
    except UnidentifiedImageError:
        head = bytes(data[:16])
        raise InvalidInput(
            "not_an_image",
            f"The body ({len(data)} bytes, starting {head!r}) is not a photo in a supported format "
            f"({FORMATS_TEXT}).",
        ) from None
    except MemoryError:
        raise  # not the photo's fault: the caller answers 500, not "corrupt"
    except Exception as e:  # Pillow raises many types on corrupt headers
        raise InvalidInput("corrupt_image", f"The image header could not be read: {e}") from None

    width, height = img.size
    if width <= 0 or height <= 0:
        raise InvalidInput("corrupt_image", f"The image has no pixels ({width}x{height}).")
    if width * height > max_pixels:
        raise TooLarge(
            "too_many_pixels",
            f"The image is {width}x{height} = {width * height / 1e6:.1f} MP; the limit is "
            f"{max_pixels / 1e6:.0f} MP.",
        )
    fmt = img.format or "unknown"
    try:
        if draft and fmt in ("JPEG", "MPO") and width >= 2 * target_size[0] and height >= 2 * target_size[1]:
            img.draft("RGB", target_size)
        img.seek(0)
        img.load()
    except Image.DecompressionBombError as e:
        raise TooLarge("too_many_pixels", f"The image claims too many pixels: {e}") from None
    except MemoryError:
        raise
    except Exception as e:
        text = str(e)
        reason = "truncated_image" if "truncated" in text or "broken data stream" in text else "corrupt_image"
        raise InvalidInput(reason, f"The {fmt} image could not be decoded: {text or type(e).__name__}.") from None
    try:
        img = ImageOps.exif_transpose(img) or img
    except MemoryError:
        raise
    except Exception:
        pass  # a malformed EXIF block should not cost the photo; keep it as stored
    try:
        img = _to_rgb(img)
    except MemoryError:
        raise
    except Exception as e:
        raise InvalidInput("corrupt_image", f"The {fmt} image (mode {img.mode}) could not be converted to RGB: {e}.") from None
    return DecodedImage(image=img, width=width, height=height, format=fmt)


def resize_for_model(image: Image.Image, pre: Preprocessing = Preprocessing()) -> torch.Tensor:
    """RGB image -> ``[3, H, W]`` uint8 tensor at the spec's size (squash resize).

    Training caches this (4x smaller than floats); serving goes straight on to
    :func:`normalize`. Both therefore see the very same pixels.
    """
    if image.mode != "RGB":
        raise ValueError(f"Expected an RGB image. Got mode {image.mode}.")
    height, width = pre.size
    resized = image.resize((width, height), _RESAMPLING[pre.interpolation])
    return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)


def normalize(pixels: torch.Tensor, pre: Preprocessing = Preprocessing()) -> torch.Tensor:
    """uint8 ``[..., 3, H, W]`` -> float in [0, 1], then the spec's mean/std if it has them, on the
    pixels' device (the one normalisation of serving, training and evaluation)."""
    if pixels.dtype != torch.uint8 or pixels.dim() < 3 or pixels.shape[-3] != 3:
        raise ValueError(f"Expected a uint8 [..., 3, H, W] tensor. Got {pixels.dtype} {tuple(pixels.shape)}.")
    tensor = pixels.float().div_(255.0)
    if pre.mean is not None:
        mean, std = _mean_std(pre.mean, pre.std, tensor.device)
        tensor = tensor.sub_(mean).div_(std)
    return tensor


@functools.lru_cache(maxsize=8)
def _mean_std(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel constants on the pixels' device, built once per spec rather than once per photo."""
    return torch.tensor(mean, device=device).view(3, 1, 1), torch.tensor(std, device=device).view(3, 1, 1)


def image_to_tensor(image: Image.Image, pre: Preprocessing = Preprocessing()) -> torch.Tensor:
    """RGB image -> ``[3, H, W]`` float tensor: squash-resize, [0, 1], mean/std."""
    return normalize(resize_for_model(image, pre), pre)


def preprocess_image(
    data: bytes,
    pre: Preprocessing = Preprocessing(),
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft: bool = True,
) -> torch.Tensor:
    """Photo bytes -> ``[3, H, W]`` tensor as the spec's preprocessing says."""
    height, width = pre.size
    decoded = decode_image(data, target_size=(width, height), max_pixels=max_pixels, draft=draft)
    return image_to_tensor(decoded.image, pre)
