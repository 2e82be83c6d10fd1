"""``lizaalert-field-bench`` against a real TorchServe with tiny counts: reduced copies and originals side by
side, with the model-input sweep, the server's CPU, tag agreement and scores (only checks that every figure is
produced and plausible; never timed)."""
import json

import pytest

pytestmark = pytest.mark.integration


def test_field_bench_compares_reduced_copies_with_the_originals(model_store, tmp_path, capsys):
    from lizaalert_tagger.bench.field_bench import main
    from lizaalert_tagger.scenes import make_dataset

    scenes = tmp_path / "scenes"
    make_dataset(scenes, 6, 1001, min_size=2400, max_size=3000)
    code = main(["--photos", str(scenes / "images"), "--truth", str(scenes / "labels.csv"), "--send", "1024,original",
                 "--sweep", "2", "--concurrency", "2", "--requests", "4", "--min-ratio", "0",
                 "--archive", str(model_store / "lizaalert_tagger.mar"), "--work", str(tmp_path / "work")])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "the model's input made from a copy" in text and "CPU: " in text
    assert "c=2 copy 1024 px vs original: bytes " in text and "server CPU per photo" in text and "tags agree" in text
    result = json.loads((tmp_path / "work" / "field_bench.json").read_text())
    rows = {row["send"]: row for row in result["rows"]}
    assert set(rows) == {"1024", "original"}
    copy, original = rows["1024"], rows["original"]
    assert copy["bytes_per_photo"] < original["bytes_per_photo"]
    assert original["bytes_per_photo"] == pytest.approx(
        sum(p.stat().st_size for p in (scenes / "images").iterdir()) / 6)
    assert copy["server_cpu_s_per_photo"] > 0 and original["server_cpu_s_per_photo"] > 0
    same, total = copy["agreement"]
    assert total == 6 * 11 and same >= 0.8 * total  # seeded random weights: near 0.5 scores flip, most do not
    assert 0 <= copy["score"] <= 1 and 0 <= original["score"] <= 1
    assert all(r["hey_errors"] == 0 and r["tag_folder_rps"] > 0 for r in rows.values())
