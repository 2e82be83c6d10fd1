"""Training smoke test: lizaalert-scenes -> lizaalert-train -> archive -> TorchServe answers with that model (seconds of training)."""
import json

import pytest

from conftest import run_tagctl, start_server

pytestmark = pytest.mark.integration


def test_train_archive_serve(tmp_path, spec):
    from lizaalert_tagger.ops.archive import build_archive
    from lizaalert_tagger.scenes.cli import main as scenes_main
    from lizaalert_tagger.training.cli import main as train_main

    scenes = tmp_path / "scenes"
    assert scenes_main(["--out", str(scenes), "--count", "24", "--seed", "31", "--max-size", "320", "--quiet", "--jobs", "1"]) == 0
    out = tmp_path / "trained"
    assert train_main(["--images", str(scenes / "images"), "--labels", str(scenes / "labels.csv"), "--out", str(out),
                       "--epochs", "1", "--final-epochs", "1", "--batch-size", "8", "--val-fraction", "0.25", "--jobs", "1"]) == 0
    store = tmp_path / "store"
    archive = build_archive(out / "weights.pt", "0.9-smoke", spec=out / "attributes.json", store=store, file_name="lizaalert_tagger.mar")
    assert archive.exists()
    server = start_server(tmp_path / "run", store)
    try:
        code, out_text = run_tagctl(server, "predict", "--json", str(next((scenes / "images").iterdir())))
    finally:
        server.stop()
    assert code == 0, out_text
    answer = json.loads(out_text.splitlines()[0])
    assert list(answer["attributes"]) == list(spec.keys)
    assert answer["model"]["version"] == "0.9-smoke"
    tuned = json.loads((out / "attributes.json").read_text())
    assert answer["attributes"]["car"]["code"] in (0, 1) and tuned["attributes"]
