"""Logits -> per-photo answers (codes, labels, scores, tags), driven by the spec.

Pure torch: no TorchServe import.
"""
from __future__ import annotations

from typing import Any

import torch

from lizaalert_tagger.common.spec import AttributeSpec, is_tag


def _decide(logits: torch.Tensor, spec: AttributeSpec) -> list[tuple[Any, list[int], list[float], list[list[float]] | None]]:
    """Per attribute: the codes, the score of each decision and (categorical) every class probability.

    The one place where logits become decisions: argmax for categorical heads,
    ``sigmoid >= threshold`` for binary ones.
    """
    if logits.dim() != 2 or logits.shape[1] != spec.num_logits:
        raise ValueError(f"Expected logits [batch, {spec.num_logits}]. Got {tuple(logits.shape)}.")
    logits = logits.detach().float().cpu()
    per_attribute: list[tuple[Any, list[int], list[float], list[list[float]] | None]] = []
    for a in spec.attributes:
        part = logits[:, a.logits[0]:a.logits[1]]
        if a.is_binary:
            p_present = torch.sigmoid(part[:, 0])
            present = p_present >= a.threshold
            codes = present.long().tolist()
            scores = torch.where(present, p_present, 1.0 - p_present).tolist()
            per_attribute.append((a, codes, scores, None))
        else:
            probs = torch.softmax(part, dim=1)
            best = probs.argmax(dim=1)
            scores = probs.gather(1, best[:, None])[:, 0].tolist()
            codes = [a.classes[i].code for i in best.tolist()]
            per_attribute.append((a, codes, scores, probs.tolist()))
    return per_attribute


def codes_from_logits(logits: torch.Tensor, spec: AttributeSpec) -> dict[str, list[int]]:
    """``{key: [code per photo]}``: the seed's integer codes, decided as :func:`decode_logits` decides."""
    return {a.key: codes for a, codes, _, _ in _decide(logits, spec)}


def decode_logits(
    logits: torch.Tensor, spec: AttributeSpec, model: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Decode ``[B, spec.num_logits]`` logits into one answer per photo.

    Each answer is ``{"model": {...}, "attributes": {key: {...}}, "tags": [...]}``:
    categorical attributes take the argmax and list every class probability;
    binary attributes are present when the sigmoid passes the spec's threshold.
    ``tags`` lists the English labels of what the photo is tagged with (``spec.is_tag``).
    """
    per_attribute = _decide(logits, spec)
    answers = []
    for row in range(logits.shape[0]):
        attributes: dict[str, Any] = {}
        tags: list[str] = []
        for a, codes, scores, probs in per_attribute:
            cls = a.class_for(codes[row])
            entry: dict[str, Any] = {
                "code": cls.code,
                "label": cls.label,
                "label_ru": cls.label_ru,
                "score": round(scores[row], 6),
            }
            if probs is not None:
                entry["probabilities"] = {c.label: round(p, 6) for c, p in zip(a.classes, probs[row])}
            attributes[a.key] = entry
            if is_tag(cls.code):
                tags.append(cls.label)
        answer: dict[str, Any] = {"attributes": attributes, "tags": tags}
        if model is not None:
            answer = {"model": dict(model), **answer}
        answers.append(answer)
    return answers
