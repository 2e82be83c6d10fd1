"""Labels CSV: the seed's submission format byte for byte, the training sheet's spellings,
bad rows reported, and rows whose files cannot be used split off with a one-line summary."""

from __future__ import annotations

import io

import pytest
from lizaalert_tagger.common.labels_csv import LabelsFormatError, read_labels, resolve_images, write_labels
from PIL import Image

SUBMISSION_HEADER = "filename;Время суток;Время года;Местность;Шерп;Авто;Вертолет;БПЛА;Кони;Кинолог;Водолаз;Объятия"
KEYS = (
    "time_of_day",
    "season",
    "terrain",
    "sherp",
    "car",
    "aviation",
    "drone",
    "horses",
    "dog_handler",
    "diver",
    "hugs",
)


def labels(*codes: int) -> dict[str, int]:
    return dict(zip(KEYS, codes, strict=True))


ROWS = [
    ("1.jpg", labels(1, 4, 0, 0, 1, 0, 0, 0, 0, 0, 0)),  # the example row of SEED.md
    ("IMG_0002.JPG", labels(2, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1)),
    ("фото 3.jpeg", labels(0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0)),
]


def test_round_trip_is_byte_exact(tmp_path, spec):
    path = tmp_path / "labels.csv"
    assert write_labels(path, ROWS, spec) == 3
    data = path.read_bytes()
    lines = data.decode("utf-8").split("\n")
    assert lines[0] == SUBMISSION_HEADER
    assert lines[1] == "1.jpg;1;4;0;0;1;0;0;0;0;0;0"
    assert not data.startswith(b"\xef\xbb\xbf") and b"\r" not in data
    table = read_labels(path, spec)
    assert table.pairs() == ROWS
    assert table.problems == []
    write_labels(tmp_path / "again.csv", table.pairs(), spec)
    assert (tmp_path / "again.csv").read_bytes() == data


def test_training_sheet_spelling_any_order_bom_crlf(tmp_path, spec):
    """Названия / Автомобили / Авиа, shuffled columns, an extra column, BOM and CRLF: same rows."""
    header = [
        "Кони",
        "Авиа",
        "Названия",
        "Время суток",
        "Объятия",
        "Местность",
        "Комментарий",
        "Шерп",
        "Автомобили",
        "Время года",
        "БПЛА",
        "Кинолог",
        "Водолаз",
    ]
    column_key = {
        "Кони": "horses",
        "Авиа": "aviation",
        "Время суток": "time_of_day",
        "Объятия": "hugs",
        "Местность": "terrain",
        "Шерп": "sherp",
        "Автомобили": "car",
        "Время года": "season",
        "БПЛА": "drone",
        "Кинолог": "dog_handler",
        "Водолаз": "diver",
    }
    lines = [";".join(header)]
    for name, row in ROWS:
        cells = [name if c == "Названия" else "note" if c == "Комментарий" else str(row[column_key[c]]) for c in header]
        lines.append(";".join(cells))
    path = tmp_path / "train.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")
    table = read_labels(path, spec)
    assert table.pairs() == ROWS
    assert table.problems == []
    assert table.ignored_columns == ["Комментарий"]


def test_comma_separated_header_is_detected(tmp_path, spec):
    path = tmp_path / "comma.csv"
    path.write_text(SUBMISSION_HEADER.replace(";", ",") + "\n1.jpg,1,4,0,0,1,0,0,0,0,0,0\n", encoding="utf-8")
    table = read_labels(path, spec)
    assert table.delimiter == ","
    assert table.pairs() == ROWS[:1]


def test_bad_rows_are_reported_not_fatal(tmp_path, spec):
    lines = [
        SUBMISSION_HEADER,
        "ok.jpg;1;4;0;0;1;0;0;0;0;0;0",  # line 2
        "code.jpg;1;4;5;0;1;0;0;0;0;0;0",  # line 3: terrain 5 does not exist
        "text.jpg;day;4;0;0;1;0;0;0;0;0;0",  # line 4: not a number
        "half.jpg;1;4;0;0;1.5;0;0;0;0;0;0",  # line 5: not an integer
        "short.jpg;1;4;0",  # line 6: too few cells
        ";1;4;0;0;1;0;0;0;0;0;0",  # line 7: no file name
        "ok.jpg;2;4;0;0;1;0;0;0;0;0;0",  # line 8: labelled twice
        "",  # blank lines are not rows
        "float.jpg;1.0;4;0;0;1;0;0;0;0;0;0",  # line 10: a spreadsheet's "1.0" is 1
        "trailing.jpg;1;4;0;0;1;0;0;0;0;0;0;",  # line 11: a trailing separator is fine
        "extra.jpg;1;4;0;0;1;0;0;0;0;0;0;1",  # line 12: but not an extra value
    ]
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    table = read_labels(path, spec)
    assert [r.filename for r in table.rows] == ["ok.jpg", "float.jpg", "trailing.jpg"]
    assert table.rows[1].labels["time_of_day"] == 1 and table.rows[1].line == 10
    problems = {p.line: p.reason for p in table.problems}
    assert sorted(problems) == [3, 4, 5, 6, 7, 8, 12]
    assert "Местность" in problems[3] and "5" in problems[3] and "(0, 1, 2)" in problems[3]
    assert "'day'" in problems[4] and "Время суток" in problems[4]
    assert "'1.5'" in problems[5]
    assert "expected 12 cells" in problems[6] and "got 4" in problems[6]
    assert "empty file name" in problems[7]
    assert "line 2" in problems[8]
    assert "expected 12 cells" in problems[12] and "got 13" in problems[12]
    assert str(table.problems[0]).startswith("line 3: ")


def test_missing_column_names_found_header_and_expected_columns(tmp_path, spec):
    path = tmp_path / "missing.csv"
    path.write_text(SUBMISSION_HEADER.replace(";Кони", "") + "\n", encoding="utf-8")
    with pytest.raises(LabelsFormatError) as info:
        read_labels(path, spec)
    message = str(info.value)
    assert "missing column(s) 'Кони'" in message
    assert "Found header ['filename', 'Время суток'" in message
    assert "'Авто' or 'Автомобили'" in message and "'filename' or 'Названия'" in message


def test_both_spellings_of_one_column_is_an_error(tmp_path, spec):
    path = tmp_path / "twice.csv"
    path.write_text(SUBMISSION_HEADER + ";Автомобили\n", encoding="utf-8")
    with pytest.raises(LabelsFormatError, match="2 columns for car"):
        read_labels(path, spec)


def test_not_utf8_is_a_clear_error(tmp_path, spec):
    path = tmp_path / "cp1251.csv"
    path.write_bytes(SUBMISSION_HEADER.encode("cp1251") + b"\n")
    with pytest.raises(LabelsFormatError, match="expected UTF-8"):
        read_labels(path, spec)


def test_write_refuses_bad_rows(tmp_path, spec):
    with pytest.raises(ValueError, match=r"terrain must be one of \(0, 1, 2\), got 3"):
        write_labels(tmp_path / "x.csv", [("a.jpg", labels(1, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0))], spec)
    partial = labels(1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)
    del partial["hugs"]
    with pytest.raises(ValueError, match=r"missing \['hugs'\]"):
        write_labels(tmp_path / "x.csv", [("a.jpg", partial)], spec)


def _image_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(buf, fmt)
    return buf.getvalue()


def test_resolve_images_splits_and_summarises(tmp_path, spec):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(_image_bytes("JPEG"))
    (images / "b.png").write_bytes(_image_bytes("PNG"))
    (images / "c.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")  # a video, named as such
    (images / "d.jpg").write_bytes(b"\x00\x00\x00\x18ftypqt  ")  # a video named .jpg
    names = ["a.jpg", "b.png", "c.mp4", "d.jpg", "gone.jpg", "clip.MOV"]
    path = tmp_path / "labels.csv"
    write_labels(path, [(n, labels(1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)) for n in names], spec)
    with open(path, "a", encoding="utf-8") as f:
        f.write("bad.jpg;9;1;1;0;0;0;0;0;0;0;0\n")
    resolved = resolve_images(read_labels(path, spec), images)
    assert [p.name for _, p in resolved.usable] == ["a.jpg", "b.png"]
    reasons = {s.row.filename: s.reason for s in resolved.skipped}
    assert reasons == {
        "c.mp4": "not an image",
        "d.jpg": "not an image",
        "gone.jpg": "missing",
        "clip.MOV": "not an image",
    }
    assert resolved.total == 7
    summary = resolved.summary()
    assert summary.startswith("skipped 5 of 7 rows: 1 bad labels (e.g. line 8: ")
    assert "1 missing files (e.g. gone.jpg)" in summary
    assert "3 not images (e.g. c.mp4, d.jpg, clip.MOV)" in summary
    assert "\n" not in summary


def test_resolve_images_all_usable(tmp_path, spec):
    (tmp_path / "a.jpg").write_bytes(_image_bytes("JPEG"))
    path = tmp_path / "labels.csv"
    write_labels(path, [("a.jpg", labels(1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0))], spec)
    resolved = resolve_images(read_labels(path, spec), tmp_path)
    assert len(resolved.usable) == 1 and resolved.summary() == "all 1 rows usable"
