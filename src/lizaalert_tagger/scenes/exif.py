"""EXIF time and GPS for generated scenes, as phones and DJI drones write them (``--exif-fraction``).

Whether image ``i`` of data set ``seed`` gets EXIF, and what, draws only from its own stream
``stream_rng(seed, i, STREAM_EXIF)``: the same for any ``--jobs``, and the pixels are not
touched (the EXIF block is inserted into the encoded JPEG), so a scene with EXIF decodes to
exactly the image it is without. The capture time agrees with the scene's labels (a night
scene is dated at night, a winter one in winter); the place is near one of a few search areas.
Of the photos with EXIF, about a fifth have a time but no GPS fix (GPS off), a third come
from a drone (``DJI``, 60-300 m above the ground).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lizaalert_tagger.scenes.plan import stream_rng

STREAM_EXIF = 9000

# (latitude, longitude, ground altitude in m, UTC offset): search areas around a few regions
AREAS = (
    (55.90, 37.40, 180.0, "+03:00"),  # Moscow region
    (56.30, 44.00, 140.0, "+03:00"),  # Nizhny Novgorod region
    (56.84, 60.60, 260.0, "+05:00"),  # Sverdlovsk region
    (54.98, 82.90, 150.0, "+07:00"),  # Novosibirsk region
)
PHONES = (("samsung", "SM-A525F"), ("Xiaomi", "Redmi Note 10"), ("Apple", "iPhone 12"))
DRONES = (("DJI", "FC3411"), ("DJI", "FC7303"), ("DJI", "M3E"))

# label codes (plan.py: time of day 1 day, 2 night, 3 dusk; season 1 winter .. 4 autumn)
_HOURS = {1: range(9, 18), 2: (22, 23, 0, 1, 2, 3), 3: (5, 6, 20, 21)}
_MONTHS = {1: (12, 1, 2), 2: (3, 4, 5), 3: (6, 7, 8), 4: (9, 10, 11)}


@dataclass(frozen=True)
class SceneExif:
    """What is written into a scene: ``latitude``/``longitude``/``altitude`` are ``None`` without a fix."""

    time: datetime
    offset: str | None
    make: str
    model: str
    latitude: float | None
    longitude: float | None
    altitude: float | None


def scene_exif(seed: int, index: int, labels: dict[str, int], fraction: float) -> SceneExif | None:
    """The EXIF of image ``index`` of data set ``seed`` (``None``: this image has none)."""
    if fraction <= 0:
        return None
    rng = stream_rng(seed, index, STREAM_EXIF)
    if rng.random() >= fraction:
        return None
    months = _MONTHS.get(labels.get("season", 0), tuple(range(1, 13)))
    hours = _HOURS.get(labels.get("time_of_day", 0), tuple(range(24)))
    month = int(months[rng.integers(len(months))])
    year = int(rng.integers(2022, 2026))
    when = datetime(year, month, int(rng.integers(1, 29)), int(hours[rng.integers(len(hours))]),
                    int(rng.integers(60)), int(rng.integers(60)))
    latitude, longitude, ground, offset = AREAS[int(rng.integers(len(AREAS)))]
    drone = rng.random() < 1 / 3
    make, model = (DRONES if drone else PHONES)[int(rng.integers(3))]
    fix = rng.random() >= 0.2
    has_offset = rng.random() < 0.7
    return SceneExif(
        time=when,
        offset=offset if has_offset else None,
        make=make,
        model=model,
        latitude=round(latitude + rng.uniform(-0.05, 0.05), 6) if fix else None,
        longitude=round(longitude + rng.uniform(-0.08, 0.08), 6) if fix else None,
        altitude=round(ground + (rng.uniform(60, 300) if drone else rng.uniform(0, 3)), 1) if fix else None,
    )


def _dms(value: float):
    """Degrees as three rationals, as cameras write them: d/1, m/1, s*10000/10000."""
    from PIL.TiffImagePlugin import IFDRational

    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = round(((value - degrees) * 60 - minutes) * 60 * 10000)
    return IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(seconds, 10000)


def exif_block(info: SceneExif) -> bytes:
    """The APP1 payload (``Exif\\0\\0`` + TIFF) with IFD0, the Exif IFD and, with a fix, the GPS IFD."""
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    stamp = info.time.strftime("%Y:%m:%d %H:%M:%S")
    exif = Image.Exif()
    exif[0x010F] = info.make
    exif[0x0110] = info.model
    exif[0x0132] = stamp
    sub = {0x9003: stamp, 0x9004: stamp}
    if info.offset:
        sub[0x9011] = info.offset
    exif[0x8769] = sub
    if info.latitude is not None and info.longitude is not None:
        gps = {
            0: b"\x02\x03\x00\x00",
            1: "N" if info.latitude >= 0 else "S",
            2: _dms(abs(info.latitude)),
            3: "E" if info.longitude >= 0 else "W",
            4: _dms(abs(info.longitude)),
        }
        if info.altitude is not None:
            gps[5] = b"\x01" if info.altitude < 0 else b"\x00"
            gps[6] = IFDRational(round(abs(info.altitude) * 10), 10)
        exif[0x8825] = gps
    return exif.tobytes()


def insert_exif(jpeg: bytes, payload: bytes) -> bytes:
    """``jpeg`` with an APP1 EXIF segment after SOI (and after a JFIF APP0, which stays first)."""
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    if len(payload) + 2 > 0xFFFF:
        raise ValueError(f"EXIF block of {len(payload)} bytes does not fit in one APP1 segment")
    at = 2
    if jpeg[2:4] == b"\xff\xe0":  # JFIF APP0
        at = 4 + int.from_bytes(jpeg[4:6], "big")
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:at] + segment + jpeg[at:]


def with_exif(jpeg: bytes, seed: int, index: int, labels: dict[str, int], fraction: float) -> bytes:
    """The scene's JPEG with its EXIF (the same bytes when it gets none)."""
    info = scene_exif(seed, index, labels, fraction)
    return jpeg if info is None else insert_exif(jpeg, exif_block(info))


def expected_time(info: SceneExif) -> str:
    """The ISO time ``lizaalert_tagger.common.exif.read_exif`` reads back from ``info``."""
    return info.time.isoformat() + (info.offset or "")


__all__ = ["AREAS", "STREAM_EXIF", "SceneExif", "exif_block", "expected_time", "insert_exif", "scene_exif", "with_exif"]
