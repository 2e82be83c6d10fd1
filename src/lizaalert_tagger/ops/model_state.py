"""The models a TorchServe start registers: those ``load_models`` names, or the snapshot it restores.

TorchServe writes a snapshot of its registered models (versions, the default
version, workers) to ``$LOG_LOCATION/config/`` after start, after every
management call that changes them and at shutdown. Restoring the newest one at
the next start keeps a version switched to with ``tagctl models set-default``
the default after a restart. Only the ``model_snapshot`` part of a snapshot is
used; the rest of the config always comes from ``config.properties``.
"""
from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path

from lizaalert_tagger.ops.properties import java_properties

# TorchServe's snapshots: LOG_LOCATION/config/<yyyyMMddHHmmssSSS>-{startup,snapshot,shutdown}.cfg
SNAPSHOT_DIR_NAME = "config"
SNAPSHOT_FILE = re.compile(r"^(\d{17})-(startup|snapshot|shutdown)\.cfg$")
SNAPSHOTS_KEPT = 20  # older snapshot files are deleted at start (TorchServe never deletes any)


def archive_model_name(path: Path) -> str:
    """The model name in an archive's ``MAR-INF/MANIFEST.json`` (what TorchServe registers it as)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read("MAR-INF/MANIFEST.json"))["model"]["modelName"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a model archive with a manifest ({type(e).__name__}: {e})") from None


def startup_models(load_models: str, model_store: Path) -> list[str]:
    """The model names TorchServe registers at start for a ``load_models`` value.

    ``all``: every ``.mar`` in the store; otherwise comma-separated entries,
    ``file.mar`` (named by its manifest) or ``name=file.mar`` (named ``name``).
    """
    load_models = load_models.strip()
    if not load_models or load_models.lower() == "standalone":
        return []
    if load_models.lower() == "all":
        return sorted({archive_model_name(p) for p in Path(model_store).glob("*.mar")})
    names = []
    for entry in (e.strip() for e in load_models.split(",")):
        if not entry:
            continue
        if "=" in entry:
            names.append(entry.split("=", 1)[0].strip())
        elif entry.endswith(".mar"):
            names.append(archive_model_name(Path(model_store) / entry))
        else:
            names.append(entry)  # a model directory in the store: TorchServe names it after the directory
    return names


def snapshot_files(log_dir: Path) -> list[Path]:
    """TorchServe's snapshot files under ``log_dir/config``, oldest first (by the time in their names)."""
    folder = Path(log_dir) / SNAPSHOT_DIR_NAME
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_file() and SNAPSHOT_FILE.match(p.name)), key=lambda p: p.name)


def prune_snapshots(log_dir: Path, keep: int = SNAPSHOTS_KEPT) -> None:
    """Delete all but the newest ``keep`` snapshot files."""
    for old in snapshot_files(log_dir)[:-keep]:
        old.unlink(missing_ok=True)


def read_snapshot(path: Path) -> tuple[dict, dict[str, str]]:
    """``(model snapshot, properties)`` of one snapshot file; ValueError if it has no readable model snapshot."""
    try:
        props = java_properties(Path(path).read_text(encoding="utf-8"))
        snapshot = json.loads(props["model_snapshot"])
        models = snapshot.get("models") or {}
        if not isinstance(models, dict) or not all(
                isinstance(versions, dict) and all(isinstance(state, dict) for state in versions.values())
                for versions in models.values()):
            raise ValueError("'models' is not a map of versions to their state")
    except (OSError, KeyError, ValueError, AttributeError) as e:
        raise ValueError(f"{path}: not a TorchServe snapshot with a model_snapshot ({type(e).__name__}: {e})") from None
    snapshot["models"] = models
    return snapshot, props


def _normalized_load_models(value: str) -> str:
    return ",".join(entry.strip() for entry in value.split(",") if entry.strip())


def _newest_readable_snapshot(log_dir: Path) -> tuple[Path, dict, dict[str, str]] | None:
    """The newest snapshot that reads; an unreadable newer one (a crash while TorchServe wrote it)
    is skipped with a warning."""
    for path in reversed(snapshot_files(log_dir)):
        try:
            return (path, *read_snapshot(path))
        except ValueError as e:
            print(f"warning: skipping {e}", file=sys.stderr)
    return None


def model_snapshot_to_restore(log_dir: Path, model_store: Path, load_models: str) -> tuple[Path, dict] | None:
    """The newest snapshot of a run dir's TorchServe, if the next start should restore it, else None.

    None when there is no snapshot, or when the snapshot's server started from
    another ``load_models`` than ``load_models`` (editing it in
    config.properties declares a new starting state). ValueError, naming the
    way out, when the snapshot names an archive that is not in ``model_store``
    (TorchServe would refuse to start) or a file outside it.
    """
    found = _newest_readable_snapshot(log_dir)
    if found is None:
        return None
    path, snapshot, props = found
    if _normalized_load_models(props.get("load_models", "")) != _normalized_load_models(load_models):
        return None
    store = Path(model_store)
    for name, versions in snapshot["models"].items():
        for version, state in versions.items():
            mar = str(state.get("marName", ""))
            if not mar or Path(mar).name != mar or mar in (".", "..") or not (store / mar).is_file():
                raise ValueError(
                    f"{path} restores {name} version {version} from {mar!r}, which is not an archive in {store}: "
                    f"put the archive back, or start from config.properties' load_models "
                    f"(lizaalert-serve --fresh, or delete {path.parent})"
                )
    return path, snapshot
