"""The served model and its forward pass, shared by the serving core, training's evaluation and the benchmarks.

No TorchServe import; settings arrive as plain arguments (``serving.settings`` reads them from the
archive's model-config.yaml).
"""
from __future__ import annotations

from pathlib import Path

import torch

from lizaalert_tagger.common.spec import AttributeSpec
from lizaalert_tagger.vision.model import load_tagger
from lizaalert_tagger.vision.quantize import INT8_FILENAME, load_int8

PRECISIONS = ("fp32", "bf16", "int8")
WEIGHTS_FILENAME = "weights.pt"  # the fp32 state dict in every archive


def load_model(model_dir: str | Path, spec: AttributeSpec, precision: str = "fp32", *,
               channels_last: bool = True) -> torch.nn.Module:
    """The model variant ``precision`` names, from an unpacked archive, ready for :func:`run_inference`.

    fp32 and bf16 rebuild the network from the spec and load the state dict
    (tensors only); int8 loads the quantized TorchScript that the archive builder made.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    model_dir = Path(model_dir)
    if precision == "int8":
        return load_int8(model_dir / INT8_FILENAME)
    model = load_tagger(model_dir / WEIGHTS_FILENAME, spec)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def run_inference(model: torch.nn.Module, images: torch.Tensor, *, bf16: bool = False, channels_last: bool = True) -> torch.Tensor:
    """The forward pass every caller shares (serving, evaluation, bench): fp32 logits out."""
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model(images).float()
