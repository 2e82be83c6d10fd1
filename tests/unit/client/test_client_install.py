"""A client-only install, as a volunteer's laptop has it: the wheel and its declared dependencies in a
clean venv, no checkout, no torch. ``tagctl --help``, ``score`` and ``tag-folder`` (against a fake
server) and ``report`` work from a folder outside the checkout.

The wheel is built from a copy of the sources (links kept: the spec in the package is a link to
handler/attributes.json, which the wheel must carry as a file) and installed with pip from the
configured package index.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, make_photo

pytestmark = pytest.mark.slow  # building and installing the wheel: 20-60 s on a busy machine


def _run(command: list, cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The wheel installed into a fresh ``python3.11 -m venv``: its tagctl, and an environment without
    the checkout (no LIZAALERT_* settings, no PYTHONPATH)."""
    tmp = tmp_path_factory.mktemp("client_install")
    source, wheels, venv = tmp / "source", tmp / "wheels", tmp / "venv"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "*.pyc")
    shutil.copytree(ROOT / "src", source / "src", symlinks=True, ignore=skip)
    (source / "handler").mkdir()
    shutil.copy(ROOT / "handler" / "attributes.json", source / "handler" / "attributes.json")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    assert (source / "src" / "lizaalert_tagger" / "common" / "attributes.json").is_symlink()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheels, source], tmp)
    [wheel] = wheels.glob("lizaalert_tagger-*.whl")
    python = shutil.which("python3.11") or sys._base_executable
    _run([python, "-m", "venv", venv], tmp)
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel], tmp)
    outside = tmp / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIZAALERT_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {"tagctl": venv / "bin" / "tagctl", "python": venv / "bin" / "python", "cwd": outside, "env": env}


def tagctl(installed: dict, *args) -> subprocess.CompletedProcess:
    return _run([installed["tagctl"], *args], installed["cwd"], timeout=120, env=installed["env"])


def test_the_installed_client_has_no_torch_and_help_names_no_local_path(installed):
    probe = "import importlib.util as u; print(u.find_spec('torch') is None, u.find_spec('lizaalert_tagger').origin)"
    no_torch, origin = _run([installed["python"], "-c", probe], installed["cwd"], env=installed["env"]).stdout.split()
    assert no_torch == "True" and not origin.startswith(str(ROOT)), origin
    for command in ([], ["tag-folder"], ["score"], ["report"]):
        text = tagctl(installed, *command, "--help").stdout
        assert "usage: tagctl" in text
        assert str(ROOT) not in text and str(installed["cwd"]) not in text, text


def test_the_installed_client_scores_with_the_spec_it_carries(installed, spec):
    from lizaalert_tagger.common.labels_csv import write_labels
    from lizaalert_tagger.common.scoring import score_codes

    truth = {f"{i}.jpg": {a.key: a.codes[(i * (j + 1)) % len(a.codes)] for j, a in enumerate(spec.attributes)} for i in range(6)}
    predicted = {name: {**codes, "car": 1 - codes["car"]} if name == "2.jpg" else codes for name, codes in truth.items()}
    write_labels(installed["cwd"] / "truth.csv", sorted(truth.items()), spec)
    write_labels(installed["cwd"] / "predicted.csv", sorted(predicted.items()), spec)
    score = json.loads(tagctl(installed, "score", "predicted.csv", "truth.csv", "--json").stdout)
    names = sorted(truth)
    expected = score_codes({a.key: [truth[n][a.key] for n in names] for a in spec.attributes},
                           {a.key: [predicted[n][a.key] for n in names] for a in spec.attributes}, spec)
    assert score == json.loads(json.dumps(expected.to_dict())) and score["score"] < 1


def test_the_installed_client_tags_a_folder_and_reports_it(installed, fake_torchserve, spec):
    from lizaalert_tagger.common.labels_csv import read_labels

    photos = installed["cwd"] / "photos"
    for i in range(5):
        path = photos / ("sub" if i % 2 else "") / f"IMG_{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make_photo(color=(10 * i, 100, 60)))
    result = tagctl(installed, "--inference-url", fake_torchserve.url, "--token", "t", "tag-folder", "photos",
                    "--out", "run/", "--quiet", "--report")
    assert "tagged 5 of 5 photos" in result.stdout and "report: run/report/index.html (5 photos, 5 new thumbnails)" in result.stdout
    run = installed["cwd"] / "run"
    table = read_labels(run / "labels.csv", spec)
    assert [r.filename for r in table.rows] == ["IMG_0.jpg", "IMG_2.jpg", "IMG_4.jpg", "sub/IMG_1.jpg", "sub/IMG_3.jpg"]
    assert all(r.labels["time_of_day"] == 1 for r in table.rows)  # the fake server's answer: day
    assert len(fake_torchserve.bodies()) == 5
    assert (run / "report" / "index.html").stat().st_size > 0
