"""lizaalert-learning-curve on a tiny run: every snapshot scored (served size and an extra size), reused, plotted."""
import json

import torch


def test_curve_of_snapshots(tmp_path, seeded_weights):
    from lizaalert_tagger.training import learning_curve
    from lizaalert_tagger.scenes import make_dataset

    for name, seed in (("cal", 21), ("held", 22)):
        make_dataset(tmp_path / name, 10, seed, max_size=320)
    run = tmp_path / "run"
    (run / "snapshots").mkdir(parents=True)
    state = torch.load(seeded_weights, weights_only=True)
    torch.save(state, run / "snapshots" / "passes_00000064.pt")
    torch.save({k: v * 0.5 if v.is_floating_point() else v for k, v in state.items()}, run / "snapshots" / "passes_00000128.pt")
    (run / "train_log.jsonl").write_text(json.dumps({"snapshot": "passes_00000064.pt", "image_passes": 64, "seconds": 1.5}) + "\n")
    (run / "metrics.json").write_text(json.dumps({"batch_size": 32, "phases": [{"name": "128px", "steps": 3}, {"name": "256px-final", "steps": 1}]}))
    args = ["--run", str(run), "--calibration", str(tmp_path / "cal"), "--held-out", str(tmp_path / "held"),
            "--also-size", "64", "--png", str(tmp_path / "curve.png"), "--jobs", "1"]
    assert learning_curve.main(args) == 0
    points = json.loads((run / "curve.json").read_text())
    assert [p["image_passes"] for p in points] == [64, 128]
    assert points[0]["train_seconds"] == 1.5
    for p in points:
        assert 0 <= p["score"] <= 1 and set(p["f1"]) >= {"car", "season"}
        assert set(p["at_size"]) == {"64"} and 0 <= p["at_size"]["64"]["score"] <= 1
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert learning_curve.phase_boundaries(run) == [(96, "end of 128px")]
    mtime = (run / "curve.json").stat().st_mtime_ns
    assert learning_curve.main(args) == 0  # every snapshot already scored: nothing is evaluated again
    assert (run / "curve.json").stat().st_mtime_ns == mtime


def test_replot_from_committed_curve_and_refuse_unscored(tmp_path, capsys):
    """docs/learning_curve/ holds only curve.json: it re-plots without scenes; unscored snapshots need scenes."""
    from lizaalert_tagger.training import learning_curve

    run = tmp_path / "run"
    run.mkdir()
    f1 = {k: 0.5 for k in ("time_of_day", "season", "terrain", "sherp", "car")}
    (run / "curve.json").write_text(json.dumps([{"snapshot": "passes_00000064.pt", "image_passes": 64, "score": 0.5, "f1": f1}]))
    assert learning_curve.main(["--run", str(run), "--png", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    (run / "snapshots").mkdir()
    torch.save({}, run / "snapshots" / "passes_00000128.pt")
    assert learning_curve.main(["--run", str(run)]) == 2
    assert "1 snapshots are not scored yet" in capsys.readouterr().err


def test_another_runs_series_is_drawn_beside_the_curve(tmp_path, monkeypatch):
    """RUN/series.json (a continuation's points, its passes counted from the parent's) is drawn as its own
    line: a score line and one line per object it names, with its label."""
    import matplotlib.axes

    from lizaalert_tagger.training import learning_curve

    run = tmp_path / "run"
    run.mkdir()
    f1 = {k: 0.5 for k in ("time_of_day", "season", "terrain", "sherp", "car")}
    (run / "curve.json").write_text(json.dumps([{"snapshot": "passes_00000064.pt", "image_passes": 64, "score": 0.5, "f1": f1}]))
    points = [{"image_passes": 100 + 8 * i, "score": 0.9 + 0.01 * i, "f1": {**f1, "car": 0.6 + 0.1 * i}} for i in range(3)]
    (run / "series.json").write_text(json.dumps([{"label": "continuation, CPU", "objects": ["car"], "points": points}]))
    drawn = []
    original = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot",
                        lambda self, *args, **kwargs: drawn.append((list(args[0]), list(args[1]), kwargs.get("label"))) or original(self, *args, **kwargs))
    assert learning_curve.main(["--run", str(run), "--png", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert ([100, 108, 116], [0.9, 0.91, 0.92], "score: continuation, CPU") in drawn
    assert ([100, 108, 116], [0.6, 0.7, 0.8], "car: continuation") in drawn
