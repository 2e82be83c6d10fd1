"""``tagctl models register`` through a real TorchServe: the settings not given stay the archive's."""
from __future__ import annotations

import json

import pytest
import yaml

from conftest import HANDLER_DIR, run_tagctl

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("version, flags", [("3.0", []), ("3.1", ["--batch-size", "4"])])
def test_register_keeps_the_archive_settings_not_given(server, seeded_weights, version, flags):
    """Without flags the version gets the archive's model-config.yaml batching and workers; with only
    --batch-size, maxBatchDelay is still the archive's (tagctl used to send its own 10 ms)."""
    from lizaalert_tagger.ops.archive import build_archive

    config = yaml.safe_load((HANDLER_DIR / "model-config.yaml").read_text(encoding="utf-8"))
    archive = build_archive(seeded_weights, version, store=server.model_store)
    code, out = run_tagctl(server, "models", "register", archive.name, *flags)
    assert code == 0, out
    try:
        code, out = run_tagctl(server, "models", "describe", "lizaalert_tagger", version)
        assert code == 0, out
        [described] = json.loads(out)
        assert described["batchSize"] == (4 if flags else config["batchSize"])
        assert described["maxBatchDelay"] == config["maxBatchDelay"]
        assert described["minWorkers"] == config["minWorkers"] and described["maxWorkers"] == config["maxWorkers"]
    finally:
        code, out = run_tagctl(server, "models", "unregister", "lizaalert_tagger", version)
        assert code == 0, out
