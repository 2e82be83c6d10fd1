"""EXIF time and place (lizaalert_tagger.common.exif): phones, drones, broken and hostile values, and
the generated scenes' EXIF (``--exif-fraction``) read back."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from conftest import (EXIF_ASCII as ASCII, EXIF_BYTE as BYTE, EXIF_LONG as LONG, EXIF_RATIONAL as RATIONAL,
                      EXIF_SHORT as SHORT, EXIF_SRATIONAL as SRATIONAL, exif_payload, jpeg_with_exif as jpeg_with,
                      make_photo)
from lizaalert_tagger.common.exif import PhotoExif, read_exif

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
    for photo in (make_photo("JPEG"), make_photo("PNG"), make_photo("WEBP")):
        assert read_exif(photo) == PhotoExif()
    path = tmp_path / "p.jpg"
    path.write_bytes(make_photo("JPEG"))
    assert read_exif(path) == PhotoExif()
    assert read_exif(b"not a photo").warnings == ("no EXIF read: not a photo (JPEG, PNG, WebP, BMP, TIFF or GIF)",)
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

    base = make_photo(size=(48, 32))
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
    from lizaalert_tagger.scenes.cli import main

    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x"), "--count", "1", "--exif-fraction", "1.5"])
