"""The options of one ``POST /explanations`` request: which attributes and values to explain, and whether to draw an overlay.

TorchServe marks such a request with the header ``explain: True`` (a batch may mix them with
predictions). The options travel as JSON keys or multipart form fields (TorchServe 0.12 drops the
query parameters of /explanations before the handler, so a query string does not work there).
Anything malformed is that request's 400, whatever it is: a client must never be able to make
the parser itself fail (deeply nested JSON raises ``RecursionError``, not ``ValueError``).

What is explained (:meth:`Target.wanted`): by default the objects the served answer found (the
binary attributes it says are present), each a backward pass, so that a photo with nothing found
costs about one prediction; plus every attribute ``target`` names; ``target=all``: all of them.
"""
from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from lizaalert_tagger.common.errors import InvalidInput, TooLarge
from lizaalert_tagger.common.spec import Attribute, AttributeSpec, is_tag
from lizaalert_tagger.serving.payload import shown

EXPLAIN_HEADER = "explain"  # TorchServe's per-request mark of /explanations
TARGET_KEY = "target"
OVERLAY_KEY = "overlay"
ALL = "all"  # target=all: every attribute
# Photos one explanation request may carry ({"instances": [...]}): with target=all, Grad-CAM at layer3 costs
# 5-15x a prediction (docs/explanations.md), so 8 take about as long as 64 predictions; more is a 413.
MAX_EXPLAINED_PHOTOS = 8
MORE = "target=all explains every attribute; target=season,car:1 adds attributes (a name alone: its predicted value)"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
_FORMS = "'all', attribute names (season,terrain), attribute:value pairs (car:1,season:winter) or a JSON object"


@dataclass(frozen=True)
class Target:
    """What a request's ``target`` asks for, beside the objects found (which are always explained)."""

    values: dict[str, int] = field(default_factory=dict)  # key -> the code to explain instead of the predicted one
    named: frozenset[str] = frozenset()  # keys named without a value: explained at the predicted value
    every: bool = False  # target=all: every attribute

    def wanted(self, spec: AttributeSpec, served: Mapping[str, int]) -> frozenset[str]:
        """The keys to explain for a photo whose served codes are ``served``."""
        if self.every:
            return frozenset(spec.keys)
        found = {a.key for a in spec.attributes if a.is_binary and is_tag(served.get(a.key, 0))}
        return frozenset(found | set(self.values) | self.named)

    @property
    def scope(self) -> str:
        """``"all"``, ``"found"`` (the objects found only) or ``"found+target"`` (and what ``target`` names)."""
        return ALL if self.every else "found+target" if self.values or self.named else "found"


@dataclass
class ExplainOptions:
    target: Target = field(default_factory=Target)
    overlay: bool = False


def is_explain_request(headers: Mapping[str, Any]) -> bool:
    """Whether TorchServe marked the request as ``/explanations`` (the header, per request)."""
    return headers.get(EXPLAIN_HEADER) == "True"


def explain_options(request: Mapping[str, Any], spec: AttributeSpec) -> ExplainOptions:
    """The explanation options of one TorchServe request; :class:`InvalidInput` (400) when malformed.

    - JSON body: ``{"data": "<base64>", "target": {"car": 1, "season": "winter"}, "overlay": true}``;
      ``target`` may also be ``"all"``, a list of attribute names (``["season", "terrain"]``) or text as below;
    - multipart form (or request fields beside a JSON body; the body's own field wins): fields ``target``
      (JSON as above, or text: ``all``, ``car:1,season:winter``, ``season,car:1``) and ``overlay``
      (``true``/``false``, ``1``/``0``).

    A target value is a code of the spec or a class label (English or Russian); a name alone explains
    that attribute at its predicted value.
    """
    body = request.get("body")
    body = body if isinstance(body, Mapping) else {}

    def option(key: str) -> Any:  # the JSON body's field, else the request's (form) field
        return body[key] if key in body else request.get(key)

    return ExplainOptions(target=parse_target(option(TARGET_KEY), spec), overlay=_parse_flag(option(OVERLAY_KEY), OVERLAY_KEY))


def explained_fields(target: Target, explained: Collection[str], spec: AttributeSpec) -> dict[str, Any]:
    """What one answer's ``"explained_with"`` says about its maps: which were computed, why, and how to get more."""
    fields: dict[str, Any] = {"attributes_explained": target.scope, "explained": [k for k in spec.keys if k in explained]}
    if not target.every:
        fields["more"] = MORE
    return fields


def check_explained_count(photos: int) -> None:
    """Refuse an explanation request with more photos than :data:`MAX_EXPLAINED_PHOTOS` (413)."""
    if photos > MAX_EXPLAINED_PHOTOS:
        raise TooLarge("too_many_instances", f"{photos} photos in one explanation request; at most {MAX_EXPLAINED_PHOTOS} "
                                             "are explained per request: split it, or ask /predictions for tags only.")


def parse_target(value: Any, spec: AttributeSpec) -> Target:
    """A request's ``target``: ``"all"``, a list of names, a JSON object ``{key: value}``, or text
    (``all``, ``season,car:1``, JSON); a 400 names what is wrong."""
    if value is None:
        return Target()
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("bad_target", "\"target\" is not UTF-8 text.") from None
    if isinstance(value, str):
        value = _target_text(value)
    if isinstance(value, Mapping):
        values = {}
        for key, code in value.items():
            attribute = _attribute(key, spec)
            values[attribute.key] = _code(attribute, code)
        return Target(values=values)
    if isinstance(value, list):
        return _target_items([_list_item(item) for item in value], spec)
    raise InvalidInput("bad_target", f"\"target\" must be {_FORMS}; got {type(value).__name__}.")


def _target_text(text: str) -> Any:
    """A target sent as text: JSON (``{...}``, ``[...]``), or items ``all``, ``key``, ``key:value`` split by commas."""
    text = text.strip()
    if text.startswith(("{", "[")):
        try:
            return json.loads(text)
        except RecursionError:
            raise InvalidInput("bad_target", "\"target\" is nested too deeply: expected a flat object {attribute: value} "
                                             "or a list of attribute names.") from None
        except ValueError as e:
            raise InvalidInput("bad_target", f"\"target\" is not valid JSON ({e}).") from None
    return [part.strip() for part in text.split(",")]


def _list_item(item: Any) -> str:
    if not isinstance(item, str):
        raise InvalidInput("bad_target", f"\"target\" list item {shown(item)}: expected an attribute name (a string), "
                                         f"e.g. [\"season\", \"terrain\"], or \"all\".")
    return item


def _target_items(items: list[str], spec: AttributeSpec) -> Target:
    """``all``, names and ``key:value`` pairs (empty items are skipped; a value wins over its bare name)."""
    values: dict[str, int] = {}
    named: set[str] = set()
    every = False
    for item in filter(None, (part.strip() for part in items)):
        key, sep, code = item.partition(":")
        if not sep and key.lower() == ALL:
            every = True
        elif not sep:
            named.add(_attribute(key, spec).key)
        else:
            attribute = _attribute(key.strip(), spec)
            values[attribute.key] = _code(attribute, code.strip())
    return Target(values=values, named=frozenset(named - set(values)), every=every)


def _attribute(key: Any, spec: AttributeSpec) -> Attribute:
    try:
        return spec[str(key)]
    except KeyError:
        raise InvalidInput("bad_target", f"\"target\": unknown attribute {shown(key)}; attributes are {', '.join(spec.keys)} "
                                         f"(or '{ALL}' for every one).") from None


def _code(attribute: Attribute, value: Any) -> int:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        try:
            value = int(value.strip())
        except ValueError:  # digits int() refuses ("²", or more than 4300 of them): not a code
            pass
    if isinstance(value, int) and value in attribute.codes:
        return value
    if isinstance(value, str):
        for cls in attribute.classes:
            if value.strip().lower() in (cls.label.lower(), cls.label_ru.lower()):
                return cls.code
    choices = ", ".join(f"{c.code} ({c.label})" for c in attribute.classes)
    raise InvalidInput("bad_target", f"\"target\": {attribute.key} has no value {shown(value)}; its values are {choices}.")


def _parse_flag(value: Any, name: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise InvalidInput("bad_option", f"\"{name}\" must be true or false, got {shown(value)}.")
