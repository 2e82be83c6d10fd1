"""The attribute spec: the single source of truth for the tagger's heads.

The spec (``attributes.json``) names the 11 attributes in the seed's CSV column
order, their kind, classes (English and Russian labels, the seed's integer
codes), the slice of the model's logits each one owns, the decision threshold
of binary attributes and the preprocessing the weights were trained with.
The model's width, the decoder, training, CSV I/O and the client all derive
from it.

Pure Python: no torch, no TorchServe, so every tool can import it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Sequence

SPEC_FILENAME = "attributes.json"
# Package data, so that a client-only install (a wheel, no checkout) has it too. In the checkout it is a
# link to handler/attributes.json, the source of truth; archives carry a tuned copy at their root.
DEFAULT_SPEC_PATH = Path(__file__).with_name(SPEC_FILENAME)
NO_TAG_CODE = 0  # "not visible" of a categorical attribute, "absent" of a binary one

KINDS = ("binary", "categorical")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")  # preprocess.py maps each to Pillow's filter


class SpecError(ValueError):
    """The attribute spec is malformed; the message says what and where."""


def is_tag(code: int) -> bool:
    """The one rule of what a photo is tagged with: every code but ``NO_TAG_CODE`` (a categorical value
    other than "not visible", a binary attribute that is present)."""
    return code != NO_TAG_CODE


@dataclass(frozen=True)
class AttributeClass:
    code: int
    label: str
    label_ru: str


@dataclass(frozen=True)
class Attribute:
    key: str
    columns: tuple[str, ...]
    kind: str
    logits: tuple[int, int]
    classes: tuple[AttributeClass, ...]
    threshold: float | None = None

    @property
    def column(self) -> str:
        """The column name the seed's submission file uses."""
        return self.columns[0]

    @property
    def width(self) -> int:
        return self.logits[1] - self.logits[0]

    @property
    def is_binary(self) -> bool:
        return self.kind == "binary"

    @property
    def codes(self) -> tuple[int, ...]:
        return tuple(c.code for c in self.classes)

    def class_for(self, code: int) -> AttributeClass:
        for cls in self.classes:
            if cls.code == code:
                return cls
        raise KeyError(f"{self.key}: no class with code {code}; codes are {self.codes}")


@dataclass(frozen=True)
class Preprocessing:
    size: tuple[int, int] = (256, 256)  # (height, width), as torchvision's Resize
    resize: str = "squash"
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class AttributeSpec:
    attributes: tuple[Attribute, ...]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    model_name: str = "lizaalert_tagger"
    filename_columns: tuple[str, ...] = ("filename", "Названия")

    @property
    def num_logits(self) -> int:
        return max(a.logits[1] for a in self.attributes)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(a.key for a in self.attributes)

    def __getitem__(self, key: str) -> Attribute:
        for attribute in self.attributes:
            if attribute.key == key:
                return attribute
        raise KeyError(f"no attribute {key!r}; the spec has {', '.join(self.keys)}")

    def answer_codes(self, answer: Mapping[str, Any]) -> dict[str, int]:
        """The seed's integer code per attribute key from one served answer (``answers.decode_logits``'s shape).

        Every code must be one of its attribute's codes: an answer that is not is refused here, when it
        arrives, rather than when a CSV is written. Here rather than in ``answers`` so that clients read
        answers without importing torch. Raises ``ValueError`` saying what was expected and what arrived.
        """
        attributes = answer.get("attributes") if isinstance(answer, Mapping) else None
        if not isinstance(attributes, Mapping):
            raise ValueError(f"not an answer of this spec's model: expected an object with 'attributes', "
                             f"got {type(attributes if isinstance(answer, Mapping) else answer).__name__}")
        codes = {}
        for a in self.attributes:
            value = attributes.get(a.key)
            code = value.get("code") if isinstance(value, Mapping) else None
            if isinstance(code, bool) or not isinstance(code, int) or code not in a.codes:
                got = "no code" if code is None else f"code {code!r}"
                raise ValueError(f"not an answer of this spec's model: {a.key} has {got}, expected one of {a.codes}")
            codes[a.key] = code
        return codes

    def tags(self, codes: Mapping[str, int], lang: str = "en") -> list[str]:
        """The labels of what a photo is tagged with (:func:`is_tag`), in the spec's order; English or Russian."""
        labels = []
        for a in self.attributes:
            if is_tag(codes[a.key]):
                cls = a.class_for(codes[a.key])
                labels.append(cls.label_ru if lang == "ru" else cls.label)
        return labels

    def with_thresholds(self, thresholds: dict[str, float]) -> "AttributeSpec":
        """A copy with new thresholds for the named binary attributes."""
        attributes = []
        for a in self.attributes:
            if a.key in thresholds:
                if not a.is_binary:
                    raise SpecError(f"{a.key} is {a.kind}; only binary attributes have thresholds")
                a = replace(a, threshold=float(thresholds[a.key]))
            attributes.append(a)
        spec = replace(self, attributes=tuple(attributes))
        validate(spec)
        return spec

    def with_preprocessing(self, preprocessing: Preprocessing) -> "AttributeSpec":
        return replace(self, preprocessing=preprocessing)

    def to_dict(self) -> dict[str, Any]:
        p = self.preprocessing
        return {
            "format_version": 1,
            "model_name": self.model_name,
            "filename_columns": list(self.filename_columns),
            "preprocessing": {
                "size": list(p.size),
                "resize": p.resize,
                "interpolation": p.interpolation,
                "mean": list(p.mean) if p.mean is not None else None,
                "std": list(p.std) if p.std is not None else None,
            },
            "attributes": [
                {
                    "key": a.key,
                    "columns": list(a.columns),
                    "kind": a.kind,
                    "logits": list(a.logits),
                    **({"threshold": a.threshold} if a.is_binary else {}),
                    "classes": [
                        {"code": c.code, "label": c.label, "label_ru": c.label_ru} for c in a.classes
                    ],
                }
                for a in self.attributes
            ],
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(
            json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )


def _require(obj: dict, name: str, where: str) -> Any:
    if name not in obj:
        raise SpecError(f"{where}: missing field {name!r}")
    return obj[name]


def _parse_attribute(raw: dict, index: int) -> Attribute:
    where = f"attribute #{index}"
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected an object, got {type(raw).__name__}")
    key = _require(raw, "key", where)
    where = f"attribute {key!r}"
    kind = _require(raw, "kind", where)
    logits = _require(raw, "logits", where)
    if not (isinstance(logits, Sequence) and len(logits) == 2 and all(isinstance(i, int) for i in logits)):
        raise SpecError(f"{where}: 'logits' must be [start, stop] integers, got {logits!r}")
    columns = _require(raw, "columns", where)
    if isinstance(columns, str):
        columns = [columns]
    classes = tuple(
        AttributeClass(int(_require(c, "code", where)), str(_require(c, "label", where)), str(c.get("label_ru", "")))
        for c in _require(raw, "classes", where)
    )
    threshold = raw.get("threshold")
    return Attribute(
        key=key,
        columns=tuple(columns),
        kind=kind,
        logits=(logits[0], logits[1]),
        classes=classes,
        threshold=None if threshold is None else float(threshold),
    )


def validate(spec: AttributeSpec, num_logits: int | None = None) -> None:
    """Refuse a spec whose attributes are inconsistent or whose logit slices
    do not tile ``[0, num_logits)`` exactly (no gap, no overlap)."""
    if not spec.attributes:
        raise SpecError("the spec has no attributes")
    seen: set[str] = set()
    for a in spec.attributes:
        where = f"attribute {a.key!r}"
        if a.key in seen:
            raise SpecError(f"{where} appears twice")
        seen.add(a.key)
        if a.kind not in KINDS:
            raise SpecError(f"{where}: kind must be one of {KINDS}, got {a.kind!r}")
        if not a.columns:
            raise SpecError(f"{where}: needs at least one CSV column name")
        start, stop = a.logits
        if start < 0 or stop <= start:
            raise SpecError(f"{where}: logit slice [{start}, {stop}) is empty or negative")
        codes = a.codes
        if len(set(codes)) != len(codes):
            raise SpecError(f"{where}: duplicate class codes {codes}")
        if a.is_binary:
            if a.width != 1:
                raise SpecError(f"{where}: a binary attribute owns exactly 1 logit, its slice [{start}, {stop}) has {a.width}")
            if sorted(codes) != [0, 1]:
                raise SpecError(f"{where}: a binary attribute has classes with codes 0 and 1, got {codes}")
            if a.threshold is None or not 0.0 < a.threshold < 1.0:
                raise SpecError(f"{where}: threshold must be in (0, 1), got {a.threshold!r}")
        elif a.width != len(a.classes):
            raise SpecError(
                f"{where}: {len(a.classes)} classes but its logit slice [{start}, {stop}) has {a.width} logits"
            )
    expected_stop = 0
    for a in sorted(spec.attributes, key=lambda a: a.logits):
        start, stop = a.logits
        if start > expected_stop:
            raise SpecError(f"logits [{expected_stop}, {start}) belong to no attribute (gap before {a.key!r})")
        if start < expected_stop:
            raise SpecError(f"attribute {a.key!r}: logit slice [{start}, {stop}) overlaps the previous attribute's (ends at {expected_stop})")
        expected_stop = stop
    if num_logits is not None and expected_stop != num_logits:
        raise SpecError(f"the spec's slices cover {expected_stop} logits but the model outputs {num_logits}")
    p = spec.preprocessing
    if p.resize != "squash":
        raise SpecError(f"preprocessing.resize: only 'squash' is supported, got {p.resize!r}")
    if p.interpolation not in INTERPOLATIONS:
        raise SpecError(f"preprocessing: interpolation must be one of {', '.join(INTERPOLATIONS)}; got {p.interpolation!r}")
    if (p.mean is None) != (p.std is None):
        raise SpecError("preprocessing: give both mean and std, or neither")
    if p.mean is not None and (len(p.mean) != 3 or len(p.std) != 3 or min(p.std) <= 0):
        raise SpecError(f"preprocessing: mean/std must be 3 values each with std > 0, got {p.mean} / {p.std}")


def spec_from_dict(raw: dict, num_logits: int | None = None) -> AttributeSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"the spec must be a JSON object, got {type(raw).__name__}")
    attributes = _require(raw, "attributes", "spec")
    if not isinstance(attributes, list):
        raise SpecError(f"spec: 'attributes' must be a list, got {type(attributes).__name__}")
    pre = raw.get("preprocessing") or {}
    size = pre.get("size", [256, 256])
    mean, std = pre.get("mean"), pre.get("std")
    spec = AttributeSpec(
        attributes=tuple(_parse_attribute(a, i) for i, a in enumerate(attributes)),
        preprocessing=Preprocessing(
            size=(int(size[0]), int(size[1])),
            resize=pre.get("resize", "squash"),
            interpolation=pre.get("interpolation", "bilinear"),
            mean=tuple(float(v) for v in mean) if mean is not None else None,
            std=tuple(float(v) for v in std) if std is not None else None,
        ),
        model_name=raw.get("model_name", "lizaalert_tagger"),
        filename_columns=tuple(raw.get("filename_columns", ("filename", "Названия"))),
    )
    validate(spec, num_logits)
    return spec


def load_spec(path: str | Path = DEFAULT_SPEC_PATH, num_logits: int | None = None) -> AttributeSpec:
    """Read and validate a spec file; ``num_logits`` also checks it against a model's width."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"attribute spec not found at {path}") from None
    except json.JSONDecodeError as e:
        raise SpecError(f"{path} is not valid JSON: {e}") from None
    try:
        return spec_from_dict(raw, num_logits)
    except SpecError as e:
        raise SpecError(f"{path}: {e}") from None
