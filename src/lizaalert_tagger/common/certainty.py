"""How certain a served answer is: the decision margin that puts the least certain photos first.

Read from the scores a served answer carries (and ``details.csv`` keeps), so the report's order
"least certain first" and anything else that ranks photos for review use the same numbers.
Pure Python: the report (client) and training both import it.
"""
from __future__ import annotations

from collections.abc import Mapping

from lizaalert_tagger.common.spec import Attribute, AttributeSpec


def attribute_margin(attribute: Attribute, code: int, score: float) -> float:
    """How far one attribute's decision is from changing, from 0 (on the boundary) to 1 (certain).

    - binary: ``p``, the probability of "present" (the served score when tagged, 1 - score when not),
      against the spec's threshold ``t``: ``(p - t) / (1 - t)`` above it, ``(t - p) / t`` below;
    - categorical with ``n`` classes: the chosen class's probability ``s`` against an even split:
      ``(s - 1/n) / (1 - 1/n)``.
    """
    if attribute.is_binary:
        t = attribute.threshold
        p = score if code else 1.0 - score
        margin = (p - t) / (1.0 - t) if p >= t else (t - p) / t
    else:
        even = 1.0 / len(attribute.classes)
        margin = (score - even) / (1.0 - even)
    return min(1.0, max(0.0, margin))


def decision_margin(codes: Mapping[str, int], scores: Mapping[str, float | None], spec: AttributeSpec) -> float:
    """The smallest :func:`attribute_margin` of a photo's answer. An attribute without a score counts
    as 0: nothing says the model was sure of it."""
    margins = []
    for a in spec.attributes:
        score = scores.get(a.key)
        if score is None:
            return 0.0
        margins.append(attribute_margin(a, codes[a.key], score))
    return min(margins)
