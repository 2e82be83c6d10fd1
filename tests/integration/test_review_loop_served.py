"""The review loop end to end on a tiny run (docs/review-loop.md), through a real TorchServe: tag a folder into
a run folder -> the test writes reviewed.csv (the least certain photos, corrected from their truth, as a reviewer's
export) -> hold back part of it -> fine-tune a few steps from the served weights -> archive version 1.1 ->
register it beside 1.0 without making it the default -> predict with it, and score both versions on the
held-back photos."""
import json

import pytest

from conftest import field_photos, run_tagctl, start_server

pytestmark = pytest.mark.integration


def _answer(server, *args) -> dict:
    code, out = run_tagctl(server, "predict", "--json", *args)
    assert code == 0, out
    return json.loads(out.splitlines()[0])


def _held_back_score(server, tmp_path, photos, held_back, version) -> dict:
    predicted = tmp_path / f"predicted-{version}.csv"
    code, out = run_tagctl(server, "tag-folder", str(photos), "--out", str(predicted), "--version", version, "--quiet")
    assert code == 0, out
    code, out = run_tagctl(server, "score", str(predicted), str(held_back), "--json")
    assert code == 0, out
    return json.loads(out)


def test_tag_review_finetune_archive_register_predict(tmp_path, spec, seeded_weights):
    from lizaalert_tagger.client.run_folder import read_details
    from lizaalert_tagger.common.labels_csv import read_labels, write_labels
    from lizaalert_tagger.ops.archive import build_archive
    from lizaalert_tagger.ops.archive import main as archive_main
    from lizaalert_tagger.training.cli import main as train_main
    from lizaalert_tagger.common.certainty import decision_margin
    from lizaalert_tagger.training.review_loop import least_certain, simulated_review, split_main

    photos = tmp_path / "photos"
    truth = field_photos(photos, 12, seed=23, exif_fraction=0.0, size=(240, 320))
    store = tmp_path / "store"
    build_archive(seeded_weights, "1.0", store=store, file_name="lizaalert_tagger.mar", calibration=photos)
    server = start_server(tmp_path / "run", store)
    try:
        run = tmp_path / "run_dir"
        code, out = run_tagctl(server, "tag-folder", str(photos), "--out", f"{run}/", "--quiet")
        assert code == 0, out
        records, problems = read_details(run / "details.csv", spec)
        assert set(records) == set(truth) and not problems

        # the reviewer's export: the 8 least certain photos, every code as the truth has it
        margins = {name: decision_margin(r.codes, r.scores, spec) for name, r in records.items()}
        reviewed = least_certain(margins, 8)
        review = simulated_review(reviewed, {n: r.codes for n, r in records.items()}, truth, spec)
        write_labels(run / "reviewed.csv", review.rows(), spec)
        assert split_main([str(run / "reviewed.csv"), "--out", str(run / "review"), "--hold-back", "0.25"]) == 0
        held_back = read_labels(run / "review" / "held_back.csv", spec)
        assert len(held_back) == 2 and {r.filename for r in held_back.rows} <= set(reviewed)

        trained = tmp_path / "trained"
        assert train_main(["--init", str(seeded_weights), "--images", str(photos),
                           "--labels", str(run / "review" / "train.csv"), "--out", str(trained),
                           "--low-res-mode", "full", "--epochs", "1", "--final-epochs", "0", "--batch-size", "4",
                           "--lr", "5e-4", "--jobs", "1", "--precision", "fp32", "--checkpoint-minutes", "0"]) == 0
        metrics = json.loads((trained / "metrics.json").read_text())
        assert metrics["train_photos"] + metrics["validation_photos"] == 6 and metrics["init"] == str(seeded_weights)

        assert archive_main(["--weights", str(trained / "weights.pt"), "--spec", str(trained / "attributes.json"),
                             "--version", "1.1", "--store", str(store), "--calibration", str(photos)]) == 0
        code, out = run_tagctl(server, "models", "register", "lizaalert_tagger_1.1.mar", "--workers", "1")
        assert code == 0, out

        photo = str(photos / reviewed[0])
        default, old, new = _answer(server, photo), _answer(server, "--version", "1.0", photo), \
            _answer(server, "--version", "1.1", photo)
        assert default["model"]["version"] == "1.0"  # registering 1.1 left the default alone
        assert new["model"]["version"] == "1.1" and old["model"]["version"] == "1.0"
        old_scores, new_scores = ([answer["attributes"][key]["score"] for key in spec.keys] for answer in (old, new))
        assert old_scores != new_scores  # the fine-tuned weights answer differently

        before, after = (_held_back_score(server, tmp_path, photos, run / "review" / "held_back.csv", v)
                         for v in ("1.0", "1.1"))
    finally:
        server.stop()
    assert before["count"] == after["count"] == 2
    assert 0.0 <= before["score"] <= 1.0 and 0.0 <= after["score"] <= 1.0
