"""The photos of one request, whatever way it was sent.

TorchServe hands the handler one dict per request: the body under ``"body"`` or ``"data"``
(bytes, text, or JSON the worker already parsed), and multipart form fields under their names.
Accepted: the raw body; a form file (any field name; the seed's service used ``File``); JSON
``{"data": "<base64>"}``; KServe v1's ``{"instances": ["<base64>", ...]}`` (several photos,
answered as ``{"predictions": [...]}`` in order).
"""
from __future__ import annotations

import base64
import binascii
import reprlib
from dataclasses import dataclass
from typing import Any

from lizaalert_tagger.common.errors import InvalidInput, TooLarge

# JSON keys that may carry a base64 photo, and multipart field names we accept
# (the seed's service used "File").
PHOTO_KEYS = ("data", "body", "image", "file", "File", "b64", "instances")
MAX_INSTANCES = 64  # photos in one {"instances": [...]} request

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 40
SHOWN_CHARS = 120


def shown(value: Any) -> str:
    """A short, safe rendering of whatever a client sent (bounded length and depth) for messages."""
    text = _short.repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 3] + "..."


@dataclass
class Payload:
    """The photo bytes of one request; ``instances``: sent as KServe ``{"instances": [...]}``."""

    photos: list[bytes]
    instances: bool = False

    def where(self, number: int) -> str | None:
        """How a message names photo ``number``: ``"instance 3"``, or nothing for a lone photo."""
        return f"instance {number}" if self.instances else None


def read_payload(request: dict[str, Any]) -> Payload:
    """The photos of one TorchServe request; :class:`InvalidInput` says what arrived instead."""
    payload = next((request[key] for key in PHOTO_KEYS if request.get(key) is not None), None)
    if payload is None:  # a multipart form with some other field name: take the first file-like field
        payload = next((v for v in request.values() if isinstance(v, (bytes, bytearray))), None)
    if isinstance(payload, dict):  # JSON body, already parsed by the worker
        return _json_payload(payload)
    if isinstance(payload, str):
        raise InvalidInput(
            "not_an_image",
            f"The body is text ({len(payload)} characters, starting {payload[:20]!r}); expected photo bytes "
            "(Content-Type image/* or application/octet-stream) or JSON {\"data\": \"<base64>\"}.",
        )
    if isinstance(payload, (bytes, bytearray)):
        return Payload([bytes(payload)])
    if payload is None:
        raise InvalidInput("empty", "The request carries no photo: send it as the body, a form file or JSON base64.")
    raise InvalidInput("bad_json", f"Expected a photo, got JSON of type {type(payload).__name__}.")


def _json_payload(body: dict[str, Any]) -> Payload:
    if isinstance(body.get("instances"), list):
        items = body["instances"]
        if not items:
            raise InvalidInput("bad_json", "\"instances\" is empty: expected a list of base64 photos.")
        if len(items) > MAX_INSTANCES:
            raise TooLarge("too_many_instances", f"{len(items)} instances in one request; at most {MAX_INSTANCES}: split the request.")
        photos = []
        for number, item in enumerate(items):
            try:
                photos.append(_base64_photo(item))
            except InvalidInput as e:
                raise e.prefixed(f"instance {number}") from None
        return Payload(photos, instances=True)
    inner = next((body[k] for k in PHOTO_KEYS if k in body), None)
    if inner is None:
        raise InvalidInput(
            "bad_json",
            f"The JSON body has keys {shown(sorted(map(str, body))[:10])}; "
            "expected {\"data\": \"<base64 photo>\"} or {\"instances\": [...]}.",
        )
    return Payload([_base64_photo(inner)])


def _base64_photo(value: Any) -> bytes:
    if isinstance(value, dict):  # {"b64": ...} or {"data": ...}
        value = value.get("b64") or value.get("data")
    if not isinstance(value, str):
        raise InvalidInput("bad_json", f"a photo must be a base64 string, got {type(value).__name__}.")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidInput("bad_base64", f"not valid base64 ({e}).") from None
