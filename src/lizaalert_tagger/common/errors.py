"""The errors a request is answered with, with the HTTP status on the class (as KServe's ``errors.py``).

The client's fault: :class:`InvalidInput` (400) and :class:`TooLarge` (413, a kind of invalid
input). Ours: :class:`InternalError` (500), which names the step that failed. Each is answered to
its own request only, as ``{"code": status, "type": reason, "message": message}``: ``reason`` is
for machines (``not_an_image``, ``bad_target``), ``message`` says what was expected and what arrived.

Torch-free, so that the client and the CSV tools may catch them too.
"""
from __future__ import annotations

from typing import Any


class TaggerError(Exception):
    """A request that cannot be answered as asked; ``status`` is the HTTP status it is answered with."""

    status: int = 500

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON body of the refused request."""
        return {"code": self.status, "type": self.reason, "message": self.message}

    def prefixed(self, where: str) -> TaggerError:
        """The same error with ``where`` (``"instance 3"``) in front of its message."""
        return type(self)(self.reason, f"{where}: {self.message}")


class InvalidInput(TaggerError, ValueError):
    """The client sent something we cannot use: not a photo, bad base64, a malformed option (HTTP 400)."""

    status = 400


class TooLarge(InvalidInput):
    """The client sent more than a limit allows: pixels, photos per request (HTTP 413)."""

    status = 413


class InternalError(TaggerError):
    """Our fault, not the request's (HTTP 500): a bug, or the worker out of memory."""

    status = 500

    @classmethod
    def during(cls, step: str, error: BaseException) -> InternalError:
        """A 500 naming the step that failed; ``MemoryError`` says so instead of blaming the photo."""
        if isinstance(error, MemoryError):
            return cls("out_of_memory", f"{step} ran out of memory: the worker could not hold this photo; "
                                        "try a smaller one or fewer at once")
        return cls("internal_error", f"{step} failed: {type(error).__name__}: {error}".rstrip(": "))
