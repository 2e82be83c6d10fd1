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


# What `lizaalert-default-model --train` passed to lizaalert-train when recipes were argv (the run of
# `--recipe continue` in progress was started so, and its checkpoint is resumed with these settings).
OLD_RECIPE_ARGV = {
    "gpu": ["--batch-size", "32", "--lr", "2e-3", "--checkpoint-minutes", "10", "--low-res-mode", "full", "--epochs", "5",
            "--final-epochs", "0"],
    "cpu": ["--batch-size", "32", "--lr", "2e-3", "--checkpoint-minutes", "10", "--low-res-mode", "resize", "--low-res",
            "128", "--epochs", "5", "--final-epochs", "1", "--final-images", "8000", "--final-lr", "5e-4", "--ema-passes",
            "8000", "--snapshot-every", "8000"],
    "continue": ["--batch-size", "32", "--lr", "1e-3", "--low-res-mode", "full", "--epochs", "2", "--final-epochs", "0",
                 "--ema-passes", "8000", "--snapshot-every", "8000", "--checkpoint-minutes", "5", "--head-weight",
                 "dog_handler=2", "--head-weight", "horses=1.5", "--head-weight", "hugs=1.5"],
}


@pytest.mark.parametrize("recipe", sorted(OLD_RECIPE_ARGV))
def test_recipe_configs_are_the_settings_runs_were_started_with(recipe, tmp_path):
    """Each recipe's TrainConfig is what its lizaalert-train command line gave; the config writes that
    command line back (for the manifest) and the command line reads it as the same config."""
    from lizaalert_tagger.training import cli, default_model

    build = tmp_path / "build"
    old = ["--images", str(build / "scenes" / "images"), "--labels", str(build / "scenes" / "labels.csv"),
           "--val-images", str(build / "calibration" / "images"), "--val-labels", str(build / "calibration" / "labels.csv"),
           "--out", str(build / "trained"), "--device", "auto", "--jobs", "2", *OLD_RECIPE_ARGV[recipe],
           *(["--init", str(default_model.SHIPPED_DIR / default_model.WEIGHTS_FILE)] if recipe == "continue" else []),
           "--resume"]
    config = default_model.recipe_config(recipe, build, device="auto", jobs=2, resume=True)
    assert config == cli.config_from_args(cli.build_parser().parse_args(old))
    assert cli.config_from_args(cli.build_parser().parse_args(config.to_argv())) == config


def test_continue_recipe_keeps_its_phases_scenes_and_head_weights(tmp_path):
    """The continuation in progress resumes only if its phases, its scenes (found by their stamp) and its
    head weights are what they were: one 256 px phase of 1,500 steps at peak lr 1e-3 on 24,000 scenes."""
    from lizaalert_tagger.training import default_model
    from lizaalert_tagger.training.schedule import Phase, plan_phases

    config = default_model.recipe_config("continue", tmp_path, jobs=1, resume=True)
    scenes, calibration = default_model.recipe_scenes("continue")
    assert plan_phases(config, scenes.count, 256) == [Phase("256px", "full", 1500, 1e-3)]
    assert dict(config.head_weights) == {"dog_handler": 2.0, "horses": 1.5, "hugs": 1.5}
    assert config.init == default_model.SHIPPED_DIR / "weights.safetensors" and config.out == tmp_path / "trained"
    assert scenes.stamp() == {"seed": 20, "count": 24000, "options": ["--max-size", "1024", "--tag-boost", "4.0"]}
    assert calibration.stamp() == {"seed": 1, "count": 3000, "options": ["--max-size", "1024"]}
    assert scenes.record() == {"seed": 20, "count": 24000, "max_size": 1024, "tag_boost": 4.0}


def test_scenes_are_reused_by_their_stamp_and_other_scenes_refused(tmp_path):
    from lizaalert_tagger.training.default_model import SceneSet, generate_scenes

    out = tmp_path / "scenes"
    generate_scenes(out, SceneSet(5, 3, max_size=320), jobs=1)
    assert json.loads((out / "scenes.json").read_text()) == {"seed": 5, "count": 3, "options": ["--max-size", "320"]}
    mtime = (out / "labels.csv").stat().st_mtime_ns
    generate_scenes(out, SceneSet(5, 3, max_size=320), jobs=1)
    assert (out / "labels.csv").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="holds other scenes"):
        generate_scenes(out, SceneSet(6, 3, max_size=320), jobs=1)
