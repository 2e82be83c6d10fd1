"""TorchServe handler for the LizaAlert photo tagger.

Thin on purpose, and the only file that imports ``ts``: everything that is not
TorchServe plumbing lives in the ``lizaalert_tagger`` package, which the archive
carries at its root (``spec``, ``model``, ``preprocess``, ``decode``,
``service``), so that moving to another server only means rewriting this file.

Inputs per request: the photo as the raw body, as a multipart file field, or
as base64 in JSON (``{"data": "<base64>"}``). A request whose photo cannot be
used gets its own 4xx with ``{"code", "type", "message"}``; the other requests
of the batch are answered normally.

``POST /explanations/<model>`` (TorchServe marks such a request with the header
``explain: True``; a batch may mix them with predictions, so each request is
looked at) answers the prediction plus a Grad-CAM map per attribute
(``lizaalert_tagger.vision.explain``), computed with the archive's fp32 weights, loaded
on the first explanation when predictions are served by int8.

Settings come from the archive's ``model-config.yaml`` under ``handler:``
(see ``lizaalert_tagger.serving.service.HandlerSettings``), so an operator can change precision or threads
without rebuilding code.
"""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from ts.metrics.dimension import Dimension
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler

from lizaalert_tagger.vision.answers import decode_logits
from lizaalert_tagger.vision.explain import (
    ExplainOptions,
    GradCAM,
    explain_options,
    explaining_model,
    explanation_info,
    explanation_json,
    overlay_png_base64,
)
from lizaalert_tagger.vision.preprocess import ImageError
from lizaalert_tagger.serving.service import (
    WEIGHTS_FILENAME,
    HandlerSettings,
    PreparedBatch,
    RequestFailure,
    extract_photos,
    load_model,
    prepare_batch,
    run_inference,
)
from lizaalert_tagger.common.machine import available_cores
from lizaalert_tagger.common.spec import SPEC_FILENAME, load_spec

logger = logging.getLogger(__name__)

class LizaAlertHandler(BaseHandler):
    """Tags photos with the 11 attributes of the spec shipped in the archive."""

    def initialize(self, context) -> None:
        # BaseHandler.initialize is not called: it would unpickle a model file or load
        # TorchScript by file name. The model is rebuilt from the spec and loaded as
        # tensors only (or the int8 TorchScript that archive.py built) by service.load_model.
        yaml_config = getattr(context, "model_yaml_config", None) or {}
        self.model_yaml_config = yaml_config
        self.settings = HandlerSettings.from_yaml(yaml_config.get("handler"))
        self.batch_size = max(1, int(yaml_config.get("batchSize") or 1))
        self._set_threads(yaml_config)
        properties = context.system_properties
        model_dir = Path(properties.get("model_dir"))
        gpu = properties.get("gpu_id")
        self.device = torch.device(f"cuda:{gpu}" if torch.cuda.is_available() and gpu is not None else "cpu")
        self.map_location = self.device.type
        self.manifest = context.manifest
        self.spec = load_spec(model_dir / SPEC_FILENAME)
        self.model_dir = model_dir
        self.model = load_model(model_dir, self.spec, self.settings).to(self.device)
        self._explainer: GradCAM | None = None  # built on the first explanation (see explainer)
        self._explain: dict[int, ExplainOptions] = {}  # this batch's explain requests
        self._requests: list[dict[str, Any]] = []
        self.model.eval()
        manifest_model = (self.manifest or {}).get("model", {})
        self.model_info = {
            "name": manifest_model.get("modelName", self.spec.model_name),
            "version": str(manifest_model.get("modelVersion", "unknown")),
        }
        self._warm_up()
        self.initialized = True
        logger.info(
            "lizaalert_tagger %s ready: precision=%s channels_last=%s threads=%d draft=%s max_pixels=%d",
            self.model_info["version"], self.settings.precision, self.settings.channels_last,
            torch.get_num_threads(), self.settings.jpeg_draft, self.settings.max_pixels,
        )

    def _set_threads(self, yaml_config: dict[str, Any]) -> None:
        threads = self.settings.torch_threads
        if threads <= 0:
            cores = available_cores()
            workers = int(yaml_config.get("maxWorkers") or yaml_config.get("minWorkers") or 1)
            threads = max(1, cores // max(1, workers))
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # already set in this process (e.g. tests); harmless

    def _warm_up(self) -> None:
        """Forward passes at start so that the first clients do not pay for lazy init.

        TorchScript (int8) optimises a graph on its first calls per input shape: run
        a lone photo and a full batch twice each.
        """
        height, width = self.spec.preprocessing.size
        for batch in (1, self.batch_size) * 2:
            self._run_model(torch.zeros(batch, 3, height, width, device=self.device))

    def _run_model(self, images: torch.Tensor) -> torch.Tensor:
        return run_inference(self.model, images, bf16=self.settings.bf16, channels_last=self.settings.channels_last)

    @property
    def explainer(self) -> GradCAM:
        """Grad-CAM over the fp32 network: the served one (fp32, bf16), or the archive's fp32 weights
        loaded on the first explanation (int8 is TorchScript without autograd; about 85 MB more RSS)."""
        if self._explainer is None:
            start = time.perf_counter()
            model = explaining_model(self.model, self.model_dir, self.spec, WEIGHTS_FILENAME,
                                     channels_last=self.settings.channels_last).to(self.device)
            self._explainer = GradCAM(model, self.settings.explain_layer)
            logger.info("explanations ready (Grad-CAM at %s, fp32 model %s) in %.0f ms", self.settings.explain_layer,
                        "shared" if model is self.model else "loaded", (time.perf_counter() - start) * 1000)
        return self._explainer

    # TorchServe calls handle() once per batch. Everything that can go wrong is
    # answered per request here: an exception escaping handle() would make the
    # frontend answer 503 to the whole batch, and clients retry 503 as back-pressure.
    def handle(self, data: list[dict[str, Any]], context) -> list[str]:
        start = time.time()
        self.context = context
        self._requests = data
        self._explain, refused = self._explain_requests(data)
        batch = self.preprocess(data, refused)
        step = "inference"
        try:
            inferred = self.inference(batch)
            step = "postprocess"
            output = self.postprocess(inferred)
        except Exception as e:  # noqa: BLE001 - reported per request, with the step in the message
            logger.exception("%s failed for a batch of %d", step, batch.size)
            batch.fail(batch.good, RequestFailure.internal(step, e))
            output = self._serialise(batch, batch.answers([None] * len(batch.owners)))
        if getattr(context, "metrics", None) is not None:
            context.metrics.add_time("HandlerTime", round((time.time() - start) * 1000, 2), None, "ms")
        return output

    def _header(self, idx: int, name: str) -> str | None:
        try:
            return self.context.get_request_header(idx, name)
        except (AttributeError, IndexError, KeyError):
            return None

    def _explain_requests(self, data: list[dict[str, Any]]) -> tuple[dict[int, ExplainOptions], dict[int, ImageError]]:
        """The batch's explain requests (TorchServe sets the header per request) and their options;
        malformed options are that request's 400, before any decoding."""
        options: dict[int, ExplainOptions] = {}
        refused: dict[int, ImageError] = {}
        for idx, request in enumerate(data):
            if self._header(idx, "explain") != "True":
                continue
            try:
                options[idx] = explain_options(request, self.spec)
            except ImageError as e:
                refused[idx] = e
        return options, refused

    def preprocess(self, data: list[dict[str, Any]], refused: dict[int, Any] | None = None) -> PreparedBatch:
        batch = prepare_batch(data, self.spec.preprocessing, self.settings, skip=refused)
        self._report_input_metrics(batch)
        return batch

    def inference(self, batch: PreparedBatch, *args, **kwargs) -> tuple[PreparedBatch, torch.Tensor | None]:
        logits = self._run_model(batch.tensor.to(self.device)) if batch.tensor is not None else None
        return batch, logits

    def postprocess(self, data: tuple[PreparedBatch, torch.Tensor | None]) -> list[str]:
        batch, logits = data
        decoded: list[Any] = []
        if logits is not None:
            decoded = decode_logits(logits, self.spec, self.model_info)
            answered = [a for owner, a in zip(batch.owners, decoded) if owner not in batch.errors]
            self._report_tag_metrics(answered)
            self._add_explanations(batch, decoded)
        return self._serialise(batch, batch.answers(decoded))

    def _add_explanations(self, batch: PreparedBatch, decoded: list[dict[str, Any]]) -> None:
        """Grad-CAM maps (and overlays when asked) into the answers of the explain requests.

        The served answer stays as it is (int8 or not: the same as /predictions); the maps explain
        its values, or the ones the request names in ``target``. A failure here is a 500 for the
        explain requests only; the predictions of the batch are answered.
        """
        rows = [r for r, owner in enumerate(batch.owners) if owner in self._explain and owner not in batch.errors]
        if not rows:
            return
        start = time.perf_counter()
        owners = sorted({batch.owners[r] for r in rows})
        try:
            targets = [{**self.spec.answer_codes(decoded[r]), **self._explain[batch.owners[r]].target} for r in rows]
            explanation = self.explainer.explain(batch.tensor[rows].to(self.device), targets)
        except Exception as e:  # noqa: BLE001 - the explain requests' 500; predictions go on
            logger.exception("explain failed for %d photos", len(rows))
            batch.fail(owners, RequestFailure.internal("explain", e))
            self._metric("lizaalert_explanations", len(rows), "count", MetricTypes.COUNTER, outcome="failed")
            return
        info = explanation_info(explanation.layer)
        failed: set[int] = set()
        for i, r in enumerate(rows):
            owner = batch.owners[r]
            options = self._explain[owner]
            try:
                decoded[r]["explained_with"] = info
                decoded[r]["explanations"] = explanation_json(explanation, i, self.spec, options.target)
                if options.overlay:
                    photos, _ = extract_photos(self._requests[owner])
                    decoded[r]["overlay"] = overlay_png_base64(photos[batch.owners[:r].count(owner)], decoded[r])
            except Exception as e:  # noqa: BLE001 - this request's 500 only
                logger.exception("explanation of request %d failed", owner)
                batch.fail([owner], RequestFailure.internal("explain", e))
                failed.add(owner)
        failed_rows = sum(batch.owners[r] in failed for r in rows)
        for outcome, count in (("ok", len(rows) - failed_rows), ("failed", failed_rows)):
            if count:
                self._metric("lizaalert_explanations", count, "count", MetricTypes.COUNTER, outcome=outcome)
        self._metric("lizaalert_explain_ms", round((time.perf_counter() - start) * 1000, 2), "ms", MetricTypes.COUNTER)

    def _serialise(self, batch: PreparedBatch, answers: list[Any]) -> list[str]:
        if self.context is not None:
            for idx, error in batch.errors.items():
                self.context.set_response_status(error.status, error.reason, idx)
            for idx in range(batch.size):
                self.context.set_response_content_type(idx, "application/json; charset=utf-8")
        # Serialised here so that Russian labels travel as UTF-8, not \u escapes.
        return [json.dumps(answer, ensure_ascii=False) for answer in answers]

    # --- metrics (declared in metrics.yaml; TorchServe drops undeclared ones) ---

    def _metric(self, name: str, amount: float, unit: str, metric_type: MetricTypes, **dims: str) -> None:
        metrics = getattr(self.context, "metrics", None)
        if metrics is None:
            return
        dimensions = [Dimension("ModelName", self.model_info["name"]), Dimension("Level", "Model")]
        dimensions += [Dimension(k, v) for k, v in dims.items()]
        try:
            metrics.add_metric(name, amount, unit, None, dimensions, metric_type)
        except Exception:  # a metrics hiccup must never fail a prediction
            logger.exception("could not record metric %s", name)

    def _report_input_metrics(self, batch: PreparedBatch) -> None:
        for reason, count in Counter(e.reason for e in batch.errors.values()).items():
            self._metric("lizaalert_images_refused", count, "count", MetricTypes.COUNTER, reason=reason)
        if batch.good:
            self._metric("lizaalert_images_decoded", len(batch.good), "count", MetricTypes.COUNTER)
            self._metric("lizaalert_decode_ms", batch.decode_ms, "ms", MetricTypes.COUNTER)
            self._metric("lizaalert_preprocess_ms", batch.tensor_ms, "ms", MetricTypes.COUNTER)
            self._metric("lizaalert_input_megapixels", sum(batch.megapixels), "MP", MetricTypes.COUNTER)

    def _report_tag_metrics(self, answers: list[dict[str, Any]]) -> None:
        counts = Counter(
            (key, value["label"]) for answer in answers for key, value in answer["attributes"].items()
        )
        for (attribute, label), count in counts.items():
            self._metric("lizaalert_tag_predictions", count, "count", MetricTypes.COUNTER, attribute=attribute, value=label)
