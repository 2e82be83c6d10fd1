"""The field bench's pieces for reduced copies (bench/reduction.py), without a server: the ways of sending, the
tag agreement of two runs, a process tree's CPU time, and the model-input sweep."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image


def test_send_modes_are_tagctl_flags_and_uploads():
    from lizaalert_tagger.bench.reduction import SendMode
    from lizaalert_tagger.client.upload import ORIGINAL, Upload

    copy, original = SendMode.parse(" 768 "), SendMode.parse("original")
    assert copy.flags == ["--send-size", "768"] and copy.upload == Upload(long_side=768)
    assert original.flags == ["--send-original"] and original.upload == ORIGINAL
    for bad in ("0", "big", "-5", ""):
        with pytest.raises(ValueError, match="expected 'original' or a copy's long side in px"):
            SendMode.parse(bad)


def test_tag_agreement_counts_every_attribute_of_the_photos_in_both(spec, tmp_path):
    from lizaalert_tagger.bench.reduction import tag_agreement
    from lizaalert_tagger.common.labels_csv import write_labels

    codes = {a.key: 0 for a in spec.attributes}
    a = [("x.jpg", codes), ("y.jpg", codes), ("only-a.jpg", codes)]
    b = [("x.jpg", codes), ("y.jpg", {**codes, "car": 1, "season": 2})]
    write_labels(tmp_path / "a.csv", a, spec)
    write_labels(tmp_path / "b.csv", b, spec)
    assert tag_agreement(tmp_path / "a.csv", tmp_path / "b.csv", spec) == (2 * len(spec.attributes) - 2, 2 * len(spec.attributes))


def test_server_cpu_counts_the_children_and_a_gone_process_counts_nothing():
    import psutil

    from lizaalert_tagger.bench.reduction import server_cpu_seconds

    busy = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\ntime.sleep(30)"
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {busy!r}])"])
    try:
        deadline = time.monotonic() + 20
        while server_cpu_seconds(parent.pid) < 0.4 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server_cpu_seconds(parent.pid) >= 0.4  # the busy grandchild's CPU, not only the idle parent's
    finally:
        for child in psutil.Process(parent.pid).children(recursive=True):
            child.kill()
        parent.kill()
        parent.wait()
    assert server_cpu_seconds(parent.pid) == 0.0


def test_the_sweep_shows_the_model_input_drifting_as_the_copy_shrinks(spec, tmp_path):
    from lizaalert_tagger.bench.reduction import input_sweep

    pixels = np.random.default_rng(1).normal(120, 30, (60, 80, 3)).clip(0, 255).astype(np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(pixels).resize((3200, 2400), Image.Resampling.BICUBIC).save(path, "JPEG", quality=92)
    rows = {(r["size"], r["quality"]): r for r in input_sweep([path], spec, sizes=(128, 1024), qualities=(20, 95))}
    assert set(rows) == {(128, 20), (128, 95), (1024, 20), (1024, 95)}
    assert rows[(1024, 95)]["mean_levels"] < 1.0 < rows[(128, 20)]["mean_levels"]
    assert rows[(1024, 95)]["bytes"] > rows[(1024, 20)]["bytes"] > rows[(128, 20)]["bytes"]
    assert rows[(1024, 95)]["bytes"] < path.stat().st_size / 3
