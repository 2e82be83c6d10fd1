"""Smoke runs of the benchmarks against a real TorchServe: tiny counts, only checks that they run and
print every row (never timed)."""
import contextlib
import io
import json
import re

import pytest

pytestmark = pytest.mark.integration


def test_bench_prints_every_row(model_store):
    from lizaalert_tagger.bench import bench

    archive = model_store / "lizaalert_tagger.mar"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.main(["--quick", "--archive", str(archive), "--concurrency", "1,4"]) == 0
    text = out.getvalue()
    rows = {}
    for line in text.splitlines():
        rows.setdefault(line.split(" ", 1)[0], []).append(line)
    for size in ("12mp", "1080p", "12mp-heavy", "20mp"):
        table = [r for r in rows[size] if "in-process" in r or "served (" in r or "baseline" in r or " explain " in r]
        assert sum("in-process limit" in r for r in table) == 1
        assert sum("served (TorchServe)" in r for r in table) == 2
        assert sum("seed-style baseline" in r for r in table) == (2 if size in ("12mp", "1080p") else 0)
        explained = 2 if size in ("12mp", "1080p") else 0  # layer3 and layer4
        assert sum("explain all 11 layer" in r for r in table) == sum("explain 1 object layer" in r for r in table) == explained
        assert all(r.split()[-1] == "0" for r in table), table  # no errors
    # every row names the photo's pixels and bytes; the heavy photos are as heavy as the issue's
    megabytes = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[0] in bench.SIZES and parts[2].endswith("MB"):
            assert parts[1] == "x".join(map(str, bench.SIZES[parts[0]]))
            megabytes[parts[0]] = float(parts[2][:-2])
    assert set(megabytes) == {"12mp", "1080p", "12mp-heavy", "20mp"}
    assert 3.5 <= megabytes["12mp-heavy"] <= 5 and 8 <= megabytes["20mp"] <= 10, megabytes
    ratios = text.split("ratios (targets in parentheses)")[1]
    for size in ("12mp", "1080p", "12mp-heavy", "20mp"):
        line = next(r for r in ratios.splitlines() if r.startswith(f"  {size} "))
        assert "served/in-process at c=4 = " in line, line
    assert "served/seed at c=4" in ratios and "ready after start" in ratios
    assert "CPU: " in text and "explain (layer3, " in ratios and "explain (layer4, " in ratios
    assert "one object " in ratios and "all 11 " in ratios
    served = next(r for r in ratios.splitlines() if "served explain / predict" in r)
    # the bench's photo with one object found is the shipped model's; these self-made weights may find more
    assert re.search(r": [1-9]\d* map\(s\)\): \d+\.\d\dx ", served) and "target=all" in served, served
    assert "after explanations (int8 + fp32 loaded)" in ratios


def test_profile_of_a_short_load(model_store, tmp_path, capsys):
    """A real TorchServe under hey for a few seconds: CPU per process, and py-spy inside both workers."""
    from lizaalert_tagger.bench.profile import main

    out = tmp_path / "profile.json"
    assert main(["--photo", "1080p", "--archive", str(model_store / "lizaalert_tagger.mar"), "--concurrency", "4",
                 "--warmup", "3", "--seconds", "4", "--no-jfr", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "frontend (Java)" in text and "load generator (hey)" in text and "CPU: " in text
    result = json.loads(out.read_text())
    assert result["hey"]["rps"] > 0 and result["hey"]["errors"] == 0
    assert result["cores_used"]["frontend (Java)"] > 0
    workers = [name for name in result["cores_used"] if name.startswith("worker ")]
    assert len(workers) == 2 and all(result["cores_used"][w] > 0 for w in workers)
    assert len(result["workers"]) == 2
    for summary in result["workers"].values():  # py-spy saw the handler decode and run the network
        assert summary["samples"] > 0
        assert "decode (Pillow)" in summary["share"] and "network (int8 model)" in summary["share"], summary["share"]
