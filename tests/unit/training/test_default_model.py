"""The shipped default weights: hash-checked, turned into the archive without training, errors that say what to do."""
import json

import pytest
import torch


@pytest.fixture()
def shipped(tmp_path, seeded_weights):
    """A models/default-shaped folder: fp16 safetensors, the spec, a manifest with their hashes."""
    from safetensors.torch import save_file

    from lizaalert_tagger.training import default_model
    from lizaalert_tagger.common.paths import HANDLER_DIR

    folder = tmp_path / "default"
    folder.mkdir()
    state = torch.load(seeded_weights, weights_only=True)
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, str(folder / default_model.WEIGHTS_FILE))
    (folder / default_model.SPEC_FILE).write_bytes((HANDLER_DIR / "attributes.json").read_bytes())
    files = {name: default_model.sha256(folder / name) for name in (default_model.WEIGHTS_FILE, default_model.SPEC_FILE)}
    (folder / default_model.MANIFEST_FILE).write_text(json.dumps({"version": "7.7-test", "files": files}))
    return folder


def test_archive_from_shipped_weights_then_reused(shipped, tmp_path, capsys):
    import zipfile

    from lizaalert_tagger.training.default_model import build_from_shipped
    from lizaalert_tagger.vision.model import load_tagger

    archive, stamp = tmp_path / "store" / "lizaalert_tagger.mar", tmp_path / "stamp.json"
    build_from_shipped(folder=shipped, archive=archive, stamp=stamp)
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read("MAR-INF/MANIFEST.json"))
        zf.extractall(tmp_path / "unpacked")
        names = zf.namelist()
    assert manifest["model"]["modelVersion"] == "7.7-test"
    assert "lizaalert_tagger/vision/model.py" in names and "tagger_handler.py" in names and "attributes.json" in names
    # the archive serves the shipped (fp16-rounded) weights, as fp32 tensors
    served = load_tagger(tmp_path / "unpacked" / "weights.pt").state_dict()
    shipped_model = load_tagger(shipped / "weights.safetensors").state_dict()
    assert all(torch.equal(served[k], shipped_model[k]) for k in served)
    assert served["trunk.conv1.weight"].dtype == torch.float32
    mtime = archive.stat().st_mtime_ns
    build_from_shipped(folder=shipped, archive=archive, stamp=stamp)
    assert archive.stat().st_mtime_ns == mtime and "up to date" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["missing", "altered", "no-manifest"])
def test_missing_or_altered_weights_name_the_file_and_the_fix(shipped, damage):
    from lizaalert_tagger.training.default_model import ShippedWeightsError, verify_shipped

    weights = shipped / "weights.safetensors"
    if damage == "missing":
        weights.unlink()
    elif damage == "altered":
        weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    else:
        (shipped / "manifest.json").unlink()
    with pytest.raises(ShippedWeightsError) as info:
        verify_shipped(shipped)
    message = str(info.value)
    assert ("manifest.json" if damage == "no-manifest" else "weights.safetensors") in message
    assert "make train-default" in message and "git checkout -- models/default" in message
    if damage == "altered":
        assert "does not match" in message


def test_cli_error_is_one_line(shipped, monkeypatch, capsys):
    from lizaalert_tagger.training import default_model

    (shipped / "weights.safetensors").unlink()
    monkeypatch.setattr(default_model, "SHIPPED_DIR", shipped)
    assert default_model.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lizaalert-default-model:") and "weights.safetensors" in err


def test_archive_carries_only_what_the_worker_imports_and_its_freshness_ignores_the_rest(tmp_path, monkeypatch):
    import shutil

    from lizaalert_tagger.ops import archive

    tree = tmp_path / "src" / "lizaalert_tagger"  # a copy to edit: the checkout stays as it is
    shutil.copytree(archive.PACKAGE_DIR, tree, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(archive, "PACKAGE_DIR", tree)

    carried = {str(p.relative_to(archive.PACKAGE_DIR)) for p in archive.carried_files()}
    assert "vision/model.py" in carried and "serving/service.py" in carried and "common/spec.py" in carried
    assert not any(p.startswith(("bench/", "training/", "client/", "ops/", "scenes/")) for p in carried), carried
    copied = archive.copy_package(tmp_path / "archive" / "lizaalert_tagger")
    assert {str(p.relative_to(copied)) for p in copied.rglob("*") if p.is_file()} == carried
    before = archive.sources_digest()
    (tree / "bench" / "bench.py").write_text("# edited\n")
    assert archive.sources_digest() == before  # editing the benchmark does not rebuild the model archive
    (tree / "vision" / "model.py").write_text("# edited\n")
    assert archive.sources_digest() != before  # editing what the worker runs does
