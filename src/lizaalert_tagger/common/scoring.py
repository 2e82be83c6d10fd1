"""The project's score, used everywhere (training, tag-folder scoring, bench parity).

For each categorical attribute: macro-F1 over its classes present in truth or
prediction; for each binary attribute: F1 of the positive class; the score is
the mean over the attributes. Computed with scikit-learn. A binary attribute
with no positive in truth nor prediction scores 1.0 (nothing to find, nothing
found), not 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from sklearn.metrics import f1_score
from lizaalert_tagger.common.spec import AttributeSpec


@dataclass
class Score:
    per_attribute: dict[str, float]
    overall: float
    count: int

    def to_dict(self) -> dict:
        return {"score": round(self.overall, 6), "count": self.count,
                "f1": {k: round(v, 6) for k, v in self.per_attribute.items()}}

    def table(self) -> str:
        width = max(len(k) for k in self.per_attribute)
        lines = [f"{k:<{width}}  F1 {v:.4f}" for k, v in self.per_attribute.items()]
        lines.append(f"{'score':<{width}}  {self.overall:.4f}  ({self.count} photos)")
        return "\n".join(lines)


def score_codes(truth: Mapping[str, Sequence[int]], predicted: Mapping[str, Sequence[int]], spec: AttributeSpec) -> Score:
    """Score predicted codes against true codes, both keyed by attribute key."""
    per_attribute = {}
    count = None
    for a in spec.attributes:
        y_true = np.asarray(truth[a.key], dtype=int)
        y_pred = np.asarray(predicted[a.key], dtype=int)
        if y_true.shape != y_pred.shape:
            raise ValueError(f"{a.key}: {len(y_true)} true codes but {len(y_pred)} predicted")
        count = len(y_true)
        if a.is_binary:
            per_attribute[a.key] = float(f1_score(y_true, y_pred, pos_label=1, average="binary", zero_division=1.0))
        else:
            per_attribute[a.key] = float(f1_score(y_true, y_pred, average="macro", zero_division=0.0))
    return Score(per_attribute, float(np.mean(list(per_attribute.values()))), count or 0)
