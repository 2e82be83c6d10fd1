"""Evaluation of weights on cached pixels: the served forward pass and decision, thresholds tuned for F1.

Decisions are the server's own (``vision.answers.codes_from_logits``); other thresholds are
tried as ``spec.with_thresholds(...)``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lizaalert_tagger.common.scoring import score_codes
from lizaalert_tagger.common.spec import AttributeSpec
from lizaalert_tagger.vision.inference import run_inference
from lizaalert_tagger.vision.answers import codes_from_logits
from lizaalert_tagger.vision.preprocess import normalize


def predict_logits(model: torch.nn.Module, pixels: torch.Tensor, spec: AttributeSpec, batch_size: int = 64,
                   bf16: bool = False, size: int | None = None) -> torch.Tensor:
    """Logits of cached uint8 pixels through the serving normalisation and forward pass; ``size``: first
    squashed to that side exactly as a ``resize`` training phase does (to see what a low-resolution phase
    has learned)."""
    model.eval()
    device = next(model.parameters()).device

    def batch(start: int) -> torch.Tensor:
        x = normalize(pixels[start:start + batch_size].to(device), spec.preprocessing)
        if size and size != x.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return x

    outs = [run_inference(model, batch(start), bf16=bf16).cpu() for start in range(0, len(pixels), batch_size)]
    return torch.cat(outs) if outs else torch.empty(0, spec.num_logits)


def tune_thresholds(logits: torch.Tensor, truth: dict[str, list[int]], spec: AttributeSpec) -> dict[str, float]:
    """Per binary attribute, the threshold in [0.05, 0.95] maximising F1 on the validation split."""
    from sklearn.metrics import f1_score

    thresholds = {}
    grid = np.round(np.arange(0.05, 0.951, 0.025), 3)
    for a in spec.attributes:
        if not a.is_binary:
            continue
        probs = torch.sigmoid(logits[:, a.logits[0]]).numpy()
        y = np.asarray(truth[a.key])
        if y.sum() == 0:
            thresholds[a.key] = a.threshold
            continue
        f1s = [f1_score(y, (probs >= t).astype(int), zero_division=0.0) for t in grid]
        best = max(f1s)
        # the middle of the best plateau generalises better than its edge
        plateau = [t for t, f in zip(grid, f1s) if f >= best - 1e-9]
        thresholds[a.key] = float(plateau[len(plateau) // 2])
    return thresholds


def evaluate(model: torch.nn.Module, pixels: torch.Tensor, rows: list[dict[str, int]], spec: AttributeSpec, bf16: bool) -> dict:
    """Validation logits -> thresholds tuned for F1 on them -> scores at the spec's thresholds and tuned."""
    truth = {a.key: [r[a.key] for r in rows] for a in spec.attributes}
    logits = predict_logits(model, pixels, spec, bf16=bf16)
    thresholds = tune_thresholds(logits, truth, spec)
    tuned_spec = spec.with_thresholds(thresholds)
    return {
        "default": score_codes(truth, codes_from_logits(logits, spec), spec),
        "tuned": score_codes(truth, codes_from_logits(logits, tuned_spec), tuned_spec),
        "thresholds": thresholds,
        "spec": tuned_spec,
    }
