"""The ``handler:`` section of the archive's model-config.yaml, checked when a worker starts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lizaalert_tagger.common.machine import has_native_bf16
from lizaalert_tagger.vision.explain import DEFAULT_LAYER, LAYERS
from lizaalert_tagger.vision.inference import PRECISIONS
from lizaalert_tagger.vision.preprocess import DEFAULT_MAX_PIXELS

EXPLAIN_PRECISIONS = ("auto", "fp32", "bf16")


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
    # The explaining pass (forward with autograd, and the backward passes): "bf16" is autocast over
    # the fp32 weights, "auto" takes it where the CPU computes bf16 natively (AMX or AVX-512 BF16), else fp32.
    explain_precision: str = "auto"

    @classmethod
    def from_yaml(cls, section: dict[str, Any] | None) -> HandlerSettings:
        section = dict(section or {})
        unknown = set(section) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"model-config.yaml handler: unknown keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        settings = cls(**section)
        if settings.precision not in PRECISIONS:
            raise ValueError(f"model-config.yaml handler.precision: expected one of {PRECISIONS}, got {settings.precision!r}")
        if settings.explain_layer not in LAYERS:
            raise ValueError(f"model-config.yaml handler.explain_layer: expected one of {LAYERS}, got {settings.explain_layer!r}")
        if settings.explain_precision not in EXPLAIN_PRECISIONS:
            raise ValueError(f"model-config.yaml handler.explain_precision: expected one of {EXPLAIN_PRECISIONS}, "
                             f"got {settings.explain_precision!r}")
        return settings

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    def resolved_explain_precision(self) -> str:
        """The explaining pass's precision, ``"fp32"`` or ``"bf16"``: ``auto`` is bf16 where the CPU has native bf16 (AMX or AVX-512 BF16)."""
        if self.explain_precision != "auto":
            return self.explain_precision
        return "bf16" if has_native_bf16() else "fp32"
