"""Time and place of a photo from its EXIF: capture time, GPS latitude, longitude and altitude.

Phones and drones (DJI included) write the standard tags, which this reads with Pillow:

- time: ``DateTimeOriginal`` (Exif IFD) with ``OffsetTimeOriginal`` when present, else
  ``DateTime`` (IFD0) with ``OffsetTime``; ISO 8601 out, e.g. ``2024-07-14T15:03:22+03:00``
  (no offset when the photo gives none: the camera's local time);
- place: the GPS IFD's ``GPSLatitude``/``GPSLongitude`` (1 to 3 rationals: degrees, minutes,
  seconds) with their ``N``/``S``, ``E``/``W`` references, and ``GPSAltitude`` with
  ``GPSAltitudeRef`` (1: below sea level).

A photo without EXIF gives an empty :class:`PhotoExif`. EXIF is written by any device or
program, so nothing in it is trusted: wrong types, zero denominators, out-of-range values,
huge strings or a broken IFD leave that field empty and add a one-line warning to
:attr:`PhotoExif.warnings`; reading never raises.

Pure Pillow: no torch, so the client (``tagctl tag-folder``) can import it.
"""
from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lizaalert_tagger.common.formats import FORMATS_TEXT, open_image

__all__ = ["PhotoExif", "read_exif", "exif_of_image"]

# Tag numbers (EXIF 2.32 / TIFF 6.0)
IFD_EXIF, IFD_GPS = 0x8769, 0x8825
TAG_MAKE, TAG_MODEL, TAG_DATETIME = 0x010F, 0x0110, 0x0132
TAG_DATETIME_ORIGINAL, TAG_OFFSET_TIME, TAG_OFFSET_TIME_ORIGINAL = 0x9003, 0x9010, 0x9011
GPS_LATITUDE_REF, GPS_LATITUDE, GPS_LONGITUDE_REF, GPS_LONGITUDE = 1, 2, 3, 4
GPS_ALTITUDE_REF, GPS_ALTITUDE, GPS_STATUS = 5, 6, 9

MAX_TEXT = 64  # longer camera names or dates are not what a camera writes
SHOWN = 40  # characters of a bad value quoted in a warning
ALTITUDE_RANGE = (-1000.0, 50000.0)  # metres: the Dead Sea shore to well above any aircraft
_DATE = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})")


@dataclass(frozen=True)
class PhotoExif:
    """What a photo's EXIF says about when and where; ``None`` where it says nothing usable."""

    time: str | None = None  # ISO 8601, local time of the camera (+ its UTC offset when given)
    latitude: float | None = None  # degrees, north positive
    longitude: float | None = None  # degrees, east positive
    altitude: float | None = None  # metres above sea level (negative below)
    camera: str | None = None  # Make and Model, e.g. "DJI FC3411"
    warnings: tuple[str, ...] = ()  # one line per unusable field

    @property
    def has_position(self) -> bool:
        return self.latitude is not None and self.longitude is not None


class _Unusable(ValueError):
    """A field's value cannot be used; the message says why (one line)."""


def _shown(value: Any) -> str:
    """A bad value quoted briefly: ``'abc'``, ``'aaaa…' (1048576 characters)``."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = repr(value)
    if len(text) > SHOWN:
        length = f" ({len(value)} characters)" if isinstance(value, str) else ""
        text = text[:SHOWN] + "…" + length
    return " ".join(text.split())


def _text(value: Any, name: str) -> str | None:
    """An ASCII field as a clean string; ``None`` when empty."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        raise _Unusable(f"{name} is {_shown(value)}, expected text")
    value = value.replace("\x00", " ").strip()
    if len(value) > MAX_TEXT:
        raise _Unusable(f"{name} is {_shown(value)}, longer than {MAX_TEXT} characters")
    if any(not c.isprintable() for c in value):
        raise _Unusable(f"{name} is {_shown(value)}, with control characters")
    return value or None


def _number(value: Any, name: str) -> float:
    """One rational or integer as a finite float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "denominator"):
        raise _Unusable(f"{name} is {_shown(value)}, expected a number")
    if getattr(value, "denominator", 1) == 0:
        raise _Unusable(f"{name} has a zero denominator")
    number = float(value)
    if not math.isfinite(number):
        raise _Unusable(f"{name} is {_shown(value)}, not a finite number")
    return number


def _time(when: Any, offset: Any, name: str, offset_name: str, warnings: list[str]) -> str | None:
    text = _text(when, name)
    if text is None or set(text) <= set("0: -"):
        return None  # blank or all zeros: the camera did not know (EXIF's "unknown")
    match = _DATE.match(text) if len(text) <= 32 else None
    if match is None:
        raise _Unusable(f"{name} is {_shown(text)}, expected YYYY:MM:DD HH:MM:SS")
    try:
        stamp = datetime(*(int(g) for g in match.groups()))
    except ValueError:
        raise _Unusable(f"{name} is {_shown(text)}, not a valid date and time") from None
    if not 1900 <= stamp.year <= 2200:
        raise _Unusable(f"{name} is {_shown(text)}, year out of range")
    iso = stamp.isoformat()
    offset_text = _safe(warnings, _text, offset, offset_name) if offset is not None else None
    if offset_text is None:
        return iso
    m = _OFFSET.fullmatch(offset_text)
    if m is None or int(m.group(2)) > 14 or int(m.group(3)) >= 60:
        warnings.append(f"{offset_name} is {_shown(offset_text)}, expected ±HH:MM: time kept without it")
        return iso
    return iso + offset_text


def _degrees(value: Any, ref: Any, name: str, refs: str, limit: float) -> float:
    """Degrees[, minutes[, seconds]] and an ``N``/``S`` or ``E``/``W`` reference, signed."""
    if value is None:
        raise _Unusable(f"{name} is missing")
    parts = value if isinstance(value, (tuple, list)) else (value,)
    if not 1 <= len(parts) <= 3:
        raise _Unusable(f"{name} has {len(parts)} values, expected degrees, minutes, seconds")
    numbers = [_number(p, name) for p in parts]
    if any(n < 0 for n in numbers):
        raise _Unusable(f"{name} is {_shown(tuple(numbers))}, negative (the sign belongs in {name}Ref)")
    if len(numbers) > 1 and numbers[1] >= 60 or len(numbers) > 2 and numbers[2] > 60:
        raise _Unusable(f"{name} is {_shown(tuple(numbers))}, minutes or seconds out of range")
    degrees = numbers[0] + sum(n / 60**i for i, n in enumerate(numbers[1:], 1))
    if degrees > limit:
        raise _Unusable(f"{name} is {degrees:.6g}°, out of range (at most {limit:g})")
    ref_text = (_text(ref, f"{name}Ref") or "") if ref is not None else ""
    ref_text = ref_text.upper()
    if ref_text not in ("", *refs):
        raise _Unusable(f"{name}Ref is {_shown(ref_text)}, expected {' or '.join(refs)}")
    if not ref_text:
        raise _Unusable(f"{name}Ref is missing: {refs[0]} or {refs[1]} unknown")
    return -degrees if ref_text == refs[1] else degrees


def _altitude(value: Any, ref: Any) -> float:
    metres = _number(value, "GPSAltitude")
    if metres < 0:
        raise _Unusable(f"GPSAltitude is {metres:g}, negative (below sea level is GPSAltitudeRef 1)")
    if isinstance(ref, bytes):
        ref = ref[0] if len(ref) == 1 else ref
    elif isinstance(ref, str) and ref.strip() in ("0", "1"):
        ref = int(ref.strip())
    elif isinstance(ref, (tuple, list)) and len(ref) == 1:
        ref = ref[0]
    if ref not in (None, 0, 1) or isinstance(ref, bool):
        raise _Unusable(f"GPSAltitudeRef is {_shown(ref)}, expected 0 (above sea level) or 1 (below)")
    metres = -metres if ref == 1 else metres
    if not ALTITUDE_RANGE[0] <= metres <= ALTITUDE_RANGE[1]:
        raise _Unusable(f"GPSAltitude is {metres:g} m, out of range")
    return metres


def _ifd(exif, tag: int, warnings: list[str], name: str) -> Mapping[int, Any]:
    """A sub-IFD (Exif, GPS) as a mapping; a pointer that leads nowhere is a warning."""
    try:
        ifd = exif.get_ifd(tag)
    except Exception as e:  # noqa: BLE001 - a broken pointer or IFD: that part is unreadable
        warnings.append(f"{name} IFD unreadable ({type(e).__name__})")
        return {}
    if not isinstance(ifd, Mapping):
        ifd = {}
    if not ifd and tag in exif:
        warnings.append(f"{name} IFD unreadable (pointer {_shown(exif.get(tag))} leads to no entries)")
    return ifd


def _safe(warnings: list[str], fn, *args) -> Any:
    """``fn(*args)``; on a bad value, ``None`` and a warning (never an exception)."""
    try:
        return fn(*args)
    except _Unusable as e:
        warnings.append(str(e))
        return None
    except Exception as e:  # noqa: BLE001 - hostile values of types Pillow lets through
        warnings.append(f"unusable EXIF value ({type(e).__name__}: {' '.join(str(e).split())[:SHOWN]})")
        return None


def exif_of_image(img) -> PhotoExif:
    """The time and place in an opened Pillow image's EXIF (reads only the header, not the pixels)."""
    warnings: list[str] = []
    try:
        exif = img.getexif()
    except Exception as e:  # noqa: BLE001 - a broken EXIF block
        return PhotoExif(warnings=(f"EXIF unreadable: {type(e).__name__}: {' '.join(str(e).split())[:SHOWN]}",))
    if not exif:
        return PhotoExif()
    sub = _ifd(exif, IFD_EXIF, warnings, "Exif")
    gps = _ifd(exif, IFD_GPS, warnings, "GPS")

    when = None
    original = sub.get(TAG_DATETIME_ORIGINAL, exif.get(TAG_DATETIME_ORIGINAL))
    if original is not None:
        when = _safe(warnings, _time, original, sub.get(TAG_OFFSET_TIME_ORIGINAL), "DateTimeOriginal", "OffsetTimeOriginal", warnings)
    if when is None and exif.get(TAG_DATETIME) is not None:
        when = _safe(warnings, _time, exif.get(TAG_DATETIME), sub.get(TAG_OFFSET_TIME), "DateTime", "OffsetTime", warnings)

    latitude = longitude = altitude = None
    if GPS_LATITUDE in gps or GPS_LONGITUDE in gps:
        status = _safe(warnings, _text, gps.get(GPS_STATUS, ""), "GPSStatus")
        latitude = _safe(warnings, _degrees, gps.get(GPS_LATITUDE), gps.get(GPS_LATITUDE_REF), "GPSLatitude", "NS", 90.0)
        longitude = _safe(warnings, _degrees, gps.get(GPS_LONGITUDE), gps.get(GPS_LONGITUDE_REF), "GPSLongitude", "EW", 180.0)
        if latitude is None or longitude is None:
            latitude = longitude = None
        elif status == "V":
            warnings.append("GPSStatus is V (measurement void): position not used")
            latitude = longitude = None
        elif latitude == 0.0 and longitude == 0.0:
            warnings.append("GPS position is 0, 0 (a receiver without a fix): not used")
            latitude = longitude = None
    if GPS_ALTITUDE in gps:
        altitude = _safe(warnings, _altitude, gps.get(GPS_ALTITUDE), gps.get(GPS_ALTITUDE_REF))

    names = [_safe(warnings, _text, exif.get(tag, ""), name) for tag, name in ((TAG_MAKE, "Make"), (TAG_MODEL, "Model"))]
    make, model = (n or "" for n in names)
    if make and model.lower().startswith(make.lower()):
        make = ""  # "Canon" + "Canon EOS 80D"
    camera = " ".join(p for p in (make, model) if p) or None
    return PhotoExif(
        time=when,
        latitude=None if latitude is None else round(latitude, 7),
        longitude=None if longitude is None else round(longitude, 7),
        altitude=None if altitude is None else round(altitude, 2),
        camera=camera,
        warnings=tuple(warnings),
    )


def read_exif(source: bytes | str | Path) -> PhotoExif:
    """The time and place of a photo given as bytes or a path; never raises.

    A file that cannot be opened as an image gives an empty result with a warning.
    """
    from PIL import UnidentifiedImageError

    try:
        stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else open(source, "rb")
    except OSError as e:
        return PhotoExif(warnings=(f"cannot read: {e.strerror or e}",))
    try:
        with stream, open_image(stream) as img:
            return exif_of_image(img)
    except UnidentifiedImageError:
        return PhotoExif(warnings=(f"no EXIF read: not a photo ({FORMATS_TEXT})",))
    except Exception as e:  # noqa: BLE001 - an image Pillow cannot parse: no EXIF to read
        return PhotoExif(warnings=(f"no EXIF read: {type(e).__name__}: {' '.join(str(e).split())[:SHOWN]}",))
