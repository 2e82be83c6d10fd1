"""Java properties files, as TorchServe reads and writes them (``config.properties``, its snapshots).

Two readers on purpose: :func:`read_properties` for the project's own hand-written
``key=value`` files (comments kept by :func:`write_properties`), and
:func:`java_properties` for what Java's ``Properties.store`` writes (escapes, continued lines).
"""
from __future__ import annotations

from pathlib import Path

from lizaalert_tagger.common.paths import CONFIG_PROPERTIES

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def read_properties(path: Path = CONFIG_PROPERTIES) -> dict[str, str]:
    """``key=value`` lines of a Java properties file (comments and blanks skipped)."""
    props = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


def write_properties(source: Path, target: Path, overrides: dict[str, str]) -> None:
    """Copy ``source`` to ``target`` replacing (or appending) the given keys, keeping comments."""
    remaining = dict(overrides)
    lines = []
    for line in Path(source).read_text(encoding="utf-8").splitlines():
        key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else None
        if key in remaining:
            lines.append(f"{key}={remaining.pop(key)}")
        else:
            lines.append(line)
    lines += [f"{k}={v}" for k, v in remaining.items()]
    Path(target).write_text("\n".join(lines) + "\n", encoding="utf-8")


def java_properties(text: str) -> dict[str, str]:
    """The entries of a Java properties file as ``Properties.load`` reads them (escapes resolved).

    TorchServe writes its snapshots with ``Properties.store``, which escapes
    ``:``, ``=``, ``#``, ``!`` and backslashes in values (the JSON of
    ``model_snapshot`` is full of colons)."""
    props: dict[str, str] = {}
    logical: list[str] = []
    for raw in text.splitlines():
        line = raw.lstrip()  # trailing blanks belong to the value, as in Java
        if not logical and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2:  # an odd number of backslashes: the entry goes on on the next line
            logical.append(line[:-1])
            continue
        logical.append(line)
        key, value = _split_entry("".join(logical))
        logical = []
        props[key] = value
    return props


def _split_entry(entry: str) -> tuple[str, str]:
    """``key`` and ``value`` of one logical line: the key ends at the first unescaped ``=``, ``:`` or blank."""
    i = 0
    while i < len(entry) and entry[i] not in "=: \t\f":
        i += 2 if entry[i] == "\\" else 1
    key, rest = entry[:i], entry[i:].lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return _java_unescape(key), _java_unescape(rest)


def _java_unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            n = text[i + 1]
            if n == "u" and i + 6 <= len(text):
                out.append(chr(int(text[i + 2:i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    # Java strings are UTF-16: a character beyond the BMP is written as two \u escapes (a surrogate pair)
    return "".join(out).encode("utf-16-le", "surrogatepass").decode("utf-16-le")


def java_properties_value(text: str) -> str:
    """``text`` escaped as a Java properties value (``Properties.load`` reads files as Latin-1)."""
    controls = {v: f"\\{k}" for k, v in _ESCAPES.items()}
    out = []
    for c in text:
        if c == "\\":
            out.append("\\\\")
        elif c in controls:
            out.append(controls[c])
        elif ord(c) > 0x7E or ord(c) < 0x20:
            out.extend(f"\\u{unit:04x}" for unit in _utf16_units(c))
        else:
            out.append(c)
    value = "".join(out)
    return "\\" + value if value.startswith(" ") else value


def _utf16_units(c: str) -> list[int]:
    data = c.encode("utf-16-be")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
