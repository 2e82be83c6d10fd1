"""``tagctl tag-folder DIR --out RUN_DIR/``: labels.csv, details.csv, photos.geojson, failed.csv; resume,
Ctrl-C, checkpoints, ``--explain`` and the answers or paths that must not get in.

The tests run the real CLI in-process with ``TaggerClient.predict`` answering from the generated
scenes' own labels (conftest's ``FakeTagger``): no server, and the tags are known. The test through
a real TorchServe is in tests/integration/test_report_browser.py (it renders the report too).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from conftest import EXIF_ASCII, EXIF_RATIONAL, FakeTagger, field_photos, jpeg_with_exif, read_details_csv


def tagctl(*args: str) -> int:
    from lizaalert_tagger.client import tagctl as cli

    return cli.main(["--inference-url", "http://127.0.0.1:9", "--token", "t", "--retries", "0", *args])


@pytest.fixture()
def field(tmp_path, spec, monkeypatch):
    from lizaalert_tagger.client.http import TaggerClient

    folder = tmp_path / "photos"
    truth = field_photos(folder, 18)
    fake = FakeTagger(spec, folder, truth)
    monkeypatch.setattr(TaggerClient, "predict", fake.method())
    fake.folder, fake.run = folder, tmp_path / "run"
    return fake


def test_run_folder_has_the_seed_csv_details_geojson_and_failed(field, spec, tmp_path, capsys):
    import geojson

    from lizaalert_tagger.scenes.exif import expected_time, scene_exif

    assert tagctl("tag-folder", str(field.folder), "--out", f"{field.run}/", "--concurrency", "3", "--quiet") == 0
    assert sorted(p.name for p in field.run.iterdir()) == ["details.csv", "failed.csv", "labels.csv", "photos.geojson", "run.json"]
    names = sorted(field.truth)
    assert "day1/drone/IMG_0002.jpg" in names  # nested folders

    # labels.csv: byte for byte what --out FILE.csv writes
    assert tagctl("tag-folder", str(field.folder), "--out", str(tmp_path / "flat.csv"), "--quiet") == 0
    assert (field.run / "labels.csv").read_bytes() == (tmp_path / "flat.csv").read_bytes()
    assert (field.run / "labels.csv").read_text(encoding="utf-8").startswith("filename;Время суток;Время года;Местность;Шерп;")

    rows = read_details_csv(field.run / "details.csv")
    assert [r["path"] for r in rows] == names
    with_gps = []
    for row in rows:
        answer = field.answer(row["path"])
        for a in spec.attributes:
            assert row[f"{a.key}_code"] == str(field.truth[row["path"]][a.key])
            assert row[f"{a.key}_label"] == answer["attributes"][a.key]["label"]
            assert float(row[f"{a.key}_score"]) == pytest.approx(answer["attributes"][a.key]["score"], abs=1e-4)
        assert row["tags"] == ", ".join(answer["tags"])
        index = int(row["path"][-8:-4])
        info = scene_exif(21, index, field.truth[row["path"]], 0.5)
        assert row["time"] == (expected_time(info) if info else "")
        if info and info.latitude is not None:
            assert float(row["latitude"]) == pytest.approx(info.latitude, abs=1e-6)
            assert float(row["longitude"]) == pytest.approx(info.longitude, abs=1e-6)
            assert float(row["altitude"]) == pytest.approx(info.altitude, abs=0.05)
            with_gps.append(row["path"])
        else:
            assert row["latitude"] == row["longitude"] == row["altitude"] == ""
        assert row["exif_warnings"] == "" and row["model"] == "lizaalert_tagger 9.9"
    assert with_gps, "the generated set should have photos with GPS"

    collection = geojson.loads((field.run / "photos.geojson").read_text(encoding="utf-8"))
    assert collection.is_valid, collection.errors()
    assert collection["type"] == "FeatureCollection"
    assert [f["properties"]["path"] for f in collection["features"]] == with_gps
    for feature in collection["features"]:
        assert feature.is_valid and feature["geometry"]["type"] == "Point"
        lon, lat, alt = feature["geometry"]["coordinates"]
        row = next(r for r in rows if r["path"] == feature["properties"]["path"])
        assert (lon, lat, alt) == (float(row["longitude"]), float(row["latitude"]), float(row["altitude"]))
        assert set(feature["properties"]) >= {"path", "time", "tags", "scores"}
        assert set(feature["properties"]["scores"]) == set(spec.keys)

    assert (field.run / "failed.csv").read_text(encoding="utf-8") == "path;reason\n"
    assert json.loads((field.run / "run.json").read_text())["folder"] == str(field.folder.resolve())
    assert not list(field.run.glob(".*.tmp")), "temp files of the atomic writes are left behind"


def fake_explain(field, spec, fail: set[str] = frozenset(), status: int | None = None):
    """A ``TaggerClient.explain`` for the fake: the fake's answer plus a 4x4 map per attribute, hot in
    its bottom row; ``fail``: photos answered with a 400; ``status``: every call fails with it."""
    from lizaalert_tagger.client.http import ClientError

    asked = []

    def explain(client, photo, model="lizaalert_tagger", version=None, target=None, overlay=False):
        name = field.by_bytes[hashlib.sha256(photo).hexdigest()]
        asked.append(name)
        if status is not None:
            raise ClientError(f"explain on lizaalert_tagger failed: HTTP {status}", status)
        if name in fail:
            raise ClientError("explain on lizaalert_tagger failed: HTTP 400: not a photo this model reads", 400)
        answer = field.answer(name)
        answer["explanations"] = {key: {"value": value["code"], "label": value["label"], "target": "predicted",
                                        "shape": [4, 4], "map": [[0.0] * 4] * 3 + [[1.0] * 4]}
                                  for key, value in answer["attributes"].items()}
        return answer

    return explain, asked


def test_explain_writes_an_overlay_per_photo_with_objects_and_resumes(field, spec, monkeypatch, capsys):
    """--explain: an overlay for exactly the photos with an object found, shown by the report;
    photos that have one are not asked again; a failing photo is listed and retried next time."""
    from lizaalert_tagger.client.http import TaggerClient

    objects = [a.key for a in spec.attributes if a.is_binary]
    with_objects = sorted(n for n, codes in field.truth.items() if any(codes[k] == 1 for k in objects))
    assert 0 < len(with_objects) < len(field.truth), "the generated set should have photos with and without objects"
    broken = with_objects[0]
    explain, asked = fake_explain(field, spec, fail={broken})
    monkeypatch.setattr(TaggerClient, "explain", explain)
    assert tagctl("tag-folder", str(field.folder), "--out", f"{field.run}/", "--explain", "--quiet") == 1
    err = capsys.readouterr().err
    assert f"tagctl: explain {broken}: " in err and "1 explanations failed" in err
    made = sorted(str(p.relative_to(field.run / "explanations"))[:-4] for p in (field.run / "explanations").rglob("*.png"))
    assert made == with_objects[1:] and sorted(asked) == with_objects
    overlay = Image.open(field.run / "explanations" / f"{with_objects[1]}.png")
    assert overlay.format == "PNG" and overlay.width > overlay.height  # the photo and the legend beside it

    explain, asked = fake_explain(field, spec)
    monkeypatch.setattr(TaggerClient, "explain", explain)
    assert tagctl("tag-folder", str(field.folder), "--out", f"{field.run}/", "--explain", "--report", "--quiet") == 0
    assert asked == [broken]  # only the one without an overlay
    assert len(list((field.run / "report" / "overlays").glob("*.png"))) == len(with_objects)
    assert not list(field.run.rglob(".*.tmp"))


def test_a_crafted_details_row_cannot_put_an_overlay_outside_the_explanations_folder(field, spec, tmp_path, monkeypatch):
    """A details.csv row ``deep/../../../PHOTO`` where ``deep`` is a symlink three folders down: the
    photo it names is inside the photo folder, but the overlay path ``explanations/deep/../../../PHOTO.png``
    is not. --explain refuses the ``..`` (the same check the report makes) and writes nothing outside
    RUN_DIR/explanations/; the report lists the row as leaving the folder."""
    from lizaalert_tagger.client.http import TaggerClient

    explain, asked = fake_explain(field, spec)
    monkeypatch.setattr(TaggerClient, "explain", explain)
    assert tagctl("tag-folder", str(field.folder), "--out", f"{field.run}/", "--quiet") == 0
    objects = [a.key for a in spec.attributes if a.is_binary]
    photo = next(n for n, codes in sorted(field.truth.items()) if any(codes[k] == 1 for k in objects))
    (field.folder / "a" / "b" / "c").mkdir(parents=True)
    (field.folder / "deep").symlink_to(field.folder / "a" / "b" / "c", target_is_directory=True)
    crafted = f"deep/../../../{photo}"
    assert (field.folder / crafted).resolve() == (field.folder / photo).resolve()  # inside the photo folder
    details = field.run / "details.csv"
    row = next(line for line in details.read_text(encoding="utf-8").splitlines() if line.startswith(f"{photo};"))
    with open(details, "a", encoding="utf-8") as f:
        f.write(f"{crafted};{row.split(';', 1)[1]}\n")

    assert tagctl("tag-folder", str(field.folder), "--out", f"{field.run}/", "--explain", "--report", "--quiet") == 0
    explanations = field.run / "explanations"
    written = {p for p in tmp_path.rglob("*.png") if not p.is_relative_to(field.run / "report")}
    assert written and all(p.is_relative_to(explanations) and ".." not in p.parts for p in written), sorted(written)
    assert not (tmp_path / f"{Path(photo).name}.png").exists()
    assert asked.count(photo) == 1  # explained once, under its own path
    assert crafted in [r["path"] for r in read_details_csv(details)]  # kept, as every earlier row
    html = (field.run / "report" / "index.html").read_text(encoding="utf-8")
    assert "path leaves the photo folder" in html


def test_an_answer_of_another_model_fails_that_photo_and_is_retried(field, spec, capsys):
    """An answer with a code the spec does not have (or no attributes at all) is that photo's failure,
    with the reason in failed.csv; every other photo is written, and the next run asks again."""
    names = sorted(field.truth)
    wrong = field.answer(names[1])
    wrong["attributes"]["season"]["code"] = 7
    field.answers = {names[1]: wrong, names[4]: {"tags": []}}
    assert tagctl("tag-folder", str(field.folder), "--out", f"{field.run}/", "--quiet") == 1
    failed = {r["path"]: r["reason"] for r in read_details_csv(field.run / "failed.csv")}
    assert sorted(failed) == [names[1], names[4]]
    assert "season has code 7, expected one of (0, 1, 2, 3, 4)" in failed[names[1]]
    assert "expected an object with 'attributes'" in failed[names[4]]
    assert [r["path"] for r in read_details_csv(field.run / "details.csv")] == [n for n in names if n not in failed]
    assert "2 photos failed" in capsys.readouterr().out

    field.answers = {}
    calls = len(field.calls)
    assert tagctl("tag-folder", str(field.folder), "--out", f"{field.run}/", "--quiet") == 0
    assert sorted(field.calls[calls:]) == [names[1], names[4]]
    assert [r["path"] for r in read_details_csv(field.run / "details.csv")] == names


def test_explain_against_a_server_without_explanations_says_so_once(field, spec, monkeypatch, capsys):
    from lizaalert_tagger.client.http import TaggerClient

    explain, asked = fake_explain(field, spec, status=501)
    monkeypatch.setattr(TaggerClient, "explain", explain)
    assert tagctl("tag-folder", str(field.folder), "--out", f"{field.run}/", "--explain", "--quiet", "--concurrency", "1") == 1
    err = capsys.readouterr().err
    assert err.count("no explanations from the server") == 1 and "HTTP 501" in err
    assert len(asked) <= 2 and not (field.run / "explanations").exists()  # stops at the first answer
    assert (field.run / "details.csv").exists()  # the tags are written all the same
    assert tagctl("tag-folder", str(field.folder), "--out", str(field.run / "flat.csv"), "--explain") == 1
    assert "--explain needs --out RUN_DIR/" in capsys.readouterr().err


def test_failed_photos_are_listed_with_the_reason_and_retried(field, spec, monkeypatch, capsys):
    (field.folder / "day1" / "broken.jpg").write_bytes(b"not a jpeg at all")  # the "server" refuses it
    unreadable = field.folder / "IMG_0003.jpg"
    real_read_bytes = Path.read_bytes

    def read_bytes(self):
        if self == unreadable:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    field.run.mkdir()  # an existing folder needs no trailing /
    assert tagctl("tag-folder", str(field.folder), "--out", str(field.run), "--quiet") == 1
    err = capsys.readouterr()
    assert "tagctl: day1/broken.jpg: predict on lizaalert_tagger failed: HTTP 400" in err.err
    assert "tagctl: IMG_0003.jpg: cannot read: Permission denied" in err.err
    assert f"2 photos failed, listed in {field.run / 'failed.csv'}" in err.out
    failed = list(csv.reader(io.StringIO((field.run / "failed.csv").read_text(encoding="utf-8")), delimiter=";"))
    assert failed[0] == ["path", "reason"]
    assert [r[0] for r in failed[1:]] == ["IMG_0003.jpg", "day1/broken.jpg"]
    assert "Permission denied" in failed[1][1] and "HTTP 400" in failed[2][1]
    assert len(read_details_csv(field.run / "details.csv")) == 19 - 2

    monkeypatch.setattr(Path, "read_bytes", real_read_bytes)
    (field.folder / "day1" / "broken.jpg").unlink()
    calls = len(field.calls)
    assert tagctl("tag-folder", str(field.folder), "--out", str(field.run), "--quiet") == 0
    assert field.calls[calls:] == ["IMG_0003.jpg"], "only the failed photo is tried again"
    assert (field.run / "failed.csv").read_text(encoding="utf-8") == "path;reason\n"
    assert [r["path"] for r in read_details_csv(field.run / "details.csv")] == sorted(field.truth)


def test_ctrl_c_then_resume_in_a_run_folder(field, spec, capsys):
    """Ctrl-C on the 7th request: exit 130, every file has the rows done; the same command tags the
    rest. A photo in labels.csv but missing from details.csv (a hand edit, an old run) is tagged again."""
    def hook(n, name):
        if n == 7:
            raise KeyboardInterrupt

    field.hook = hook
    args = ("tag-folder", str(field.folder), "--out", f"{field.run}/", "--concurrency", "2", "--quiet")
    assert tagctl(*args) == 130
    assert "interrupted" in capsys.readouterr().err
    done = [r["path"] for r in read_details_csv(field.run / "details.csv")]
    labels = [r[0] for r in csv.reader(io.StringIO((field.run / "labels.csv").read_text(encoding="utf-8")), delimiter=";")][1:]
    assert 0 < len(done) < 18 and done == labels == sorted(done)
    first = len(field.calls)

    field.hook = None
    text = (field.run / "details.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    dropped = text.pop(1).split(";")[0]  # one photo's details row gone
    (field.run / "details.csv").write_text("".join(text), encoding="utf-8")
    assert tagctl(*args) == 0
    again = field.calls[first:]
    assert sorted(again) == sorted({*field.truth} - {*done} | {dropped})
    assert f"{len(done) - 1} photos already tagged in {field.run}/" in capsys.readouterr().out
    assert [r["path"] for r in read_details_csv(field.run / "details.csv")] == sorted(field.truth)

    assert tagctl(*args) == 0 and "nothing to tag" in capsys.readouterr().out
    assert tagctl(*args, "--restart") == 0 and len(field.calls) == first + len(again) + 18


def test_files_are_checkpointed_while_tagging(field, monkeypatch):
    """With CHECKPOINT_S = 0 the run folder is rewritten as photos come in: a crash loses little."""
    from lizaalert_tagger.client import tag_folder

    monkeypatch.setattr(tag_folder, "CHECKPOINT_S", 0.0)
    seen = []

    def hook(n, name):
        if n == 12:
            details = field.run / "details.csv"
            seen.append(len(read_details_csv(details)) if details.exists() else 0)

    field.hook = hook
    assert tagctl("tag-folder", str(field.folder), "--out", f"{field.run}/", "--concurrency", "1", "--quiet") == 0
    assert seen and seen[0] >= 8, seen


def test_hostile_exif_photo_is_tagged_with_a_warning(field, spec, capsys):
    bad = field.folder / "bad_exif.jpg"
    bad.write_bytes(jpeg_with_exif(gps=[(1, EXIF_ASCII, "N"), (2, EXIF_RATIONAL, [(55, 0), (0, 1), (0, 1)]),
                                        (3, EXIF_ASCII, "E"), (4, EXIF_RATIONAL, [(37, 1), (37, 1), (3, 1)])]))
    field.by_bytes[hashlib.sha256(bad.read_bytes()).hexdigest()] = "bad_exif.jpg"
    field.truth["bad_exif.jpg"] = field.truth["IMG_0000.jpg"]
    assert tagctl("tag-folder", str(field.folder), "--out", f"{field.run}/", "--quiet") == 0
    err = capsys.readouterr().err
    assert "warning: 1 photos have unusable EXIF fields (e.g. bad_exif.jpg: GPSLatitude has a zero denominator)" in err
    row = next(r for r in read_details_csv(field.run / "details.csv") if r["path"] == "bad_exif.jpg")
    assert row["exif_warnings"] == "GPSLatitude has a zero denominator" and row["latitude"] == ""


@pytest.mark.parametrize("case, expected", [
    ("out-dir-is-a-file", "is a file, not a folder"),
    ("report-with-csv", "--report needs --out RUN_DIR/"),
    ("details-not-ours", "cannot resume from"),
    ("report-no-details", "no details.csv in"),
    ("report-missing-dir", "does not exist"),
])
def test_run_folder_errors_are_one_line(case, expected, field, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    argv = {
        "out-dir-is-a-file": ["tag-folder", str(field.folder), "--out", f"{a_file}/"],
        "report-with-csv": ["tag-folder", str(field.folder), "--out", str(tmp_path / "x.csv"), "--report"],
        "details-not-ours": ["tag-folder", str(field.folder), "--out", f"{field.run}/"],
        "report-no-details": ["report", str(tmp_path)],
        "report-missing-dir": ["report", str(tmp_path / "nope")],
    }[case]
    if case == "details-not-ours":
        field.run.mkdir()
        (field.run / "details.csv").write_text("some;other\ncsv;file\n", encoding="utf-8")
    assert tagctl(*argv, "--quiet") == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("tagctl: "), err
    assert expected in err, err
    assert not field.calls, "checked before tagging"
