"""``tagctl review-merge RUN_DIR A.csv B.csv ...``: reviewers' exports merged into RUN_DIR/reviewed.csv;
conflicts listed and left out, never resolved by a rule; exit 3 when anything was left out."""
from __future__ import annotations

import csv

import pytest

from conftest import make_field_run as make_run, read_details_csv


@pytest.fixture()
def run(tmp_path, spec):
    """A run folder of 6 photos (no report needed), and its served codes per photo."""
    folder, run_dir, fake = make_run(tmp_path, spec, 6, report=False)
    codes = {r["path"]: {a.key: int(r[f"{a.key}_code"]) for a in spec.attributes}
             for r in read_details_csv(run_dir / "details.csv")}
    return run_dir, codes


def _export(path, rows, spec):
    from lizaalert_tagger.common.labels_csv import write_labels

    write_labels(path, sorted(rows.items()), spec)
    return path


def _flipped(codes, key):
    return {**codes, key: 1 - codes[key]}


def _merge(*args):
    from lizaalert_tagger.client import tagctl

    return tagctl.main(["review-merge", *map(str, args)])


def test_agreeing_exports_merge_into_the_run_folder_in_the_seeds_format(run, tmp_path, spec, capsys):
    from lizaalert_tagger.common.labels_csv import read_labels

    run_dir, served = run
    photos = sorted(served)
    a = {photos[0]: _flipped(served[photos[0]], "car"), photos[1]: served[photos[1]]}
    b = {photos[0]: _flipped(served[photos[0]], "car"), photos[2]: _flipped(served[photos[2]], "hugs")}
    (run_dir / "review-conflicts.csv").write_text("stale\n", encoding="utf-8")
    assert _merge(run_dir, _export(tmp_path / "a.csv", a, spec), _export(tmp_path / "b.csv", b, spec)) == 0
    out, err = capsys.readouterr()
    assert err == "" and "3 photos from 2 exports (1 agreeing duplicates merged)" in out
    expected = {**a, **b}
    _export(tmp_path / "expected.csv", expected, spec)
    assert (run_dir / "reviewed.csv").read_bytes() == (tmp_path / "expected.csv").read_bytes()
    assert dict(read_labels(run_dir / "reviewed.csv", spec).pairs()) == expected
    assert not (run_dir / "review-conflicts.csv").exists(), "a list of conflicts that are gone"
    labels = (run_dir / "labels.csv").read_text(encoding="utf-8").splitlines()[0]
    assert (run_dir / "reviewed.csv").read_text(encoding="utf-8").splitlines()[0] == labels


def test_conflicting_exports_are_listed_left_out_and_exit_3(run, tmp_path, spec, capsys):
    run_dir, served = run
    photos = sorted(served)
    disputed, agreed = photos[3], photos[4]
    season = (served[disputed]["season"] + 1) % len(spec["season"].classes)
    a = {disputed: _flipped(served[disputed], "drone"), agreed: served[agreed]}
    b = {disputed: {**served[disputed], "season": season}, agreed: served[agreed]}
    exports = [_export(tmp_path / "anna.csv", a, spec), _export(tmp_path / "boris.csv", b, spec)]
    assert _merge(run_dir, *exports) == 3
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1 and disputed in lines[0] and "conflict" in lines[0]
    assert f"drone: {a[disputed]['drone']} in {exports[0]}, {served[disputed]['drone']} in {exports[1]}" in lines[0]
    assert f"season: {served[disputed]['season']} in {exports[0]}, {season} in {exports[1]}" in lines[0]
    assert "1 photos from 2 exports" in out and "1 conflicts" in out

    with open(run_dir / "reviewed.csv", encoding="utf-8", newline="") as f:
        merged = list(csv.reader(f, delimiter=";"))
    assert [row[0] for row in merged[1:]] == [agreed], "the disputed photo is left out, not decided"
    with open(run_dir / "review-conflicts.csv", encoding="utf-8", newline="") as f:
        conflicts = list(csv.DictReader(f, delimiter=";"))
    assert [(r["filename"], r["exports"], r["differs"]) for r in conflicts] == \
        [(disputed, str(exports[0]), "season, drone"), (disputed, str(exports[1]), "season, drone")]
    assert [int(conflicts[i][spec["drone"].column]) for i in (0, 1)] == [a[disputed]["drone"], b[disputed]["drone"]]

    # a coordinator's decision settles it: exit 0, the decided answer merged, the conflicts file gone
    decided = {disputed: b[disputed]}
    assert _merge(run_dir, *exports, "--decided", _export(tmp_path / "coordinator.csv", decided, spec)) == 0
    with open(run_dir / "reviewed.csv", encoding="utf-8", newline="") as f:
        rows = {r[0]: r[1:] for r in list(csv.reader(f, delimiter=";"))[1:]}
    assert rows[disputed] == [str(b[disputed][k]) for k in spec.keys] and agreed in rows
    assert not (run_dir / "review-conflicts.csv").exists()


def test_rows_of_another_run_and_unusable_rows_are_left_out_and_listed(run, tmp_path, spec, capsys):
    run_dir, served = run
    photo = sorted(served)[0]
    export = _export(tmp_path / "a.csv", {photo: served[photo], "elsewhere/IMG_9.jpg": served[photo]}, spec)
    with open(export, "a", encoding="utf-8") as f:
        f.write("broken.jpg;9;9;9;9;9;9;9;9;9;9;9\n")
    assert _merge(run_dir, export) == 3
    out, err = capsys.readouterr()
    assert "elsewhere/IMG_9.jpg" in err and "not a photo of this run" in err
    assert "line 4" in err and "broken.jpg" not in (run_dir / "reviewed.csv").read_text(encoding="utf-8")
    assert "1 unusable rows, 1 photos not in the run" in out


def test_nothing_is_written_when_the_run_or_an_export_is_not_what_it_should_be(run, tmp_path, spec, capsys):
    run_dir, served = run
    good = _export(tmp_path / "a.csv", {p: c for p, c in served.items()}, spec)
    assert _merge(tmp_path / "nowhere", good) == 1
    assert "no details.csv" in capsys.readouterr().err
    bad = tmp_path / "notes.csv"
    bad.write_text("what;ever\n1;2\n", encoding="utf-8")
    assert _merge(run_dir, good, bad) == 1
    err = capsys.readouterr().err
    assert err.startswith("tagctl: ") and "missing column(s)" in err and len(err.splitlines()) == 1
    assert not (run_dir / "reviewed.csv").exists()
