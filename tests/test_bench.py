"""A smoke run of the benchmark: tiny counts, only checks that it runs and prints every row (never timed)."""
import contextlib
import io

import pytest

pytestmark = pytest.mark.integration


def test_bench_prints_every_row(tmp_path, seeded_weights):
    from lizaalert_tagger import bench
    from lizaalert_tagger.archive import build_archive

    archive = build_archive(seeded_weights, "1.0", store=tmp_path / "store", file_name="lizaalert_tagger.mar")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.main(["--quick", "--archive", str(archive), "--concurrency", "1,4"]) == 0
    text = out.getvalue()
    for size in ("12mp", "1080p"):
        rows = [line for line in text.splitlines() if line.startswith(size)]
        assert sum("in-process limit" in r for r in rows) == 1
        assert sum("served (TorchServe)" in r for r in rows) == 2
        assert sum("seed-style baseline" in r for r in rows) == 2
        assert all(r.split()[-1] == "0" for r in rows), rows  # no errors
    assert "served/seed at c=4" in text and "ready after start" in text and "worker RSS" in text
