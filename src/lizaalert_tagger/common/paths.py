"""Where the project's files are: the checkout the package is installed from (``pip install -e .``).

``LIZAALERT_HOME`` overrides it (a container, another checkout). Only defaults of the
command-line tools use these paths; library functions take explicit paths.
"""
from __future__ import annotations

import os
from pathlib import Path


def _project_root() -> Path:
    if os.environ.get("LIZAALERT_HOME"):
        return Path(os.environ["LIZAALERT_HOME"]).resolve()
    checkout = Path(__file__).resolve().parents[3]  # src/lizaalert_tagger/common/paths.py -> the checkout
    return checkout if (checkout / "handler").is_dir() else Path.cwd()


ROOT = _project_root()
HANDLER_DIR = ROOT / "handler"  # the archive's root: TorchServe adapter, model-config.yaml, attributes.json
MODEL_STORE = ROOT / "model_store"
RUN_DIR = ROOT / "run"  # TorchServe's working directory: key_file.json, logs, snapshots
CONFIG_PROPERTIES = ROOT / "config.properties"
METRICS_CONFIG = ROOT / "metrics.yaml"
EXAMPLE_PHOTO = ROOT / "examples" / "photo.jpg"
DEFAULT_ARCHIVE = MODEL_STORE / "lizaalert_tagger.mar"
