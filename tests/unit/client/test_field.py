"""Field tagging: EXIF time and place (lizaalert_tagger.common.exif), generated scenes with EXIF
(``--exif-fraction``), and ``tagctl tag-folder DIR --out RUN_DIR/`` (labels.csv, details.csv,
photos.geojson, failed.csv; resume and Ctrl-C).

The tag-folder tests run the real CLI in-process with ``TaggerClient.predict`` answering from the
generated scenes' own labels (``FakeTagger``): no server, and the tags are known. The test through
a real TorchServe is in test_report.py (it renders the report too).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import struct
import threading
from pathlib import Path

import pytest
from PIL import Image

from lizaalert_tagger.common.exif import PhotoExif, read_exif

# --- a raw EXIF writer: hostile values of any TIFF type, which Pillow's writer refuses ---------------------

BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED, SRATIONAL = 1, 2, 3, 4, 5, 7, 10


def _pack(typ: int, values) -> tuple[bytes, int]:
    if typ in (ASCII, BYTE, UNDEFINED):
        data = values if isinstance(values, bytes) else values.encode("latin-1") + b"\0"
        return data, len(data)
    fmt = {SHORT: ">H", LONG: ">L", RATIONAL: ">LL", SRATIONAL: ">ll"}[typ]
    return b"".join(struct.pack(fmt, *(v if isinstance(v, tuple) else (v,))) for v in values), len(values)


def exif_payload(ifd0=(), exif=None, gps=None) -> bytes:
    """``Exif\\0\\0`` + a big-endian TIFF: IFD0 and optional Exif and GPS IFDs of ``(tag, type, values)`` entries."""
    ifds = [list(ifd0)]
    for pointer, entries in ((0x8769, exif), (0x8825, gps)):
        if entries is not None:
            ifds[0].append((pointer, LONG, None))
            ifds.append(list(entries))

    def size(entries) -> int:
        data = 0
        for _, t, v in entries:
            n = 4 if v is None else len(_pack(t, v)[0])
            data += (n + 1) // 2 * 2 if n > 4 else 0
        return 2 + 12 * len(entries) + 4 + data

    offsets = [8]
    for entries in ifds[:-1]:
        offsets.append(offsets[-1] + size(entries))
    sub = iter(offsets[1:])
    ifds[0] = [(tag, t, [next(sub)] if v is None else v) for tag, t, v in ifds[0]]
    out = b"MM\0*" + struct.pack(">L", 8)
    for entries, offset in zip(ifds, offsets):
        entries = sorted(entries, key=lambda e: e[0])
        head, data = struct.pack(">H", len(entries)), b""
        data_at = offset + 2 + 12 * len(entries) + 4
        for tag, t, v in entries:
            packed, count = _pack(t, v)
            if len(packed) <= 4:
                head += struct.pack(">HHL", tag, t, count) + packed.ljust(4, b"\0")
            else:
                head += struct.pack(">HHLL", tag, t, count, data_at + len(data))
                data += packed + (b"\0" if len(packed) % 2 else b"")
        out += head + struct.pack(">L", 0) + data
    return b"Exif\0\0" + out


def plain_jpeg(size=(48, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (40, 120, 60)).save(buf, "JPEG")
    return buf.getvalue()


def jpeg_with(ifd0=(), exif=None, gps=None) -> bytes:
    from lizaalert_tagger.scenes.exif import insert_exif

    return insert_exif(plain_jpeg(), exif_payload(ifd0, exif, gps))


MOSCOW = [(1, ASCII, "N"), (2, RATIONAL, [(55, 1), (45, 1), (216, 10)]), (3, ASCII, "E"), (4, RATIONAL, [(37, 1), (37, 1), (3, 1)])]


def gps_with(*replace, without=()) -> list:
    entries = {e[0]: e for e in MOSCOW}
    entries.update({e[0]: e for e in replace})
    return [e for tag, e in entries.items() if tag not in without]


# --- reading EXIF ---------------------------------------------------------------------------------------------


def test_phone_photo_gives_time_with_offset_and_position():
    photo = jpeg_with(
        ifd0=[(0x010F, ASCII, "samsung"), (0x0110, ASCII, "SM-A525F"), (0x0132, ASCII, "2024:07:14 18:00:00")],
        exif=[(0x9003, ASCII, "2024:07:14 15:03:22"), (0x9011, ASCII, "+03:00")],
        gps=gps_with((5, BYTE, b"\x00"), (6, RATIONAL, [(1805, 10)])),
    )
    got = read_exif(photo)
    assert got.time == "2024-07-14T15:03:22+03:00"  # DateTimeOriginal, not the later DateTime
    assert got.latitude == pytest.approx(55 + 45 / 60 + 21.6 / 3600, abs=1e-7)
    assert got.longitude == pytest.approx(37 + 37 / 60 + 3 / 3600, abs=1e-7)
    assert got.altitude == 180.5 and got.camera == "samsung SM-A525F" and got.warnings == ()


def test_drone_photo_south_west_below_sea_level_and_datetime_fallback():
    """DJI writes the standard GPS IFD; S/W references and GPSAltitudeRef 1 make the values negative.
    Without DateTimeOriginal, DateTime (with OffsetTime) is the capture time."""
    photo = jpeg_with(
        ifd0=[(0x010F, ASCII, "DJI"), (0x0110, ASCII, "FC3411"), (0x0132, ASCII, "2023:12:31 23:59:59")],
        exif=[(0x9010, ASCII, "-03:00")],
        gps=[(0, BYTE, b"\x02\x03\x00\x00"), (1, ASCII, "S"), (2, RATIONAL, [(22, 1), (54, 1), (30, 1)]),
             (3, ASCII, "W"), (4, RATIONAL, [(43, 1), (12, 1), (0, 1)]), (5, BYTE, b"\x01"), (6, RATIONAL, [(305, 10)])],
    )
    got = read_exif(photo)
    assert got.time == "2023-12-31T23:59:59-03:00"
    assert got.latitude == pytest.approx(-(22 + 54 / 60 + 30 / 3600), abs=1e-7)
    assert got.longitude == pytest.approx(-(43 + 12 / 60), abs=1e-7)
    assert got.altitude == -30.5 and got.camera == "DJI FC3411" and got.warnings == ()


def test_decimal_degrees_and_integer_types_are_accepted():
    got = read_exif(jpeg_with(gps=gps_with((2, RATIONAL, [(557512345, 10000000)]), (4, SHORT, [37, 36, 0]))))
    assert got.latitude == pytest.approx(55.7512345) and got.longitude == pytest.approx(37.6) and not got.warnings


def test_photos_without_exif_are_fine(tmp_path):
    from conftest import make_photo

    for photo in (plain_jpeg(), make_photo("PNG"), make_photo("WEBP")):
        assert read_exif(photo) == PhotoExif()
    path = tmp_path / "p.jpg"
    path.write_bytes(plain_jpeg())
    assert read_exif(path) == PhotoExif()
    assert read_exif(b"not a photo").warnings == ("no EXIF read: not an image Pillow can open",)
    assert read_exif(tmp_path / "missing.jpg").warnings[0].startswith("cannot read: No such file")


HOSTILE = {
    # name: (EXIF, the field left empty, words of the warning)
    "latitude as text": ({"gps": gps_with((2, ASCII, "55.7"))}, "latitude", "expected a number"),
    "zero denominator": ({"gps": gps_with((2, RATIONAL, [(55, 0), (45, 1), (0, 1)]))}, "latitude", "zero denominator"),
    "0/0 seconds": ({"gps": gps_with((4, RATIONAL, [(37, 1), (36, 1), (0, 0)]))}, "longitude", "zero denominator"),
    "latitude 95": ({"gps": gps_with((2, RATIONAL, [(95, 1), (0, 1), (0, 1)]))}, "latitude", "out of range"),
    "longitude 200": ({"gps": gps_with((4, RATIONAL, [(200, 1), (0, 1), (0, 1)]))}, "longitude", "out of range"),
    "75 minutes": ({"gps": gps_with((2, RATIONAL, [(55, 1), (75, 1), (0, 1)]))}, "latitude", "minutes or seconds out of range"),
    "five values": ({"gps": gps_with((2, RATIONAL, [(1, 1)] * 5))}, "latitude", "has 5 values"),
    "negative degrees": ({"gps": gps_with((2, SRATIONAL, [(-55, 1), (45, 1), (0, 1)]))}, "latitude", "negative"),
    "reference X": ({"gps": gps_with((1, ASCII, "X"))}, "latitude", "expected N or S"),
    "no reference": ({"gps": gps_with(without=(3,))}, "longitude", "GPSLongitudeRef is missing"),
    "only longitude": ({"gps": gps_with(without=(1, 2))}, "latitude", "GPSLatitude is missing"),
    "no fix 0,0": ({"gps": gps_with((2, RATIONAL, [(0, 1)] * 3), (4, RATIONAL, [(0, 1)] * 3))}, "latitude", "without a fix"),
    "status void": ({"gps": gps_with((9, ASCII, "V"))}, "latitude", "measurement void"),
    "altitude ref 7": ({"gps": gps_with((5, BYTE, b"\x07"), (6, RATIONAL, [(100, 1)]))}, "altitude", "GPSAltitudeRef is 7"),
    "altitude 1e9 m": ({"gps": gps_with((6, RATIONAL, [(10**9, 1)]))}, "altitude", "out of range"),
    "altitude as text": ({"gps": gps_with((6, ASCII, "high"))}, "altitude", "expected a number"),
    "GPS pointer nowhere": ({"ifd0": [(0x8825, LONG, [999_999])]}, "latitude", "GPS IFD unreadable"),
    "huge date": ({"exif": [(0x9003, ASCII, "9" * 60_000)]}, "time", "(60000 characters)"),
    "impossible date": ({"exif": [(0x9003, ASCII, "2024:13:45 99:99:99")]}, "time", "not a valid date"),
    "date as number": ({"exif": [(0x9003, LONG, [1_700_000_000])]}, "time", "expected text"),
    "date with script": ({"exif": [(0x9003, ASCII, "<script>alert(1)</script>")]}, "time", "expected YYYY:MM:DD"),
    "control characters": ({"ifd0": [(0x010F, ASCII, "DJI\x1b[31m")]}, "camera", "control characters"),
    "huge camera name": ({"ifd0": [(0x0110, ASCII, "M" * 5000)]}, "camera", "longer than 64"),
}


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize("case", HOSTILE)
def test_broken_or_hostile_exif_is_a_warning_never_a_crash(case):
    where, field, words = HOSTILE[case]
    got = read_exif(jpeg_with(where.get("ifd0", ()), where.get("exif"), where.get("gps")))
    assert getattr(got, field) is None
    if field == "latitude":
        assert got.longitude is None  # no half a position
    assert any(words in w for w in got.warnings), got.warnings
    for warning in got.warnings:
        assert "\n" not in warning and len(warning) < 200, warning


def test_a_bad_offset_keeps_the_time_and_a_bad_original_falls_back_to_datetime():
    got = read_exif(jpeg_with(exif=[(0x9003, ASCII, "2024:01:02 03:04:05"), (0x9011, ASCII, "+99:00")]))
    assert got.time == "2024-01-02T03:04:05" and "time kept without it" in got.warnings[0]
    got = read_exif(jpeg_with(ifd0=[(0x0132, ASCII, "2024:05:06 07:08:09")], exif=[(0x9003, ASCII, "yesterday")]))
    assert got.time == "2024-05-06T07:08:09" and "DateTimeOriginal" in got.warnings[0]
    got = read_exif(jpeg_with(exif=[(0x9003, ASCII, "    :  :     :  :  ")]))  # EXIF's "unknown": no warning
    assert got == PhotoExif()


def test_random_exif_blocks_never_raise():
    """Hypothesis: random TIFF bodies and random values in the GPS and time tags."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from lizaalert_tagger.scenes.exif import insert_exif

    base = plain_jpeg()
    rational = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
    value = st.one_of(
        st.tuples(st.just(RATIONAL), st.lists(rational, min_size=1, max_size=4)),
        st.tuples(st.just(SRATIONAL), st.lists(st.tuples(st.integers(-2**31, 2**31 - 1), st.integers(-2**31, 2**31 - 1)), min_size=1, max_size=3)),
        st.tuples(st.just(ASCII), st.text(max_size=80).map(lambda t: t.encode("utf-8", "replace").replace(b"\0", b""))),
        st.tuples(st.just(BYTE), st.binary(min_size=1, max_size=6)),
        st.tuples(st.just(SHORT), st.lists(st.integers(0, 65535), min_size=1, max_size=3)),
    )
    entry = st.tuples(st.sampled_from([1, 2, 3, 4, 5, 6, 9]), value).map(lambda t: (t[0], t[1][0], t[1][1]))

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(entry, max_size=7, unique_by=lambda e: e[0]), st.binary(max_size=300),
           st.lists(st.tuples(st.sampled_from([0x9003, 0x9011]), value).map(lambda t: (t[0], t[1][0], t[1][1])),
                    max_size=2, unique_by=lambda e: e[0]))
    def check(gps, garbage, times):
        for payload in (exif_payload(exif=times, gps=gps), b"Exif\0\0MM\0*\0\0\0\x08" + garbage):
            got = read_exif(insert_exif(base, payload))
            assert isinstance(got, PhotoExif)
            if got.latitude is not None:
                assert -90 <= got.latitude <= 90 and -180 <= got.longitude <= 180
            assert all("\n" not in w and len(w) < 300 for w in got.warnings)

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's "Corrupt EXIF data" for the random bodies
        check()


# --- generated scenes with EXIF ----------------------------------------------------------------------------------


def test_scene_exif_is_deterministic_leaves_the_pixels_and_reads_back():
    from lizaalert_tagger import scenes
    from lizaalert_tagger.scenes.exif import expected_time, scene_exif, with_exif

    seen = {"gps": 0, "no gps": 0, "none": 0, "drone": 0}
    for index in range(16):
        data, plan = scenes.generate(4, index, 96, 128)
        assert with_exif(data, 4, index, plan.labels, 0.0) == data  # default off: the same bytes
        tagged = with_exif(data, 4, index, plan.labels, 0.6)
        assert tagged == with_exif(data, 4, index, plan.labels, 0.6)  # deterministic per image
        info = scene_exif(4, index, plan.labels, 0.6)
        if info is None:
            assert tagged == data
            seen["none"] += 1
            continue
        assert Image.open(io.BytesIO(tagged)).tobytes() == Image.open(io.BytesIO(data)).tobytes()
        got = read_exif(tagged)
        assert got.time == expected_time(info) and got.warnings == ()
        assert got.camera == f"{info.make} {info.model}"
        if info.latitude is None:
            assert not got.has_position
            seen["no gps"] += 1
        else:
            assert got.latitude == pytest.approx(info.latitude, abs=1e-6)
            assert got.longitude == pytest.approx(info.longitude, abs=1e-6)
            assert got.altitude == pytest.approx(info.altitude, abs=0.05)
            seen["gps"] += 1
        seen["drone"] += info.make == "DJI"
        hour = info.time.hour  # the time agrees with the drawn scene
        if plan.labels["time_of_day"] == 2:
            assert hour >= 22 or hour <= 3
        if plan.labels["season"] == 1:
            assert info.time.month in (12, 1, 2)
    assert seen["gps"] and seen["none"], seen


def test_make_dataset_exif_fraction_same_for_any_jobs(tmp_path, spec):
    from lizaalert_tagger import scenes

    one = tmp_path / "one"
    two = tmp_path / "two"
    scenes.make_dataset(one, 12, 8, 64, 96, jobs=1, spec=spec, progress=False, exif_fraction=0.5)
    scenes.make_dataset(two, 12, 8, 64, 96, jobs=2, spec=spec, progress=False, exif_fraction=0.5)
    names = sorted(p.name for p in (one / "images").iterdir())
    assert [(one / "images" / n).read_bytes() for n in names] == [(two / "images" / n).read_bytes() for n in names]
    with_time = sum(read_exif(one / "images" / n).time is not None for n in names)
    assert 2 <= with_time <= 10
    with pytest.raises(SystemExit):
        scenes.main(["--out", str(tmp_path / "x"), "--count", "1", "--exif-fraction", "1.5"])


# --- tag-folder --out RUN_DIR/ ------------------------------------------------------------------------------------


def field_photos(folder: Path, count: int, seed: int = 21, exif_fraction: float = 0.5, size=(160, 240)) -> dict[str, dict[str, int]]:
    """``count`` generated scenes under ``folder`` in nested sub-folders, some with EXIF; returns
    ``{relative path: labels}``."""
    from lizaalert_tagger import scenes
    from lizaalert_tagger.scenes.exif import with_exif

    truth = {}
    for index in range(count):
        data, plan = scenes.generate(seed, index, *size)
        relative = ("", "day1/", "day1/drone/")[index % 3] + f"IMG_{index:04d}.jpg"
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(with_exif(data, seed, index, plan.labels, exif_fraction))
        truth[relative] = plan.labels
    return truth


class FakeTagger:
    """``TaggerClient.predict`` answering with each photo's generated labels (found by its bytes) and a
    score per attribute that depends on the path only. ``hook(n, name)`` runs before the n-th answer."""

    def __init__(self, spec, folder: Path, truth: dict[str, dict[str, int]]) -> None:
        self.spec = spec
        self.by_bytes = {hashlib.sha256((folder / name).read_bytes()).hexdigest(): name for name in truth}
        self.truth = truth
        self.calls: list[str] = []
        self.lock = threading.Lock()
        self.hook = None

    def answer(self, name: str) -> dict:
        seed = int(hashlib.sha256(name.encode()).hexdigest(), 16)
        attributes = {}
        for i, a in enumerate(self.spec.attributes):
            cls = a.class_for(self.truth[name][a.key])
            attributes[a.key] = {"code": cls.code, "label": cls.label, "label_ru": cls.label_ru,
                                 "score": round(0.55 + ((seed >> (5 * i)) % 44) / 100, 6)}
        tags = [attributes[a.key]["label"] for a in self.spec.attributes if attributes[a.key]["code"]]
        return {"model": {"name": "lizaalert_tagger", "version": "9.9"}, "attributes": attributes, "tags": tags}

    def method(self):
        """A function to patch ``TaggerClient.predict`` with (an instance would not be bound)."""
        return lambda client, photo, model="lizaalert_tagger", version=None: self(client, photo, model, version)

    def __call__(self, client, photo: bytes, model="lizaalert_tagger", version=None) -> dict:
        name = self.by_bytes.get(hashlib.sha256(photo).hexdigest())
        with self.lock:
            self.calls.append(name)
            n = len(self.calls)
        if self.hook:
            self.hook(n, name)
        if name is None:
            from lizaalert_tagger.client.http import ClientError

            raise ClientError("predict on lizaalert_tagger failed: HTTP 400: not a photo this model reads", 400)
        return self.answer(name)


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


def read_details_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter=";"))


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
    from lizaalert_tagger.client import tagctl as cli

    monkeypatch.setattr(cli, "CHECKPOINT_S", 0.0)
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
    bad.write_bytes(jpeg_with(gps=gps_with((2, RATIONAL, [(55, 0), (0, 1), (0, 1)]))))
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
