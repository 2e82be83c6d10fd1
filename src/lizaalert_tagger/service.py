"""Serving logic that is not TorchServe plumbing: settings, request payloads, batches.

The handler (``tagger_handler.py``) is a thin TorchServe adapter over this
module; another server would reuse it unchanged. No TorchServe import here.
"""
from __future__ import annotations

import base64
import binascii
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lizaalert_tagger.model import load_tagger
from lizaalert_tagger.preprocess import DEFAULT_MAX_PIXELS, ImageError, decode_image, image_to_tensor
from lizaalert_tagger.quantize import INT8_FILENAME, load_int8
from lizaalert_tagger.spec import AttributeSpec, Preprocessing

# JSON keys that may carry a base64 photo, and multipart field names we accept
# (the seed's service used "File").
PHOTO_KEYS = ("data", "body", "image", "file", "File", "b64", "instances")
PRECISIONS = ("fp32", "bf16", "int8")
WEIGHTS_FILENAME = "weights.pt"  # the fp32 state dict in every archive


@dataclass
class HandlerSettings:
    """The ``handler:`` section of model-config.yaml."""

    precision: str = "fp32"  # "bf16": autocast (AMX/AVX512-BF16); "int8": the archive's quantized TorchScript
    channels_last: bool = True
    torch_threads: int = 0  # 0: cores // maxWorkers, so workers x threads <= cores
    jpeg_draft: bool = True  # DCT-domain downscaling of large JPEGs
    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def from_yaml(cls, section: dict[str, Any] | None) -> "HandlerSettings":
        section = dict(section or {})
        unknown = set(section) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"model-config.yaml handler: unknown keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        settings = cls(**section)
        if settings.precision not in PRECISIONS:
            raise ValueError(f"model-config.yaml handler.precision: expected one of {PRECISIONS}, got {settings.precision!r}")
        return settings

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"


@dataclass
class PreparedBatch:
    """What ``preprocess`` hands to ``inference``: the good photos stacked, the bad ones' errors."""

    size: int
    tensor: torch.Tensor | None
    good: list[int]  # request indexes that are in ``tensor``, in order
    errors: dict[int, ImageError] = field(default_factory=dict)
    megapixels: list[float] = field(default_factory=list)
    decode_ms: float = 0.0  # summed over the good photos
    tensor_ms: float = 0.0


def extract_photo(request: dict[str, Any]) -> bytes:
    """The photo bytes of one TorchServe request, whatever way it was sent."""
    payload = None
    for key in PHOTO_KEYS:
        if request.get(key) is not None:
            payload = request[key]
            break
    else:  # a multipart form with some other field name: take the first file-like field
        payload = next((v for v in request.values() if isinstance(v, (bytes, bytearray))), None)
    if isinstance(payload, dict):  # JSON body, already parsed by the worker
        inner = next((payload[k] for k in PHOTO_KEYS if k in payload), None)
        if inner is None:
            raise ImageError(
                "bad_json",
                f"The JSON body has keys {sorted(payload)[:10]}; expected {{\"data\": \"<base64 photo>\"}}.",
            )
        payload = inner[0] if isinstance(inner, list) and inner else inner
        if isinstance(payload, dict):
            payload = payload.get("b64") or payload.get("data")
        if not isinstance(payload, str):
            raise ImageError("bad_json", f"\"data\" must be a base64 string, got {type(payload).__name__}.")
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ImageError("bad_base64", f"\"data\" is not valid base64 ({e}).") from None
    if isinstance(payload, str):
        raise ImageError(
            "not_an_image",
            f"The body is text ({len(payload)} characters, starting {payload[:20]!r}); expected photo bytes "
            "(Content-Type image/* or application/octet-stream) or JSON {\"data\": \"<base64>\"}.",
        )
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload)
    if payload is None:
        raise ImageError("empty", "The request carries no photo: send it as the body, a form file or JSON base64.")
    raise ImageError("bad_json", f"Expected a photo, got JSON of type {type(payload).__name__}.")


def load_model(model_dir: str | Path, spec: AttributeSpec, settings: HandlerSettings) -> torch.nn.Module:
    """The model variant ``settings.precision`` asks for, from an unpacked archive, ready for :func:`run_inference`.

    fp32 and bf16 rebuild the network from the spec and load the state dict
    (tensors only); int8 loads the quantized TorchScript that archive.py built.
    """
    model_dir = Path(model_dir)
    if settings.precision == "int8":
        return load_int8(model_dir / INT8_FILENAME)
    model = load_tagger(model_dir / WEIGHTS_FILENAME, spec)
    return model.to(memory_format=torch.channels_last) if settings.channels_last else model


def run_inference(model: torch.nn.Module, images: torch.Tensor, *, bf16: bool = False, channels_last: bool = True) -> torch.Tensor:
    """The forward pass every caller shares (handler, evaluation, bench): fp32 logits out."""
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model(images).float()


def available_cores(cgroup_cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """CPUs this process may really use: its affinity, capped by a cgroup v2 CPU quota.

    In a container limited to 2 CPUs on a 32-core node the affinity says 32;
    the quota (``cpu.max``: "200000 100000") says 2, and threads beyond that
    only fight over the quota.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = open(cgroup_cpu_max).read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota visible: the affinity is the limit
    return cores


def error_body(error: ImageError) -> dict[str, Any]:
    """The JSON body of a refused request: ``{"code", "type", "message"}``."""
    return {"code": error.status, "type": error.reason, "message": error.message}


def prepare_batch(requests: list[dict[str, Any]], pre: Preprocessing, settings: HandlerSettings) -> PreparedBatch:
    """Decode and preprocess every request; a bad photo becomes an error for its own index only."""
    tensors, good, errors, megapixels = [], [], {}, []
    decode_ms = tensor_ms = 0.0
    height, width = pre.size
    for idx, request in enumerate(requests):
        try:
            start = time.perf_counter()
            decoded = decode_image(
                extract_photo(request),
                target_size=(width, height),
                max_pixels=settings.max_pixels,
                draft=settings.jpeg_draft,
            )
            middle = time.perf_counter()
            tensors.append(image_to_tensor(decoded.image, pre))
            decode_ms += (middle - start) * 1000
            tensor_ms += (time.perf_counter() - middle) * 1000
            good.append(idx)
            megapixels.append(decoded.megapixels)
        except ImageError as e:
            errors[idx] = e
    return PreparedBatch(
        size=len(requests),
        tensor=torch.stack(tensors) if tensors else None,
        good=good,
        errors=errors,
        megapixels=megapixels,
        decode_ms=decode_ms,
        tensor_ms=tensor_ms,
    )
