"""TorchServe handler for the LizaAlert photo tagger.

Thin on purpose, and the only file that imports ``ts``: everything that is not
TorchServe plumbing lives in the ``lizaalert_tagger`` package, which the archive
carries at its root (``spec``, ``model``, ``preprocess``, ``decode``,
``service``), so that moving to another server only means rewriting this file.

Inputs per request: the photo as the raw body, as a multipart file field, or
as base64 in JSON (``{"data": "<base64>"}``). A request whose photo cannot be
used gets its own 4xx with ``{"code", "type", "message"}``; the other requests
of the batch are answered normally.

Settings come from the archive's ``model-config.yaml`` under ``handler:``
(see ``lizaalert_tagger.service.HandlerSettings``), so an operator can change precision or threads
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

from lizaalert_tagger.decode import decode_logits
from lizaalert_tagger.service import (
    HandlerSettings,
    PreparedBatch,
    RequestFailure,
    available_cores,
    load_model,
    prepare_batch,
    run_inference,
)
from lizaalert_tagger.spec import SPEC_FILENAME, load_spec

logger = logging.getLogger(__name__)

# Until explanations are built, POST /explanations/... gets this per request (never the whole batch).
EXPLAIN_UNAVAILABLE = RequestFailure(
    501, "not_implemented", "Explanations are not available for this model version; use POST /predictions/<model>.")

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
        self.model = load_model(model_dir, self.spec, self.settings).to(self.device)
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

    # TorchServe calls handle() once per batch. Everything that can go wrong is
    # answered per request here: an exception escaping handle() would make the
    # frontend answer 503 to the whole batch, and clients retry 503 as back-pressure.
    def handle(self, data: list[dict[str, Any]], context) -> list[str]:
        start = time.time()
        self.context = context
        refused = {i: EXPLAIN_UNAVAILABLE for i in range(len(data)) if self._header(i, "explain") == "True"}
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
        return self._serialise(batch, batch.answers(decoded))

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
