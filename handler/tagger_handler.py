"""TorchServe handler for the LizaAlert photo tagger: a translation, nothing more.

The only file that imports ``ts``. ``initialize`` reads TorchServe's context (model dir,
model-config.yaml, manifest, GPU) into ``lizaalert_tagger.serving.service.TaggerService.load``;
``handle`` passes the batch's requests and headers to ``TaggerService.handle`` and turns its
answers (status, JSON body) and metrics (names, values, units, dimensions) back into TorchServe's
calls. Inputs, explanations, batching and per-request errors are the service's; another server
needs another page like this one.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ts.metrics.dimension import Dimension
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler

from lizaalert_tagger.serving.service import BatchResult, Metric, TaggerService

logger = logging.getLogger(__name__)

METRIC_TYPES = {"counter": MetricTypes.COUNTER, "gauge": MetricTypes.GAUGE}


class LizaAlertHandler(BaseHandler):
    """Tags photos with the attributes of the spec shipped in the archive."""

    def initialize(self, context) -> None:
        # BaseHandler.initialize is not called: it would unpickle a model file or load TorchScript
        # by file name. The service rebuilds the model from the spec and loads tensors only.
        properties = context.system_properties
        model = (context.manifest or {}).get("model", {})
        self.service = TaggerService.load(
            Path(properties.get("model_dir")), getattr(context, "model_yaml_config", None) or {},
            model_name=model.get("modelName"), model_version=model.get("modelVersion"), gpu_id=properties.get("gpu_id"),
        )
        self.model = self.service.model
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context) -> list[str]:
        """One batch: TorchServe's requests in, one JSON body per request out (statuses set on the context)."""
        result = self.service.handle(data, [_headers(context, idx) for idx in range(len(data))])
        self._answer(result, context)
        return [reply.body for reply in result.replies]

    def _answer(self, result: BatchResult, context) -> None:
        for idx, reply in enumerate(result.replies):
            if reply.status != 200:
                context.set_response_status(reply.status, reply.reason, idx)
            context.set_response_content_type(idx, reply.content_type)
        metrics = getattr(context, "metrics", None)
        if metrics is not None:
            for metric in result.metrics:
                self._report(metrics, metric)

    def _report(self, metrics, metric: Metric) -> None:
        dimensions = [Dimension("ModelName", self.service.model_info["name"]), Dimension("Level", "Model")]
        dimensions += [Dimension(name, value) for name, value in metric.dimensions]
        try:
            metrics.add_metric(metric.name, metric.value, metric.unit, None, dimensions, METRIC_TYPES[metric.kind])
        except Exception:  # a metrics hiccup must never fail a prediction
            logger.exception("could not record metric %s", metric.name)


def _headers(context, idx: int) -> dict[str, Any]:
    try:
        return dict(context.get_all_request_header(idx) or {})
    except (AttributeError, IndexError, KeyError, TypeError):
        return {}
