"""The int8 variant of the tagger: built once at archive time, loaded by the server.

The ResNet34 trunk is quantized with PyTorch's FX graph mode (x86 backend:
per-channel int8 weights, calibrated int8 activations) on photos that went
through the serving preprocessing; the 11 small heads stay fp32. The result
is saved as a frozen TorchScript file (``weights_int8.pt``) next to the fp32
state dict in the archive, so that a worker loads it in well under a second
instead of calibrating at every start, and ``precision: fp32`` or ``bf16``
in model-config.yaml still serves the very same weights without it.

No TorchServe import here.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

INT8_FILENAME = "weights_int8.pt"
BACKEND = "x86"


class _Int8Tagger(nn.Module):
    """Quantized trunk + the fp32 heads, with the tagger's output layout."""

    def __init__(self, trunk: nn.Module, heads: nn.ModuleDict, head_order: list[str]) -> None:
        super().__init__()
        self.trunk = trunk
        self.heads = heads
        self.head_order = list(head_order)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.trunk(images)
        return torch.cat([self.heads[key](features) for key in self.head_order], dim=1)


def quantize_int8(model: nn.Module, calibration: torch.Tensor, *, batch_size: int = 16) -> torch.jit.ScriptModule:
    """fp32 ``LizaAlertTagger`` + normalised calibration images ``[N, 3, H, W]`` -> frozen int8 TorchScript.

    The calibration images should look like what the server will see (real
    photos, or generated scenes at real photo sizes) and be preprocessed the
    serving way: the activation ranges are learnt from them.
    """
    from torch.ao.quantization import get_default_qconfig_mapping, quantize_fx

    if calibration.dim() != 4 or calibration.shape[1] != 3 or len(calibration) == 0:
        raise ValueError(f"Expected calibration images [N>0, 3, H, W]. Got {tuple(calibration.shape)}.")
    if BACKEND not in torch.backends.quantized.supported_engines:
        raise RuntimeError(f"This PyTorch build has no {BACKEND!r} quantized engine (has {torch.backends.quantized.supported_engines}).")
    torch.backends.quantized.engine = BACKEND
    model = copy.deepcopy(model).float().eval().to(memory_format=torch.contiguous_format)
    example = calibration[:1].contiguous()
    with warnings.catch_warnings():
        # torch.ao.quantization announces its own deprecation on every call; it still works in the pinned torch.
        warnings.simplefilter("ignore")
        prepared = quantize_fx.prepare_fx(model.trunk, get_default_qconfig_mapping(BACKEND), (example,))
        with torch.inference_mode():
            for start in range(0, len(calibration), batch_size):
                prepared(calibration[start:start + batch_size].contiguous())
        trunk = quantize_fx.convert_fx(prepared)
        wrapped = _Int8Tagger(trunk, model.heads, model.head_order).eval()
        with torch.inference_mode():
            traced = torch.jit.trace(wrapped, example.repeat(2, 1, 1, 1))
            return torch.jit.freeze(traced)


def save_int8(module: torch.jit.ScriptModule, path: str | Path) -> Path:
    path = Path(path)
    torch.jit.save(module, str(path))
    return path


def load_int8(path: str | Path) -> torch.jit.ScriptModule:
    """Load a file written by :func:`save_int8`, with a clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path.name} is not in the model directory: precision 'int8' needs an archive built with "
            f"lizaalert-archive --int8 (or set precision: bf16 / fp32 in model-config.yaml)."
        )
    if BACKEND in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = BACKEND
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise ValueError(f"{path}: not an int8 TorchScript model written by archive.py ({type(e).__name__}: {e})") from None
    return module.eval()
