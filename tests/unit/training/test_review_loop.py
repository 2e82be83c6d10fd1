"""The review loop's pieces (docs/review-loop.md): served answers' decision margins (the formula itself is
tested in tests/unit/common/test_certainty.py), the least-certain and random selections, the simulated
reviewer's corrections, the hold-back split and its command, and the simulation's config, results file,
tables and (slow) a whole tiny simulation."""
import json

import pytest
import torch

from lizaalert_tagger.common.labels_csv import read_labels, write_labels
from lizaalert_tagger.training.review_loop import (
    answer_margin,
    hold_back,
    least_certain,
    random_photos,
    simulated_review,
    split_main,
)


def _codes(spec, **given):
    """Every attribute's first code, but those given."""
    return {a.key: given.get(a.key, a.codes[0]) for a in spec.attributes}


@pytest.fixture(scope="module")
def tuned(spec):
    """The spec with thresholds away from 0.5, as training tunes them."""
    return spec.with_thresholds({"car": 0.8, "horses": 0.3})


def test_answer_margin_reads_served_answers(tuned):
    """Logits decoded as the server decodes them: a binary head at its threshold is the least certain photo."""
    spec = tuned
    from lizaalert_tagger.vision.answers import decode_logits

    a = spec["car"]
    logits = torch.full((2, spec.num_logits), -8.0)
    for c in spec.attributes:
        if not c.is_binary:
            logits[:, c.logits[0]] = 8.0  # the first class, certain
    logits[1, a.logits[0]] = torch.logit(torch.tensor(a.threshold))  # photo 1: on the threshold
    answers = decode_logits(logits, spec)
    margins = {"sure.jpg": answer_margin(answers[0], spec), "unsure.jpg": answer_margin(answers[1], spec)}
    assert margins["sure.jpg"] > 0.99 and margins["unsure.jpg"] < 1e-3
    assert least_certain(margins, 1) == ["unsure.jpg"]


def test_least_certain_orders_by_margin_then_name():
    margins = {"c.jpg": 0.5, "a.jpg": 0.1, "b.jpg": 0.1, "d.jpg": 0.9, "e.jpg": 0.0}
    assert least_certain(margins, 3) == ["e.jpg", "a.jpg", "b.jpg"]
    assert least_certain(margins, 5)[-1] == "d.jpg"
    for bad in (0, 6):
        with pytest.raises(ValueError, match="expected 1 to 5 photos"):
            least_certain(margins, bad)


def test_random_photos_are_seeded_and_nested():
    names = [f"{i:03d}.jpg" for i in range(100)]
    ten, twenty = random_photos(names, 10, seed=3), random_photos(names, 20, seed=3)
    assert ten == random_photos(list(reversed(names)), 10, seed=3)  # the input's order does not matter
    assert twenty[:10] == ten and len(set(twenty)) == 20 and set(twenty) <= set(names)
    assert random_photos(names, 10, seed=4) != ten
    assert ten != sorted(names)[:10]


def test_simulated_review_corrects_exactly_the_wrong_codes(spec):
    keys = spec.keys
    truth = {f"{i}.jpg": _codes(spec, **{keys[3]: i % 2}) for i in range(5)}
    predicted = {name: dict(codes) for name, codes in truth.items()}
    predicted["1.jpg"][keys[3]] = 0  # wrong: truth is 1
    predicted["3.jpg"][keys[0]] = spec.attributes[0].codes[1]  # wrong
    predicted["3.jpg"][keys[3]] = 0  # wrong
    predicted["4.jpg"][keys[4]] = 1  # wrong, but 4.jpg is not reviewed
    review = simulated_review(["3.jpg", "0.jpg", "1.jpg"], predicted, truth, spec)
    assert list(review.labels) == ["3.jpg", "0.jpg", "1.jpg"]  # only the reviewed photos, in review order
    assert all(review.labels[n] == truth[n] for n in review.labels)
    assert review.changed == {"3.jpg": [keys[0], keys[3]], "0.jpg": [], "1.jpg": [keys[3]]}
    assert (review.corrected_photos, review.corrected_tags) == (2, 3)
    assert review.rows()[0] == ("3.jpg", truth["3.jpg"])
    with pytest.raises(ValueError, match="no served answer or no truth"):
        simulated_review(["9.jpg"], predicted, truth, spec)


def test_hold_back_splits_disjointly_and_is_seeded(spec):
    rows = [(f"d/{i:02d}.jpg", _codes(spec)) for i in range(20)]
    train, held = hold_back(rows, 0.2, seed=1)
    assert len(held) == 4 and len(train) == 16
    assert sorted(train + held) == sorted(rows) and not {n for n, _ in train} & {n for n, _ in held}
    assert [n for n, _ in train] == sorted(n for n, _ in train)  # the input's order kept
    assert hold_back(rows, 0.2, seed=1) == (train, held) and hold_back(rows, 0.2, seed=2)[1] != held
    assert [len(part) for part in hold_back(rows[:2], 0.01)] == [1, 1]  # at least one photo each side
    with pytest.raises(ValueError, match="between 0 and 1"):
        hold_back(rows, 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        hold_back(rows[:1], 0.5)


def test_split_command_writes_train_and_held_back_csvs(tmp_path, spec, capsys):
    rows = [(f"day1/IMG_{i:04d}.jpg", _codes(spec, **{spec.keys[4]: i % 2})) for i in range(10)]
    write_labels(tmp_path / "reviewed.csv", rows, spec)
    assert split_main([str(tmp_path / "reviewed.csv"), "--out", str(tmp_path / "review"), "--hold-back", "0.3"]) == 0
    train, held = (read_labels(tmp_path / "review" / name, spec) for name in ("train.csv", "held_back.csv"))
    assert len(train) == 7 and len(held) == 3 and not train.problems
    assert sorted(train.pairs() + held.pairs()) == sorted(rows)
    assert "(7 photos)" in capsys.readouterr().out


def test_split_command_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "reviewed.csv").write_text("filename;Время суток\na.jpg;1\n", encoding="utf-8")
    assert split_main([str(tmp_path / "reviewed.csv"), "--out", str(tmp_path / "o")]) == 2
    assert split_main([str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("lizaalert-review-split: ") for line in err)
    assert "Время года" in err[0] and "missing.csv" in err[1]


# --- the simulation -------------------------------------------------------------------------------------------


def test_finetune_config_is_the_documented_lizaalert_train_command(tmp_path):
    """The simulation's fine-tune, as argv, parses back into the same config: docs/review-loop.md shows that command."""
    from lizaalert_tagger.training.cli import build_parser, config_from_args
    from lizaalert_tagger.training.review_sim import SimConfig, finetune_config

    config = finetune_config(tmp_path / "photos", tmp_path / "train.csv", tmp_path / "out", SimConfig(tmp_path, minutes=4))
    argv = config.to_argv()
    assert config_from_args(build_parser().parse_args(argv)) == config
    assert config.fit_seconds == 240 and config.low_res_mode == "full" and config.final_epochs == 0
    assert config.init.name == "weights.safetensors" and config.spec.name == "attributes.json"


def test_sim_config_refuses_what_it_cannot_run(tmp_path):
    from lizaalert_tagger.training.review_sim import SimConfig

    for bad in ({"ks": (0,)}, {"ks": (1001,)}, {"strategies": ("smart",)}, {"minutes": 0}, {"replay": -1}):
        with pytest.raises(ValueError):
            SimConfig(tmp_path, **bad)


def test_results_file_refuses_another_setting_and_survives_rewrites(tmp_path):
    from lizaalert_tagger.training.review_sim import Results

    results = Results(tmp_path / "results.json")
    results.require("setting", {"weather": "fog"})
    results.data["runs"] = {"a": 1}
    results.save()
    again = Results(tmp_path / "results.json")
    assert again.data["runs"] == {"a": 1}
    again.require("setting", {"weather": "fog"})
    with pytest.raises(ValueError, match="another setting"):
        again.require("setting", {"weather": "dim"})
    (tmp_path / "results.json").write_text("{half", encoding="utf-8")
    with pytest.raises(ValueError, match="not JSON"):
        Results(tmp_path / "results.json")


def _score(value):
    return {"score": value, "count": 7, "f1": {}}


def test_tables_show_every_run_before_and_after():
    from lizaalert_tagger.training.review_sim import tables

    run = {"k": 50, "strategy": "least", "replay": 0, "corrected_tags": 61, "corrected_photos": 44,
           "after": {"new": _score(0.8124), "ordinary": _score(0.901)},
           "after_tuned_thresholds": {"new": _score(0.7999)}, "train_seconds": 300.0, "epochs": 9, "precision": "fp32"}
    data = {"machine": {"cpu": "Some CPU", "cores": 2}, "before": {"new": _score(0.6), "ordinary": _score(0.95)},
            "survey": {"fog": {"count": 300, "score": 0.61}},
            "runs": {"b": {**run, "strategy": "random", "after": {"new": _score(0.7), "ordinary": _score(0.93)}}, "a": run}}
    text = tables(data)
    assert "| fog | 300 | 0.610 |" in text
    least_row, random_row = (line for line in text.splitlines() if line.startswith("| 50 "))
    assert "least certain" in least_row and "random" in random_row  # ordered by K, then strategy
    assert "0.600 → 0.812 (+0.212)" in least_row and "0.950 → 0.901 (-0.049)" in least_row
    assert "| 0.800 |" in least_row and "5.0 min, 9 epochs, fp32" in least_row and "61 (44)" in least_row
    assert "Some CPU, 2 cores" in text and "7 scenes" in text


@pytest.mark.slow
def test_a_tiny_simulation_runs_resumes_and_keeps_its_results(tmp_path, seeded_weights, spec, capsys):
    """Scenes, tagging, a review, a fine-tune of seconds with replay, scoring; a second call does nothing new."""
    from lizaalert_tagger.common.spec import DEFAULT_SPEC_PATH
    from lizaalert_tagger.training.review_sim import SimConfig, simulate

    config = SimConfig(tmp_path, weights=seeded_weights, spec=DEFAULT_SPEC_PATH, pool=6, test=3, ks=(3,),
                       strategies=("least",), replay=2, minutes=0.01, batch_size=4, jobs=1)
    data = simulate(config)
    run = data["runs"]["K=3 least certain + 2 ordinary"]
    answers = json.loads((tmp_path / "pool" / "answers.json").read_text())
    assert len(answers) == 6 and run["photos"] == least_certain({n: answer_margin(a, spec) for n, a in answers.items()}, 3)
    reviewed = read_labels(tmp_path / "runs" / "k3-least-replay2" / "reviewed.csv")
    assert [r.filename.split("/")[0] for r in reviewed.rows] == ["new"] * 3 + ["replay"] * 2
    truth = dict(read_labels(tmp_path / "pool" / "labels.csv").pairs())
    assert all(r.labels == truth[r.filename.removeprefix("new/")] for r in reviewed.rows[:3])
    assert run["train_photos"] + 1 == 5 and set(run["after"]) == {"new", "ordinary"}  # one photo validates
    assert data["before"]["new"]["count"] == 3 and json.loads((tmp_path / "results.json").read_text())["runs"]
    capsys.readouterr()
    simulate(config)  # everything done: nothing trained again
    assert "lizaalert-train" not in capsys.readouterr().out
