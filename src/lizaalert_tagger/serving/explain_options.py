"""The options of one ``POST /explanations`` request: which values to explain, and whether to draw an overlay.

TorchServe marks such a request with the header ``explain: True`` (a batch may mix them with
predictions). The options travel as JSON keys or multipart form fields (TorchServe 0.12 drops the
query parameters of /explanations before the handler, so a query string does not work there).
Anything malformed is that request's 400, whatever it is: a client must never be able to make
the parser itself fail (deeply nested JSON raises ``RecursionError``, not ``ValueError``).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lizaalert_tagger.common.errors import InvalidInput, TooLarge
from lizaalert_tagger.common.spec import Attribute, AttributeSpec
from lizaalert_tagger.serving.payload import shown

EXPLAIN_HEADER = "explain"  # TorchServe's per-request mark of /explanations
TARGET_KEY = "target"
OVERLAY_KEY = "overlay"
# Photos one explanation request may carry ({"instances": [...]}): Grad-CAM at layer3 costs 6-9x a
# prediction (README "Explanations"), so 8 take about as long as 64 predictions; more is a 413.
MAX_EXPLAINED_PHOTOS = 8
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass
class ExplainOptions:
    target: dict[str, int] = field(default_factory=dict)  # attribute key -> the code to explain instead of the predicted one
    overlay: bool = False


def is_explain_request(headers: Mapping[str, Any]) -> bool:
    """Whether TorchServe marked the request as ``/explanations`` (the header, per request)."""
    return headers.get(EXPLAIN_HEADER) == "True"


def explain_options(request: Mapping[str, Any], spec: AttributeSpec) -> ExplainOptions:
    """The explanation options of one TorchServe request; :class:`InvalidInput` (400) when malformed.

    - JSON body: ``{"data": "<base64>", "target": {"car": 1, "season": "winter"}, "overlay": true}``;
    - multipart form (or request fields beside a JSON body; the body's own field wins): fields ``target`` (JSON as above, or
      ``car:1,season:winter``) and ``overlay`` (``true``/``false``, ``1``/``0``).

    A target value is a code of the spec or a class label (English or Russian).
    """
    body = request.get("body")
    body = body if isinstance(body, Mapping) else {}

    def option(key: str) -> Any:  # the JSON body's field, else the request's (form) field
        return body[key] if key in body else request.get(key)

    return ExplainOptions(target=parse_target(option(TARGET_KEY), spec), overlay=_parse_flag(option(OVERLAY_KEY), OVERLAY_KEY))


def check_explained_count(photos: int) -> None:
    """Refuse an explanation request with more photos than :data:`MAX_EXPLAINED_PHOTOS` (413)."""
    if photos > MAX_EXPLAINED_PHOTOS:
        raise TooLarge("too_many_instances", f"{photos} photos in one explanation request; at most {MAX_EXPLAINED_PHOTOS} "
                                             "are explained per request: split it, or ask /predictions for tags only.")


def parse_target(value: Any, spec: AttributeSpec) -> dict[str, int]:
    """``{key: code}`` from a JSON object or ``key:value,key:value`` text; a 400 names what is wrong."""
    if value is None:
        return {}
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("bad_target", "\"target\" is not UTF-8 text.") from None
    if isinstance(value, str):
        value = _target_text(value)
    if not isinstance(value, Mapping):
        raise InvalidInput("bad_target", f"\"target\" must be an object {{attribute: value}}, got {type(value).__name__}.")
    target = {}
    for key, code in value.items():
        try:
            attribute = spec[str(key)]
        except KeyError:
            raise InvalidInput("bad_target", f"\"target\": unknown attribute {shown(key)}; attributes are {', '.join(spec.keys)}.") from None
        target[attribute.key] = _code(attribute, code)
    return target


def _target_text(text: str) -> Any:
    """A target sent as text: JSON (``{...}``) or ``key:value,key:value``."""
    text = text.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except RecursionError:
            raise InvalidInput("bad_target", "\"target\" is nested too deeply: expected a flat object {attribute: value}.") from None
        except ValueError as e:
            raise InvalidInput("bad_target", f"\"target\" is not valid JSON ({e}).") from None
    pairs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, code = item.partition(":")
        if not sep:
            raise InvalidInput("bad_target", f"\"target\" item {shown(item)}: expected key:value, e.g. car:1,season:winter.")
        pairs[key.strip()] = code.strip()
    return pairs


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
