"""Grad-CAM explanations: where the model looked, for the attributes asked (all 11 at most).

Pure torch and the spec: no TorchServe import (``.importlinter``: the core is server-free),
so the serving core, the pointing game (``bench/pointing.py``) and the benchmark share this code.
A request's options (``target``, ``overlay``) are read in ``serving/explain_options.py``, which also
decides what a request wants explained (by default the objects the answer found); the overlay is
drawn by ``common/overlay.py``.

How one batch is explained (:meth:`GradCAM.explain`):

1. the trunk runs up to ``layer`` once, without autograd (the early layers never see a
   backward pass);
2. that activation ``A`` (``[B, C, h, w]``) becomes a leaf that requires grad, and the rest of
   the network (the later layers, the pooling and the 11 heads) runs once on it, recording a
   graph;
3. per attribute that at least one row wants (``wanted``), one
   ``torch.autograd.grad(score, A, retain_graph=True)``: the target score is the chosen class's
   logit for a categorical attribute, the logit for a present binary attribute and its negative
   for an absent one (the evidence *for* the value explained), summed over the rows that want
   it (the others are masked to zero). An attribute no row wants costs no backward pass, and a
   batch that wants nothing costs nothing: not even the forward pass runs;
4. Grad-CAM: ``relu(sum_c mean_hw(dscore/dA_c) * A_c)``, divided by its maximum, so each map
   is in ``[0, 1]`` with its peak at 1 (all zeros when nothing in the photo supports the
   value).

The rows of a batch are independent (BatchNorm and Dropout in eval mode), so one backward of
the batch's summed score gives every row's gradient, and a masked row's gradient is zero
without changing the others'.

Precision (``precision``): ``fp32``, or ``bf16``: ``torch.autocast`` over the fp32 weights for
steps 1-2; the backward passes run in the dtypes autocast chose for their forward ops (PyTorch
advises against a backward inside autocast), and the maps are computed in float32 from the
bf16 activation and gradients. ``serving.settings`` picks bf16 where the CPU has AMX.

The map covers the photo as the model saw it: squashed to the spec's size (256x256), so a
cell ``(i, j)`` of an ``h x w`` map covers the fractions ``[j/w, (j+1)/w] x [i/h, (i+1)/h]``
of the original photo, whatever its aspect ratio.

The layer: ``layer3`` (16x16 at 256 px) by default, chosen with the pointing game
(``lizaalert-pointing-game``; the figures are in the README's "Explanations" section).
Parameters never need gradients here: :class:`GradCAM` switches them off, so a backward
computes only what the activation's gradient needs.
"""
from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lizaalert_tagger.common.spec import Attribute, AttributeSpec
from lizaalert_tagger.vision.answers import codes_from_logits
from lizaalert_tagger.vision.inference import load_model
from lizaalert_tagger.vision.model import LizaAlertTagger

LAYERS = ("layer1", "layer2", "layer3", "layer4")
DEFAULT_LAYER = "layer3"
_STEM = ("conv1", "bn1", "relu", "maxpool")
MAP_DECIMALS = 3  # 16x16 maps x 11 attributes (target=all): ~15 KB of JSON per photo
METHOD = "grad-cam"
PRECISIONS = ("fp32", "bf16")  # of the explaining pass; bf16: autocast over the fp32 weights


# --- Grad-CAM -------------------------------------------------------------------------


@dataclass
class Explanation:
    """The maps of one batch, for the (row, attribute) pairs that were explained.

    ``codes[b]``: for each attribute explained in row ``b`` (and only those), the value (code)
    explained; ``maps[b, k]`` is attribute ``spec.attributes[k]``'s map of row ``b`` where its key is
    in ``codes[b]``, zeros elsewhere.
    """

    logits: torch.Tensor | None  # [B, num_logits]: the explaining model's logits (float32); None: nothing ran
    maps: torch.Tensor  # [B, len(spec.attributes), h, w], float32 in [0, 1]; [B, K, 0, 0] when nothing ran
    codes: list[dict[str, int]]  # per row: the value explained for each attribute explained
    layer: str
    precision: str = "fp32"  # of the explaining pass: "fp32" or "bf16"

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.maps.shape[-2]), int(self.maps.shape[-1])

    @property
    def explained(self) -> list[frozenset[str]]:
        """Per row: the keys of the attributes whose maps were computed."""
        return [frozenset(codes) for codes in self.codes]

    @classmethod
    def nothing(cls, rows: int, attributes: int, layer: str, precision: str = "fp32") -> Explanation:
        """A batch of ``rows`` with no map computed (no model ran)."""
        return cls(logits=None, maps=torch.zeros(rows, attributes, 0, 0), codes=[{} for _ in range(rows)],
                   layer=layer, precision=precision)


class GradCAM:
    """Grad-CAM maps for the attributes of a :class:`LizaAlertTagger` at one trunk layer."""

    def __init__(self, model: LizaAlertTagger, layer: str = DEFAULT_LAYER, precision: str = "fp32") -> None:
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if not isinstance(model, LizaAlertTagger):
            raise TypeError(f"Grad-CAM needs the fp32 LizaAlertTagger (autograd), got {type(model).__name__}")
        self.model = model.eval()
        model.requires_grad_(False)  # only the activation needs a gradient
        self.spec: AttributeSpec = model.spec
        self.layer = layer
        self.precision = precision
        trunk = model.trunk
        names = [*_STEM, *LAYERS]
        cut = names.index(layer) + 1
        self._before = [getattr(trunk, name) for name in names[:cut]]
        self._after = [getattr(trunk, name) for name in names[cut:]]
        self._channels_last = trunk.conv1.weight.is_contiguous(memory_format=torch.channels_last)

    def activation(self, images: torch.Tensor) -> torch.Tensor:
        """The trunk up to ``layer``, without autograd."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"Expected a [batch, 3, H, W] tensor. Got {tuple(images.shape)}.")
        x = images.contiguous(memory_format=torch.channels_last) if self._channels_last else images
        with torch.no_grad():
            for module in self._before:
                x = module(x)
        return x

    def rest(self, activation: torch.Tensor) -> torch.Tensor:
        """From ``layer``'s output to the logits: the later layers, pooling, the heads."""
        x = activation
        for module in self._after:
            x = module(x)
        trunk = self.model.trunk
        features = trunk.fc(torch.flatten(trunk.avgpool(x), 1))
        return self.model.forward_head(features)

    def explain(self, images: torch.Tensor, targets: Sequence[Mapping[str, int]] | None = None,
                wanted: Sequence[Collection[str]] | None = None) -> Explanation:
        """Maps of the attributes each row wants: one forward, one backward per attribute wanted.

        ``targets[b]``: the value (code) to explain per attribute key for row ``b``; the
        attributes it leaves out explain this model's own decision. Codes are checked
        (``serving.explain_options.parse_target`` makes them from a request).
        ``wanted[b]``: the keys of the attributes to explain for row ``b`` (None: every attribute
        of every row); when no row wants anything, no model runs.
        """
        rows = images.shape[0]
        for name, given in (("targets", targets), ("wanted", wanted)):
            if given is not None and len(given) != rows:
                raise ValueError(f"{len(given)} {name} for {rows} photos")
        wants = [frozenset(self.spec.keys)] * rows if wanted is None else [self._wanted(keys) for keys in wanted]
        attributes = [(k, a) for k, a in enumerate(self.spec.attributes) if any(a.key in w for w in wants)]
        if not attributes:
            return Explanation.nothing(rows, len(self.spec.attributes), self.layer, self.precision)
        with torch.inference_mode(False), torch.enable_grad():
            with self._autocast(images.device.type):
                activation = self.activation(images).detach().requires_grad_(True)
                logits = self.rest(activation)
            logits = logits.float()  # the scores (and their first backward step) in fp32
            decided = codes_from_logits(logits.detach(), self.spec)
            chosen = [{a.key: int((targets[row] if targets is not None else {}).get(a.key, decided[a.key][row]))
                       for a in self.spec.attributes} for row in range(rows)]
            features = activation.detach().float()
            maps = features.new_zeros(rows, len(self.spec.attributes), *features.shape[-2:])
            for k, a in attributes:
                wanting = [row for row in range(rows) if a.key in wants[row]]
                mask = logits.new_tensor([1.0 if a.key in wants[row] else 0.0 for row in range(rows)])
                score = (target_scores(logits, a, [c[a.key] for c in chosen]) * mask).sum()
                (grad,) = torch.autograd.grad(score, activation, retain_graph=True)
                index = torch.tensor(wanting, device=features.device)
                maps[index, k] = grad_cam(features[index], grad.float()[index])
        codes = [{key: code for key, code in c.items() if key in wants[row]} for row, c in enumerate(chosen)]
        return Explanation(logits=logits.detach(), maps=maps, codes=codes, layer=self.layer, precision=self.precision)

    def _wanted(self, keys: Collection[str]) -> frozenset[str]:
        unknown = [key for key in keys if key not in self.spec.keys]
        if unknown:
            raise ValueError(f"unknown attributes {unknown}; the spec has {', '.join(self.spec.keys)}")
        return frozenset(keys)

    def _autocast(self, device_type: str) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def target_scores(logits: torch.Tensor, attribute: Attribute, codes: Sequence[int]) -> torch.Tensor:
    """``[B]``: the score whose gradient explains ``codes`` (one per row) of ``attribute``.

    Binary: the logit for present (code 1), its negative for absent. Categorical: the logit
    of the class with that code.
    """
    part = logits[:, attribute.logits[0]:attribute.logits[1]]
    if attribute.is_binary:
        sign = torch.tensor([1.0 if code else -1.0 for code in codes], dtype=part.dtype, device=part.device)
        return part[:, 0] * sign
    index = {cls.code: i for i, cls in enumerate(attribute.classes)}
    try:
        columns = torch.tensor([index[code] for code in codes], device=part.device)
    except KeyError as e:
        raise ValueError(f"{attribute.key}: no class with code {e.args[0]}; codes are {attribute.codes}") from None
    return part.gather(1, columns[:, None])[:, 0]


def grad_cam(activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``[B, C, h, w]`` activation and gradient -> ``[B, h, w]`` maps in [0, 1] (peak 1, or all 0)."""
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(dim=1))
    peak = cam.amax(dim=(1, 2), keepdim=True)
    return torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny), torch.zeros_like(cam))


def peak_fraction(cam: torch.Tensor) -> tuple[float, float]:
    """``(x, y)``: the centre of a ``[h, w]`` map's highest cell, in fractions of the photo."""
    h, w = cam.shape
    flat = int(torch.argmax(cam.reshape(-1)))
    return ((flat % w) + 0.5) / w, ((flat // w) + 0.5) / h


# --- the model that explains ------------------------------------------------------------


def explaining_model(served: torch.nn.Module, model_dir: str | Path, spec: AttributeSpec, *,
                     channels_last: bool = False) -> LizaAlertTagger:
    """The fp32 network for Grad-CAM: the served one when it is fp32/bf16 (bf16 is autocast over
    fp32 weights), else (int8 TorchScript, no autograd) the archive's fp32 weights, loaded now
    (``channels_last``: in that memory format, which makes its forward pass about 20 % faster)."""
    if isinstance(served, LizaAlertTagger):
        return served
    return load_model(model_dir, spec, "fp32", channels_last=channels_last)


# --- answers ------------------------------------------------------------------------------


def explanation_json(explanation: Explanation, row: int, spec: AttributeSpec,
                     requested: Mapping[str, int] | None = None) -> dict[str, Any]:
    """``{key: {"value", "label", "target", "shape", "map"}}`` for one row: the attributes explained
    in it only (in the spec's order; ``{}`` when none was).

    ``target`` is ``"requested"`` for a value the request named, ``"predicted"`` otherwise.
    """
    h, w = explanation.shape
    maps = explanation.maps[row].detach().float().cpu()
    out: dict[str, Any] = {}
    for k, a in enumerate(spec.attributes):
        if a.key not in explanation.codes[row]:
            continue
        code = explanation.codes[row][a.key]
        out[a.key] = {
            "value": code,
            "label": a.class_for(code).label,
            "target": "requested" if requested and a.key in requested else "predicted",
            "shape": [h, w],
            "map": [[round(float(v), MAP_DECIMALS) for v in line] for line in maps[k].tolist()],
        }
    return out


def explanation_info(layer: str, model_precision: str = "fp32") -> dict[str, Any]:
    """What the maps are, for the answer's ``"explained_with"`` (``model_precision``: the explaining
    pass's, :attr:`Explanation.precision`)."""
    return {"method": METHOD, "layer": layer, "model_precision": model_precision,
            "map_covers": "the whole photo, squashed to the model's input (cell [i][j] of an h x w map covers "
                          "columns j/w..(j+1)/w and rows i/h..(i+1)/h of the photo)"}
