"""train.py end to end on a tiny synthetic set: outputs, tuned spec, skipped rows reported."""
import json

import pytest
import torch

from tagger_model import load_tagger
from tagger_spec import load_spec


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    import make_scenes

    out = tmp_path_factory.mktemp("scenes")
    assert make_scenes.main(["--out", str(out), "--count", "24", "--seed", "3", "--max-size", "320", "--quiet", "--jobs", "1"]) == 0
    # rows the trainer must skip and report: a missing file and a video
    with open(out / "labels.csv", "a", encoding="utf-8") as f:
        f.write("gone.jpg;1;1;1;0;0;0;0;0;0;0;0\nclip.mp4;1;1;1;0;0;0;0;0;0;0;0\n")
    return out


def test_train_writes_weights_spec_and_metrics(tiny_set, tmp_path, capsys):
    import train

    code = train.main(["--images", str(tiny_set / "images"), "--labels", str(tiny_set / "labels.csv"), "--out", str(tmp_path),
                       "--epochs", "2", "--final-epochs", "1", "--low-res", "64", "--batch-size", "8", "--val-fraction", "0.25"])
    assert code == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "skipped 2 of 26 rows" in line]
    assert len(warnings) == 1 and "gone.jpg" in warnings[0] and "clip.mp4" in warnings[0]
    spec = load_spec(tmp_path / "attributes.json")  # validates
    assert all(0 < a.threshold < 1 for a in spec.attributes if a.is_binary)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["train_photos"] == 18 and metrics["validation_photos"] == 6
    assert set(metrics["validation"]["f1"]) == set(spec.keys)
    model = load_tagger(tmp_path / "weights.pt", spec)  # a plain state dict, loadable with weights_only
    with torch.inference_mode():
        assert torch.isfinite(model(torch.zeros(1, 3, 256, 256))).all()


def test_missing_column_is_a_clear_error(tmp_path, capsys):
    import train

    (tmp_path / "labels.csv").write_text("filename;Время суток\na.jpg;1\n", encoding="utf-8")
    assert train.main(["--images", str(tmp_path), "--labels", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "train.py:" in capsys.readouterr().err


def test_final_images_limits_the_served_resolution_epoch(spec):
    """--final-images: the last epoch at 256 px sees only that many photos, the others all."""
    import train
    from tagger_model import LizaAlertTagger

    torch.manual_seed(0)
    pixels = torch.randint(0, 256, (12, 3, 256, 256), dtype=torch.uint8)
    rows = [{a.key: a.codes[i % len(a.codes)] for a in spec.attributes} for i in range(12)]
    model = LizaAlertTagger(spec)
    seen = []
    model.trunk.register_forward_hook(lambda module, inputs, output: seen.append(tuple(inputs[0].shape)))
    train.train(model, pixels, train.targets_from_codes(rows, spec), spec, epochs=2, final_epochs=1, low_res=64,
                batch_size=4, lr=1e-3, seed=0, bf16=False, final_images=4)
    assert sum(s[0] for s in seen if s[-1] == 64) == 12
    assert sum(s[0] for s in seen if s[-1] == 256) == 4
