"""Training end to end on a tiny synthetic set (outputs, tuned spec, skipped rows reported, a stopped run
resumed), and its parts: schedule, crops' labels, loss, precision, the recipes' configs."""
import json

import pytest
import torch

from lizaalert_tagger.vision.model import load_tagger
from lizaalert_tagger.common.spec import load_spec


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory, spec):
    from lizaalert_tagger.scenes import make_dataset

    out = tmp_path_factory.mktemp("scenes")
    make_dataset(out, 24, 3, max_size=320)
    # rows the trainer must skip and report: a missing file and a video
    codes = ";".join("0" if a.is_binary else "1" for a in spec.attributes)
    with open(out / "labels.csv", "a", encoding="utf-8") as f:
        f.write(f"gone.jpg;{codes}\nclip.mp4;{codes}\n")
    return out


def test_train_writes_weights_spec_and_metrics(tiny_set, tmp_path, capsys):
    from lizaalert_tagger.training import cli

    code = cli.main(["--images", str(tiny_set / "images"), "--labels", str(tiny_set / "labels.csv"), "--out", str(tmp_path),
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
    from lizaalert_tagger.training import cli

    (tmp_path / "labels.csv").write_text("filename;Время суток\na.jpg;1\n", encoding="utf-8")
    assert cli.main(["--images", str(tmp_path), "--labels", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lizaalert-train: ") and "Время года" in err


def _tiny_trainer(spec, phases, *, seed=0, boxes=None, n=12):
    from lizaalert_tagger.training.data import targets_from_codes
    from lizaalert_tagger.training.trainer import Trainer
    from lizaalert_tagger.vision.model import LizaAlertTagger

    torch.manual_seed(0)
    pixels = torch.randint(0, 256, (n, 3, 256, 256), dtype=torch.uint8)
    rows = [{a.key: a.codes[i % len(a.codes)] for a in spec.attributes} for i in range(n)]
    model = LizaAlertTagger(spec)
    return Trainer(model, pixels, targets_from_codes(rows, spec), spec, phases, batch_size=4, seed=seed,
                   device=torch.device("cpu"), bf16=False, boxes=boxes)


def test_phases_run_at_their_sizes(spec):
    """A low-resolution phase sees the photo squashed to its size, the final phase the served 256 px,
    each for exactly its number of steps; a crop phase sees windows between its bounds."""
    from lizaalert_tagger.training.schedule import Phase

    phases = [Phase("low", "resize", 3, 1e-3, size=64), Phase("crop", "crop", 2, 1e-3, crop=(96, 128)),
              Phase("final", "full", 1, 1e-3)]
    boxes = [[] for _ in range(12)]
    trainer = _tiny_trainer(spec, phases, boxes=boxes)
    seen = []
    trainer.model.trunk.register_forward_hook(lambda module, inputs, output: seen.append(tuple(inputs[0].shape)))
    assert trainer.run() is True
    assert [s[-1] for s in seen[:3]] == [64, 64, 64]
    assert all(96 <= s[-1] <= 128 and s[-1] == s[-2] for s in seen[3:5])
    assert seen[5][-2:] == (256, 256) and len(seen) == 6
    assert trainer.image_passes == 24


def test_final_images_limits_the_served_resolution_epoch(spec):
    """--final-images: the epoch at 256 px sees only that many photos, the earlier ones all."""
    from lizaalert_tagger.training.config import TrainConfig
    from lizaalert_tagger.training.schedule import plan_phases

    config = TrainConfig(batch_size=4, epochs=2, final_epochs=1, final_images=4, low_res_mode="resize", low_res=64,
                         lr=1e-3, final_lr=5e-4)
    low, final = plan_phases(config, train_count=12, full_size=256)
    assert (low.mode, low.size, low.steps, low.lr) == ("resize", 64, 3, 1e-3)
    assert (final.mode, final.steps, final.lr) == ("full", 1, 5e-4)


def test_each_phase_has_its_own_learning_rate_cycle():
    """The served-resolution phase warms up again from its own peak rather than
    running at the tail (~0) of the first phase's cycle."""
    from lizaalert_tagger.training.schedule import Phase, phase_lr

    first, final = Phase("a", "resize", 100, 2e-3, size=128), Phase("b", "full", 50, 5e-4)
    assert phase_lr(first, 0) < phase_lr(first, 10) == pytest.approx(2e-3)
    assert phase_lr(first, 99) < 2e-5
    assert max(phase_lr(final, s) for s in range(50)) == pytest.approx(5e-4)
    assert phase_lr(final, 5) == pytest.approx(5e-4)


def test_crop_labels_follow_the_boxes(spec):
    """A tag is present in a crop holding most of its object, absent when the crop misses it,
    and left out of the loss when the crop cuts it in half; untagged photos stay negative."""
    from lizaalert_tagger.training.data import crop_targets, targets_from_codes

    rows = [{a.key: 0 for a in spec.attributes} for _ in range(4)]
    for r in rows[:3]:
        r["car"] = 1
    targets = targets_from_codes(rows, spec)
    boxes = [[["car", 0.1, 0.1, 0.3, 0.3]]] * 3 + [[]]
    window = torch.tensor([[0.0, 0.0, 0.5, 0.5],   # the whole car
                           [0.5, 0.5, 1.0, 1.0],   # none of it
                           [0.2, 0.0, 0.7, 0.5],   # half of it
                           [0.0, 0.0, 0.5, 0.5]])  # no car in the photo
    out, masks = crop_targets(targets, boxes, window, spec)
    assert out["car"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert masks["car"].tolist() == [1.0, 1.0, 0.0, 1.0]
    assert out["time_of_day"] is targets["time_of_day"]


def test_crop_phase_without_boxes_is_refused(spec):
    from lizaalert_tagger.training.schedule import Phase

    with pytest.raises(ValueError, match="boxes"):
        _tiny_trainer(spec, [Phase("crop", "crop", 2, 1e-3, crop=(96, 128))])


def test_resume_continues_exactly(spec, tmp_path):
    """Stopping after some steps and resuming from the checkpoint gives the weights of an uninterrupted run."""
    from lizaalert_tagger.training.schedule import Phase
    from lizaalert_tagger.training.trainer import save_checkpoint

    torch.set_num_threads(1)  # bitwise-reproducible kernels
    phases = [Phase("low", "resize", 3, 1e-3, size=64), Phase("final", "full", 2, 5e-4)]
    straight = _tiny_trainer(spec, phases)
    straight.run()

    first = _tiny_trainer(spec, phases)
    first.run(on_step=lambda t: t.step == 2 and save_checkpoint(t, tmp_path / "checkpoint.pt"))
    second = _tiny_trainer(spec, phases)
    second.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True))
    assert second.step == 2
    second.run()
    for (name, a), b in zip(straight.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    wrong = _tiny_trainer(spec, [Phase("other", "full", 5, 1e-3)])
    with pytest.raises(ValueError, match="other phases"):
        wrong.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True))


def test_training_pixels_are_the_served_pixels(tmp_path):
    """Training decodes and resizes exactly as the handler does, interpolation included:
    with a spec whose interpolation is not the default, the cached training pixels,
    normalised, equal the tensor the serving path builds for the same photo."""
    import dataclasses

    from lizaalert_tagger.training.data import load_pixels
    from conftest import make_photo
    from lizaalert_tagger.serving.service import decode_photo
    from lizaalert_tagger.serving.settings import HandlerSettings
    from lizaalert_tagger.vision.preprocess import image_to_tensor, normalize
    from lizaalert_tagger.common.spec import load_spec

    base = load_spec()
    photo = make_photo(size=(1600, 900), quality=90)
    (tmp_path / "p.jpg").write_bytes(photo)
    for interpolation in ("bilinear", "nearest", "bicubic"):
        spec = dataclasses.replace(base, preprocessing=dataclasses.replace(base.preprocessing, interpolation=interpolation))
        pixels, kept, problems = load_pixels([tmp_path / "p.jpg"], spec, jobs=1)
        assert kept == [0] and not problems
        served = image_to_tensor(decode_photo(photo, spec.preprocessing, HandlerSettings()).image, spec.preprocessing)[None]
        assert torch.equal(normalize(pixels, spec.preprocessing), served), interpolation
    nearest = dataclasses.replace(base, preprocessing=dataclasses.replace(base.preprocessing, interpolation="nearest"))
    a, _, _ = load_pixels([tmp_path / "p.jpg"], base, jobs=1)
    b, _, _ = load_pixels([tmp_path / "p.jpg"], nearest, jobs=1)
    assert not torch.equal(a, b)  # the interpolation really reaches the resize


def test_fit_epochs_takes_the_most_that_fit():
    """--fit-seconds: epochs chosen from measured per-phase step times, never over the budget."""
    import dataclasses

    from lizaalert_tagger.training.config import TrainConfig
    from lizaalert_tagger.training.schedule import fit_epochs

    config = TrainConfig(batch_size=10, epochs=99, final_epochs=0, low_res_mode="full", lr=1e-3)
    # 100 photos, 10 steps per epoch, 0.5 s per step: 5 s per epoch
    assert fit_epochs(config, 23.0, 100, 256, lambda phase: 0.5) == 4
    assert fit_epochs(config, 1.0, 100, 256, lambda phase: 0.5) == 1  # at least one epoch
    # with a served-size final epoch that costs 4x as much per step as the 128 px ones
    config = dataclasses.replace(config, low_res_mode="resize", final_epochs=1)
    cost = lambda phase: 2.0 if phase.mode == "full" else 0.5  # noqa: E731
    assert fit_epochs(config, 20.0 + 3 * 5.0, 100, 256, cost) == 4  # 1 final (20 s) + 3 at 128 px (15 s)


def test_head_weight_multiplies_that_heads_loss(spec):
    from lizaalert_tagger.training.data import targets_from_codes
    from lizaalert_tagger.training.trainer import TaggerLoss

    torch.manual_seed(0)
    rows = [{a.key: a.codes[i % len(a.codes)] for a in spec.attributes} for i in range(6)]
    targets = targets_from_codes(rows, spec)
    logits = torch.randn(6, spec.num_logits)
    plain = TaggerLoss(spec, targets)(logits, targets)
    weighted = TaggerLoss(spec, targets, head_weights={"dog_handler": 3.0})(logits, targets)
    only = TaggerLoss(spec, targets, head_weights={k: (1.0 if k == "dog_handler" else 1e-12) for k in spec.keys})(logits, targets)
    assert float(only) > 0
    assert torch.allclose(weighted, plain + 2.0 * only, rtol=1e-5)


@pytest.mark.parametrize("item", ["=2", "dog_handler", "dog_handler=0", "dog_handler=x"])
def test_head_weight_option_says_what_it_expects(item):
    from lizaalert_tagger.training.config import parse_head_weights

    with pytest.raises(ValueError, match="expected KEY=W") as info:
        parse_head_weights([item])
    assert repr(item) in str(info.value) and "dog_handler" in str(info.value)
    assert parse_head_weights(["dog_handler=2", "hugs=1.5"]) == {"dog_handler": 2.0, "hugs": 1.5}


def test_head_weight_for_an_attribute_the_spec_lacks_is_refused_early(tiny_set, tmp_path, capsys):
    from lizaalert_tagger.training import cli

    argv = ["--images", str(tiny_set / "images"), "--labels", str(tiny_set / "labels.csv"), "--out", str(tmp_path),
            "--head-weight", "dog=2"]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("lizaalert-train: head weights for unknown attributes ['dog']")
    assert "'dog_handler'" in captured.err and "data:" not in captured.out  # refused before any photo is decoded


def test_precision_auto_takes_the_faster_where_bf16_is_native(monkeypatch):
    from lizaalert_tagger.training import trainer

    cpu = torch.device("cpu")
    monkeypatch.setattr(trainer, "use_bf16", lambda: True)
    assert trainer.choose_bf16("auto", cpu, lambda bf16: 0.05 if bf16 else 0.1)[0] is True
    fp32_wins, why = trainer.choose_bf16("auto", cpu, lambda bf16: 0.2 if bf16 else 0.1)
    assert fp32_wins is False and "10.0 image-passes/s in fp32" in why and "5.0 in bf16" in why
    monkeypatch.setattr(trainer, "use_bf16", lambda: False)
    never = lambda bf16: pytest.fail("nothing to measure without native bf16")  # noqa: E731
    assert trainer.choose_bf16("auto", cpu, never) == (False, "this CPU has no native bf16 (oneDNN): fp32")
    assert trainer.choose_bf16("bf16", cpu, never)[0] is True and trainer.choose_bf16("fp32", cpu, never)[0] is False


def test_sigterm_writes_a_checkpoint_and_resume_finishes_from_safetensors_init(tiny_set, tmp_path, seeded_weights):
    """A continuation from .safetensors weights, stopped by SIGTERM mid-run (exit 3, checkpoint written),
    then resumed with the same command: it ends with every planned image-pass done once."""
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import save_file

    init = tmp_path / "parent.safetensors"
    state = torch.load(seeded_weights, weights_only=True)
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, str(init))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "lizaalert_tagger.training.cli", "--images", str(tiny_set / "images"), "--labels",
           str(tiny_set / "labels.csv"), "--out", str(out), "--init", str(init), "--head-weight", "dog_handler=2",
           "--epochs", "40", "--final-epochs", "0", "--low-res", "32", "--batch-size", "4", "--precision", "fp32",
           "--threads", "1", "--jobs", "1", "--log-seconds", "0", "--checkpoint-minutes", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "train_log.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.exists() and '"step"' in log.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3, stderr
    assert "continue with the same command and --resume" in stderr and (out / "checkpoint.pt").exists()
    stopped = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    total_steps = stopped_total = None
    for line in log.read_text().splitlines():
        stopped_total = json.loads(line).get("total_passes", stopped_total)
    total_steps = stopped_total // 4
    assert 0 < stopped < total_steps
    # the checkpoint holds the exact one-cycle position: resuming goes on from that step
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"at step {stopped} of {total_steps}" in done.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["image_passes"] == total_steps * 4 and metrics["head_weights"] == {"dog_handler": 2.0}
    assert metrics["precision"] == "fp32" and metrics["init"] == str(init)


def test_a_run_stopped_by_a_signal_resumes_from_its_checkpoint_to_the_same_weights(tiny_set, tmp_path, monkeypatch):
    """A run stopped by SIGTERM writes checkpoint.pt (``Trainer.state_dict``: the keys that the runs in progress
    rely on) and ends unfinished; resumed from it, it ends with the weights of a run never stopped."""
    import dataclasses
    import os
    import signal

    from lizaalert_tagger.training import run
    from lizaalert_tagger.training.config import TrainConfig

    base = TrainConfig(images=tiny_set / "images", labels=tiny_set / "labels.csv", epochs=3, final_epochs=0, low_res=32,
                       batch_size=4, val_fraction=0.25, precision="fp32", threads=1, jobs=1, log_seconds=0,
                       checkpoint_minutes=0, ema_passes=16, head_weights={"hugs": 1.5})
    straight = run.train(dataclasses.replace(base, out=tmp_path / "straight"))
    assert straight.finished and straight.image_passes == straight.total_passes == 14 * 4  # 3 epochs of 18 photos

    progress = run._Progress.__call__

    def stop_after_step_6(self, trainer) -> None:
        progress(self, trainer)
        if trainer.step == 6:
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the run: stop after this step, write the checkpoint

    monkeypatch.setattr(run._Progress, "__call__", stop_after_step_6)
    out = tmp_path / "stopped"
    stopped = run.train(dataclasses.replace(base, out=out))
    assert not stopped.finished and stopped.image_passes == 24 and not (out / "weights.pt").exists()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert set(state) == {"step", "model", "optimizer", "ema", "generator", "torch_rng", "cuda_rng", "order", "cursor",
                          "phases", "train_seconds"}
    assert state["step"] == 6 and state["phases"] == [{"name": "32px", "mode": "resize", "steps": 14, "lr": 2e-3,
                                                        "size": 32, "crop": (0, 0)}]
    monkeypatch.undo()
    resumed = run.train(dataclasses.replace(base, out=out, resume=True))
    assert resumed.finished and resumed.metrics["image_passes"] == 56
    assert resumed.metrics["head_weights"] == {"hugs": 1.5} and resumed.metrics["shipped"] == straight.metrics["shipped"]
    expected = torch.load(tmp_path / "straight" / "weights.pt", weights_only=True)
    got = torch.load(out / "weights.pt", weights_only=True)
    for name, tensor in expected.items():
        assert torch.allclose(tensor.float(), got[name].float(), atol=1e-6), name
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [entry["image_passes"] for entry in log if "start" in entry] == [0, 24] and any("stopped" in e for e in log)
