"""The documented recipe on the shipped default model:
generate held-out scenes -> serve -> tagctl tag-folder -> tagctl score."""
import json

import pytest

from conftest import ROOT, run_tagctl, start_server

pytestmark = pytest.mark.integration

DEFAULT_ARCHIVE = ROOT / "model_store" / "lizaalert_tagger.mar"
HELD_OUT_SEED = 1001  # the default model trains on seed 0; this seed is never seen in training
HELD_OUT_COUNT = 200
# What the shipped default reaches through the server on these 200 held-out scenes: 0.917 measured
# (README, "The default model"; 0.926 on 1000). The floor is that minus 0.02. Every object was far below
# 0.5 before the real training run (sherp 0.19 ... hug 0.11); the object floor catches a model that
# stops seeing them (dog handler, the weakest, measured 0.67 here and 0.56 on 1000 scenes).
SHIPPED_MIN_SCORE = 0.897
OBJECT_MIN_F1 = 0.5
CATEGORICAL_MIN_F1 = 0.90


def test_generate_serve_tag_score(tmp_path):
    from lizaalert_tagger.scenes import make_dataset

    assert DEFAULT_ARCHIVE.exists(), "the shipped default model is missing: run `make model` (make test does)"
    held_out = tmp_path / "held_out"
    assert len(make_dataset(held_out, HELD_OUT_COUNT, HELD_OUT_SEED, jobs=2)) == HELD_OUT_COUNT
    server = start_server(tmp_path / "run", DEFAULT_ARCHIVE.parent)
    try:
        code, out = run_tagctl(server, "tag-folder", str(held_out / "images"), "--out", str(tmp_path / "predicted.csv"),
                               "--concurrency", "8", "--quiet")
        assert code == 0, out
        code, out = run_tagctl(server, "models", "describe", "lizaalert_tagger")
        version = json.loads(out)[0]["modelVersion"]
    finally:
        server.stop()
    assert version == "1.0", f"the default archive is {version!r}, not the trained 1.0"
    code, out = run_tagctl(server, "score", str(tmp_path / "predicted.csv"), str(held_out / "labels.csv"), "--json")
    assert code == 0
    score = json.loads(out)
    print(f"\nheld-out served score {score['score']:.4f} on {score['count']} photos: {score['f1']}")
    assert score["count"] == HELD_OUT_COUNT
    assert score["score"] >= SHIPPED_MIN_SCORE
    for key in ("time_of_day", "season", "terrain"):
        assert score["f1"][key] >= CATEGORICAL_MIN_F1, (key, score["f1"][key])
    for key in ("sherp", "car", "aviation", "drone", "horses", "dog_handler", "diver", "hugs"):
        assert score["f1"][key] >= OBJECT_MIN_F1, (key, score["f1"][key])
