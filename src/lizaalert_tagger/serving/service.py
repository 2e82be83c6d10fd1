"""Serving logic that is not TorchServe plumbing: settings, request payloads, batches.

The handler (``tagger_handler.py``) is a thin TorchServe adapter over this
module; another server would reuse it unchanged. No TorchServe import here.
"""
from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lizaalert_tagger.vision.explain import DEFAULT_LAYER, LAYERS
from lizaalert_tagger.vision.model import load_tagger
from lizaalert_tagger.vision.preprocess import DEFAULT_MAX_PIXELS, ImageError, decode_image, image_to_tensor
from lizaalert_tagger.vision.quantize import INT8_FILENAME, load_int8
from lizaalert_tagger.common.spec import AttributeSpec, Preprocessing

# JSON keys that may carry a base64 photo, and multipart field names we accept
# (the seed's service used "File").
PHOTO_KEYS = ("data", "body", "image", "file", "File", "b64", "instances")
PRECISIONS = ("fp32", "bf16", "int8")
MAX_INSTANCES = 64  # photos in one {"instances": [...]} request
WEIGHTS_FILENAME = "weights.pt"  # the fp32 state dict in every archive


@dataclass
class HandlerSettings:
    """The ``handler:`` section of model-config.yaml."""

    precision: str = "fp32"  # "bf16": autocast (AMX/AVX512-BF16); "int8": the archive's quantized TorchScript
    channels_last: bool = True
    torch_threads: int = 0  # 0: cores // maxWorkers, so workers x threads <= cores
    jpeg_draft: bool = True  # DCT-domain downscaling of large JPEGs
    max_pixels: int = DEFAULT_MAX_PIXELS
    # Grad-CAM's layer for /explanations: layer3 (16x16) localises best, layer4 (8x8) costs less;
    # both measured in the README's "Explanations" section and BENCHMARKS.md.
    explain_layer: str = DEFAULT_LAYER

    @classmethod
    def from_yaml(cls, section: dict[str, Any] | None) -> "HandlerSettings":
        section = dict(section or {})
        unknown = set(section) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"model-config.yaml handler: unknown keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        settings = cls(**section)
        if settings.precision not in PRECISIONS:
            raise ValueError(f"model-config.yaml handler.precision: expected one of {PRECISIONS}, got {settings.precision!r}")
        if settings.explain_layer not in LAYERS:
            raise ValueError(f"model-config.yaml handler.explain_layer: expected one of {LAYERS}, got {settings.explain_layer!r}")
        return settings

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"


class RequestFailure(Exception):
    """A request that cannot be answered for a reason of ours, not the client's: an HTTP 5xx or 501."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message

    @classmethod
    def internal(cls, step: str, error: BaseException) -> "RequestFailure":
        """A 500 naming the step that failed; ``MemoryError`` says so instead of blaming the photo."""
        if isinstance(error, MemoryError):
            return cls(500, "out_of_memory", f"{step} ran out of memory: the worker could not hold this photo; try a smaller one or fewer at once")
        return cls(500, "internal_error", f"{step} failed: {type(error).__name__}: {error}".rstrip(": "))


@dataclass
class PreparedBatch:
    """What ``preprocess`` hands to ``inference``: the good photos stacked, the refused requests' errors.

    A request usually carries one photo; a KServe-style ``{"instances": [...]}`` body carries
    several, answered together as ``{"predictions": [...]}`` in the order sent.
    """

    size: int  # requests in the batch
    tensor: torch.Tensor | None
    owners: list[int]  # for each row of ``tensor``: the request it belongs to
    errors: dict[int, ImageError | RequestFailure] = field(default_factory=dict)
    instances: set[int] = field(default_factory=set)  # requests that sent {"instances": [...]}
    megapixels: list[float] = field(default_factory=list)
    decode_ms: float = 0.0  # summed over the good photos
    tensor_ms: float = 0.0

    @property
    def good(self) -> list[int]:
        """Requests with photos in ``tensor``, in order."""
        return sorted(set(self.owners))

    def fail(self, requests: list[int], error: ImageError | RequestFailure) -> None:
        """Refuse ``requests`` (their rows stay in the tensor but are not answered)."""
        for idx in requests:
            self.errors[idx] = error

    def answers(self, per_row: list[Any]) -> list[Any]:
        """One answer per request: its row's answer, ``{"predictions": [...]}`` for instances, or its error."""
        answers: list[Any] = [None] * self.size
        grouped: dict[int, list[Any]] = {}
        for owner, answer in zip(self.owners, per_row):
            grouped.setdefault(owner, []).append(answer)
        for idx, rows in grouped.items():
            answers[idx] = {"predictions": rows} if idx in self.instances else rows[0]
        for idx, error in self.errors.items():
            answers[idx] = error_body(error)
        return answers


def extract_photos(request: dict[str, Any]) -> tuple[list[bytes], bool]:
    """The photo bytes of one TorchServe request, whatever way it was sent, and whether it used ``instances``."""
    payload = None
    for key in PHOTO_KEYS:
        if request.get(key) is not None:
            payload = request[key]
            break
    else:  # a multipart form with some other field name: take the first file-like field
        payload = next((v for v in request.values() if isinstance(v, (bytes, bytearray))), None)
    if isinstance(payload, dict):  # JSON body, already parsed by the worker
        if isinstance(payload.get("instances"), list):
            items = payload["instances"]
            if not items:
                raise ImageError("bad_json", "\"instances\" is empty: expected a list of base64 photos.")
            if len(items) > MAX_INSTANCES:
                raise ImageError("too_many_instances", f"{len(items)} instances in one request; at most {MAX_INSTANCES}: split the request.", 413)
            photos = []
            for number, item in enumerate(items):
                try:
                    photos.append(_base64_photo(item))
                except ImageError as e:
                    raise ImageError(e.reason, f"instance {number}: {e.message}", e.status) from None
            return photos, True
        inner = next((payload[k] for k in PHOTO_KEYS if k in payload), None)
        if inner is None:
            raise ImageError(
                "bad_json",
                f"The JSON body has keys {sorted(payload)[:10]}; expected {{\"data\": \"<base64 photo>\"}} or {{\"instances\": [...]}}.",
            )
        return [_base64_photo(inner)], False
    if isinstance(payload, str):
        raise ImageError(
            "not_an_image",
            f"The body is text ({len(payload)} characters, starting {payload[:20]!r}); expected photo bytes "
            "(Content-Type image/* or application/octet-stream) or JSON {\"data\": \"<base64>\"}.",
        )
    if isinstance(payload, (bytes, bytearray)):
        return [bytes(payload)], False
    if payload is None:
        raise ImageError("empty", "The request carries no photo: send it as the body, a form file or JSON base64.")
    raise ImageError("bad_json", f"Expected a photo, got JSON of type {type(payload).__name__}.")


def _base64_photo(value: Any) -> bytes:
    if isinstance(value, dict):  # {"b64": ...} or {"data": ...}
        value = value.get("b64") or value.get("data")
    if not isinstance(value, str):
        raise ImageError("bad_json", f"a photo must be a base64 string, got {type(value).__name__}.")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError("bad_base64", f"not valid base64 ({e}).") from None


def error_body(error: ImageError | RequestFailure) -> dict[str, Any]:
    """The JSON body of a refused request: ``{"code", "type", "message"}``."""
    return {"code": error.status, "type": error.reason, "message": error.message}


def prepare_batch(requests: list[dict[str, Any]], pre: Preprocessing, settings: HandlerSettings,
                  skip: dict[int, ImageError | RequestFailure] | None = None) -> PreparedBatch:
    """Decode and preprocess every request; a bad photo fails its own request only.

    ``skip``: requests already refused (not decoded). An unexpected exception
    while decoding one request is that request's 500, naming the step.
    """
    tensors, owners, megapixels = [], [], []
    errors: dict[int, ImageError | RequestFailure] = dict(skip or {})
    instances: set[int] = set()
    decode_ms = tensor_ms = 0.0
    height, width = pre.size
    for idx, request in enumerate(requests):
        if idx in errors:
            continue
        try:
            photos, is_instances = extract_photos(request)
            rows, mps = [], []
            for number, photo in enumerate(photos):
                start = time.perf_counter()
                try:
                    decoded = decode_image(photo, target_size=(width, height), max_pixels=settings.max_pixels, draft=settings.jpeg_draft)
                except ImageError as e:
                    if is_instances:
                        raise ImageError(e.reason, f"instance {number}: {e.message}", e.status) from None
                    raise
                middle = time.perf_counter()
                rows.append(image_to_tensor(decoded.image, pre))
                decode_ms += (middle - start) * 1000
                tensor_ms += (time.perf_counter() - middle) * 1000
                mps.append(decoded.megapixels)
        except ImageError as e:
            errors[idx] = e
            continue
        except Exception as e:  # a bug or MemoryError: this request's 500, the others go on
            errors[idx] = RequestFailure.internal("preprocess", e)
            continue
        tensors += rows
        owners += [idx] * len(rows)
        megapixels += mps
        if is_instances:
            instances.add(idx)
    return PreparedBatch(
        size=len(requests),
        tensor=torch.stack(tensors) if tensors else None,
        owners=owners,
        errors=errors,
        instances=instances,
        megapixels=megapixels,
        decode_ms=decode_ms,
        tensor_ms=tensor_ms,
    )


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
