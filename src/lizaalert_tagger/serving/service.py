"""The serving core: a server's list of requests in, one answer per request and the metrics out.

:meth:`TaggerService.handle` is the one entry point; ``handler/tagger_handler.py`` only translates
TorchServe's context to and from it, so another server needs a page, not a rewrite. No TorchServe
import here, and no exception leaves :meth:`~TaggerService.handle`: whatever goes wrong is answered
to the requests it concerns (the client's fault a 4xx, ours a 500 naming the step), and every
other request of the batch gets its answer. (An exception escaping to TorchServe would make it
answer 503 to the whole batch, which clients retry as back-pressure.)

How a batch runs:

1. each request is read once: its photos (raw body, form file, base64 JSON, KServe
   ``instances``) and, for ``/explanations``, its options;
2. the photos of all requests are taken in chunks of at most ``batch_size`` (a request of 64
   ``instances`` is 8 chunks, not one forward pass over 64 or, with eight such requests, 512);
3. per chunk: each photo is decoded once, the chunk runs through the model, its logits become
   answers, and its explain rows get Grad-CAM maps (of what each request wants: by default the objects
   its answer found) and overlays drawn on the photo already decoded;
4. each request's answer is serialised: its one answer, ``{"predictions": [...]}`` for
   ``instances``, or its error ``{"code", "type", "message"}``.
"""
from __future__ import annotations

import base64
import functools
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lizaalert_tagger.common.errors import InternalError, InvalidInput, TaggerError
from lizaalert_tagger.common.machine import available_cores, has_native_bf16
from lizaalert_tagger.common.overlay import overlay_png
from lizaalert_tagger.common.spec import SPEC_FILENAME, AttributeSpec, Preprocessing, load_spec
from lizaalert_tagger.serving.explain_options import (
    ExplainOptions,
    check_explained_count,
    explain_options,
    explained_fields,
    is_explain_request,
)
from lizaalert_tagger.serving.payload import read_payload
from lizaalert_tagger.serving.settings import HandlerSettings
from lizaalert_tagger.vision.answers import decode_logits
from lizaalert_tagger.vision.explain import Explanation, GradCAM, explaining_model, explanation_info, explanation_json
from lizaalert_tagger.vision.inference import load_model, run_inference
from lizaalert_tagger.vision.preprocess import DecodedImage, decode_image, image_to_tensor

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/json; charset=utf-8"
OVERLAY_LONG_SIDE = 768  # the overlay PNG's photo: its long side at most this (the legend adds width)


@dataclass(frozen=True)
class Metric:
    """One value to report, as plain data: the adapter turns it into its server's metric call."""

    name: str
    value: float
    unit: str
    kind: str = "counter"  # "counter" or "gauge"
    dimensions: tuple[tuple[str, str], ...] = ()


@dataclass
class Reply:
    """The answer to one request: its HTTP status, the reason phrase, and the JSON body."""

    body: str
    status: int = 200
    reason: str = "OK"
    content_type: str = CONTENT_TYPE


@dataclass
class BatchResult:
    replies: list[Reply]  # one per request, in order
    metrics: list[Metric]


@dataclass
class _Row:
    """One photo of one request."""

    owner: int  # the request's index in the batch
    photo: bytes
    where: str | None  # "instance 3" for KServe instances (messages name it), else None
    options: ExplainOptions | None  # None: a prediction


@dataclass
class _Decoded:
    row: _Row
    tensor: torch.Tensor
    image: Any = None  # the decoded photo, kept for an overlay only


@dataclass
class _Batch:
    """What one call of :meth:`TaggerService.handle` has found so far."""

    size: int
    errors: dict[int, TaggerError] = field(default_factory=dict)
    answers: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # per request, its photos' answers
    instances: set[int] = field(default_factory=set)
    totals: Counter = field(default_factory=Counter)  # (name, unit, dimensions) -> summed value

    def fail(self, owners: Sequence[int], error: TaggerError) -> None:
        for owner in owners:
            self.errors.setdefault(owner, error)

    def count(self, name: str, amount: float, unit: str = "count", /, **dimensions: str) -> None:
        self.totals[(name, unit, tuple(dimensions.items()))] += amount

    def answered(self) -> list[int]:
        return [owner for owner in self.answers if owner not in self.errors]


class TaggerService:
    """A loaded model and its settings; :meth:`handle` answers batches of requests."""

    def __init__(self, model: torch.nn.Module, spec: AttributeSpec, settings: HandlerSettings, *, model_dir: Path,
                 batch_size: int = 1, model_info: Mapping[str, str] | None = None, device: str = "cpu") -> None:
        self.model = model.eval()
        self.spec = spec
        self.settings = settings
        self.model_dir = Path(model_dir)
        self.batch_size = max(1, int(batch_size))
        self.model_info = dict(model_info or {"name": spec.model_name, "version": "unknown"})
        self.device = torch.device(device)
        self._explainer: GradCAM | None = None  # built on the first explanation (see explainer)

    @classmethod
    def load(cls, model_dir: str | Path, model_config: Mapping[str, Any] | None = None, *, model_name: str | None = None,
             model_version: str | None = None, gpu_id: int | None = None) -> TaggerService:
        """The service of an unpacked archive: ``model_config`` is its model-config.yaml (``handler:`` and
        ``batchSize``, ``minWorkers``/``maxWorkers`` for the thread count); warmed up, ready to answer."""
        model_config = dict(model_config or {})
        settings = HandlerSettings.from_yaml(model_config.get("handler"))
        _set_threads(settings, model_config)
        model_dir = Path(model_dir)
        spec = load_spec(model_dir / SPEC_FILENAME)
        device = f"cuda:{gpu_id}" if torch.cuda.is_available() and gpu_id is not None else "cpu"
        model = load_model(model_dir, spec, settings.precision, channels_last=settings.channels_last).to(device)
        service = cls(model, spec, settings, model_dir=model_dir, batch_size=model_config.get("batchSize") or 1,
                      model_info={"name": model_name or spec.model_name, "version": str(model_version or "unknown")},
                      device=device)
        service.warm_up()
        logger.info("lizaalert_tagger %s ready: precision=%s channels_last=%s threads=%d draft=%s max_pixels=%d batch=%d",
                    service.model_info["version"], settings.precision, settings.channels_last, torch.get_num_threads(),
                    settings.jpeg_draft, settings.max_pixels, service.batch_size)
        return service

    def warm_up(self) -> None:
        """Forward passes at start so that the first clients do not pay for lazy init.

        TorchScript (int8) optimises a graph on its first calls per input shape: run
        a lone photo and a full batch twice each.
        """
        height, width = self.spec.preprocessing.size
        for batch in (1, self.batch_size) * 2:
            self.forward(torch.zeros(batch, 3, height, width, device=self.device))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The served model's logits for a ``[B, 3, H, W]`` batch."""
        return run_inference(self.model, images.to(self.device), bf16=self.settings.bf16,
                             channels_last=self.settings.channels_last)

    @functools.cached_property
    def explain_precision(self) -> str:
        """The explaining pass's precision (``"fp32"`` or ``"bf16"``): the setting, ``auto`` resolved for this CPU."""
        return self.settings.resolved_explain_precision()

    @property
    def explainer(self) -> GradCAM:
        """Grad-CAM over the fp32 network: the served one (fp32, bf16), or the archive's fp32 weights
        loaded on the first explanation (int8 is TorchScript without autograd; about 85 MB more RSS)."""
        if self._explainer is None:
            start = time.perf_counter()
            model = explaining_model(self.model, self.model_dir, self.spec, channels_last=self.settings.channels_last)
            self._explainer = GradCAM(model.to(self.device), self.settings.explain_layer, self.explain_precision)
            logger.info("explanations ready (Grad-CAM at %s; %s pass, explain_precision %s, native bf16 %s; fp32 model %s) "
                        "in %.0f ms", self.settings.explain_layer, self.explain_precision, self.settings.explain_precision,
                        "yes" if has_native_bf16() else "no", "shared" if model is self.model else "loaded",
                        (time.perf_counter() - start) * 1000)
        return self._explainer

    # --- the entry point ---------------------------------------------------------------

    def handle(self, requests: Sequence[Mapping[str, Any]],
               headers: Sequence[Mapping[str, Any]] | None = None) -> BatchResult:
        """Answer a batch: ``requests`` as TorchServe gives them (``{"body"|"data"|<form field>: ...}``),
        ``headers`` their HTTP headers (``explain: True`` marks ``/explanations``). Never raises."""
        start = time.perf_counter()
        batch = _Batch(len(requests))
        try:
            rows = self._read(requests, headers or [], batch)
            for chunk in _chunks(rows, batch, self.batch_size):
                self._run_chunk(chunk, batch)
        except Exception as e:  # noqa: BLE001 - a bug between the steps: a 500 for every request not refused already
            logger.exception("handling a batch of %d failed", len(requests))
            batch.fail(range(batch.size), InternalError.during("handle", e))
        replies = [self._reply(idx, batch) for idx in range(batch.size)]
        try:
            metrics = self._metrics(batch)
        except Exception:  # noqa: BLE001 - metrics must never cost an answer
            logger.exception("metrics of a batch of %d could not be computed", batch.size)
            metrics = []
        metrics.append(Metric("HandlerTime", round((time.perf_counter() - start) * 1000, 2), "ms", "gauge"))
        return BatchResult(replies, metrics)

    def _read(self, requests: Sequence[Mapping[str, Any]], headers: Sequence[Mapping[str, Any]], batch: _Batch) -> list[_Row]:
        """Every request's photos (and explain options), read once; a bad request fails alone."""
        rows: list[_Row] = []
        for idx, request in enumerate(requests):
            try:
                head = headers[idx] if idx < len(headers) and isinstance(headers[idx], Mapping) else {}
                options = explain_options(request, self.spec) if is_explain_request(head) else None
                payload = read_payload(request)
                if options is not None:
                    check_explained_count(len(payload.photos))
            except InvalidInput as e:
                batch.fail([idx], e)
                continue
            except Exception as e:  # noqa: BLE001 - a bug or MemoryError: this request's 500
                logger.exception("reading request %d failed", idx)
                batch.fail([idx], InternalError.during("preprocess", e))
                continue
            if payload.instances:
                batch.instances.add(idx)
            batch.answers[idx] = []
            rows += [_Row(idx, photo, payload.where(number), options) for number, photo in enumerate(payload.photos)]
        return rows

    def _run_chunk(self, rows: list[_Row], batch: _Batch) -> None:
        """Decode, infer, answer and explain at most ``batch_size`` photos; each failure fails only its requests."""
        decoded = [d for d in (self._decode(row, batch) for row in rows) if d is not None]
        decoded = [d for d in decoded if d.row.owner not in batch.errors]  # a request with a bad photo is refused whole
        if not decoded:
            return
        owners = sorted({d.row.owner for d in decoded})
        step = "preprocess"
        try:
            images = torch.stack([d.tensor for d in decoded])
            step = "inference"
            logits = self.forward(images)
            step = "postprocess"
            answers = decode_logits(logits, self.spec, self.model_info)
        except Exception as e:  # noqa: BLE001 - these requests' 500, naming the step; the others go on
            logger.exception("%s failed for %d photos", step, len(decoded))
            batch.fail(owners, InternalError.during(step, e))
            return
        explained = [i for i, d in enumerate(decoded) if d.row.options is not None]
        if explained:
            chosen = images if len(explained) == len(decoded) else images[explained]
            self._explain(chosen, [decoded[i] for i in explained], [answers[i] for i in explained], batch)
        for d, answer in zip(decoded, answers):
            batch.answers[d.row.owner].append(answer)

    def _decode(self, row: _Row, batch: _Batch) -> _Decoded | None:
        """One photo decoded once: the model's tensor, and the photo itself when an overlay is drawn on it."""
        if row.owner in batch.errors:
            return None
        overlay = row.options is not None and row.options.overlay
        try:
            start = time.perf_counter()
            photo = decode_photo(row.photo, self.spec.preprocessing, self.settings)
            middle = time.perf_counter()
            tensor = image_to_tensor(photo.image, self.spec.preprocessing)
        except InvalidInput as e:
            batch.fail([row.owner], e.prefixed(row.where) if row.where else e)
            return None
        except Exception as e:  # noqa: BLE001 - a bug or MemoryError: this request's 500, the others go on
            logger.exception("decoding a photo of request %d failed", row.owner)
            batch.fail([row.owner], InternalError.during("preprocess", e))
            return None
        batch.count("lizaalert_images_decoded", 1)
        batch.count("lizaalert_decode_ms", (middle - start) * 1000, "ms")
        batch.count("lizaalert_preprocess_ms", (time.perf_counter() - middle) * 1000, "ms")
        batch.count("lizaalert_input_megapixels", photo.megapixels, "MP")
        return _Decoded(row, tensor, photo.image if overlay else None)

    def _explain(self, images: torch.Tensor, rows: list[_Decoded], answers: list[dict[str, Any]], batch: _Batch) -> None:
        """Grad-CAM maps (and overlays when asked) into the answers of a chunk's explain rows (``images``: theirs).

        The served answer stays as it is (int8 or not: the same as /predictions); the maps explain
        its values, or the ones the request names in ``target``. Each photo gets the maps its request
        wants (:meth:`Target.wanted`: by default the objects its answer found); when no photo of the
        chunk wants any, no model runs. A failure here is a 500 for the explain requests it concerns
        only; the predictions of the batch are answered.
        """
        start = time.perf_counter()
        owners = sorted({d.row.owner for d in rows})
        try:
            served = [self.spec.answer_codes(answer) for answer in answers]
            targets = [{**codes, **d.row.options.target.values} for d, codes in zip(rows, served)]
            wanted = [d.row.options.target.wanted(self.spec, codes) for d, codes in zip(rows, served)]
            if any(wanted):
                explanation = self.explainer.explain(images.to(self.device), targets, wanted)
            else:  # nothing found, nothing asked: the answer as /predictions gives it, and no model runs
                explanation = Explanation.nothing(len(rows), len(self.spec.attributes), self.settings.explain_layer,
                                                  self.explain_precision)
        except Exception as e:  # noqa: BLE001 - the explain requests' 500; predictions go on
            logger.exception("explain failed for %d photos", len(rows))
            batch.fail(owners, InternalError.during("explain", e))
            batch.count("lizaalert_explanations", len(rows), outcome="failed")
            return
        info = explanation_info(explanation.layer, explanation.precision)
        for i, (d, answer) in enumerate(zip(rows, answers)):
            try:
                target = d.row.options.target
                answer["explained_with"] = {**info, **explained_fields(target, explanation.explained[i], self.spec)}
                answer["explanations"] = explanation_json(explanation, i, self.spec, target.values)
                if d.row.options.overlay:
                    png = overlay_png(d.image, answer, OVERLAY_LONG_SIDE)
                    answer["overlay"] = base64.b64encode(png).decode("ascii")
                batch.count("lizaalert_explanations", 1, outcome="ok")
            except Exception as e:  # noqa: BLE001 - this request's 500 only
                logger.exception("explanation of request %d failed", d.row.owner)
                batch.fail([d.row.owner], InternalError.during("explain", e))
                batch.count("lizaalert_explanations", 1, outcome="failed")
            d.image = None  # the photo was kept for this overlay only
        batch.count("lizaalert_explain_ms", round((time.perf_counter() - start) * 1000, 2), "ms")

    # --- answers and metrics ---------------------------------------------------------

    def _reply(self, idx: int, batch: _Batch) -> Reply:
        error = batch.errors.get(idx)
        if error is None:
            rows = batch.answers.get(idx) or []
            try:
                answer = {"predictions": rows} if idx in batch.instances else rows[0]
                # Serialised here so that Russian labels travel as UTF-8, not \u escapes.
                return Reply(json.dumps(answer, ensure_ascii=False))
            except Exception as e:  # noqa: BLE001 - this request's 500
                logger.exception("answer of request %d could not be serialised", idx)
                error = batch.errors[idx] = InternalError.during("postprocess", e)
        return Reply(json.dumps(error.body(), ensure_ascii=False), error.status, error.reason)

    def _metrics(self, batch: _Batch) -> list[Metric]:
        """The batch's metrics (declared in metrics.yaml; TorchServe drops undeclared ones)."""
        for error in batch.errors.values():
            if error.status < 500:
                batch.count("lizaalert_images_refused", 1, reason=error.reason)
        for owner in batch.answered():
            for answer in batch.answers[owner]:
                for key, value in answer["attributes"].items():
                    batch.count("lizaalert_tag_predictions", 1, attribute=key, value=value["label"])
        return [Metric(name, value, unit, "counter", dims) for (name, unit, dims), value in batch.totals.items()]


def decode_photo(photo: bytes, pre: Preprocessing, settings: HandlerSettings) -> DecodedImage:
    """A photo decoded as the server decodes it; :func:`image_to_tensor` makes the model's input of it.

    An overlay is drawn on this same image (shrunk to ``OVERLAY_LONG_SIDE``): a large JPEG, decoded
    in draft mode at 1/2..1/8 scale, gives an overlay of at least the model's size (a 12 MP photo:
    about 500 x 375 px), and its explanation stays that of the photo /predictions answers for.
    """
    height, width = pre.size
    return decode_image(photo, target_size=(width, height), max_pixels=settings.max_pixels, draft=settings.jpeg_draft)


def _chunks(rows: list[_Row], batch: _Batch, size: int) -> Iterator[list[_Row]]:
    """``rows`` in chunks of at most ``size``, skipping the rows of requests already refused."""
    chunk: list[_Row] = []
    for row in rows:
        if row.owner in batch.errors:
            continue
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _set_threads(settings: HandlerSettings, model_config: Mapping[str, Any]) -> None:
    threads = settings.torch_threads
    if threads <= 0:
        workers = int(model_config.get("maxWorkers") or model_config.get("minWorkers") or 1)
        threads = max(1, available_cores() // max(1, workers))
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process (e.g. tests); harmless
