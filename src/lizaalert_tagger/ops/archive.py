"""Build a TorchServe archive (.mar) of the tagger from a weights file.

The archive's root holds what ``handler/`` holds (the TorchServe adapter, the
attribute spec as ``attributes.json``, model-config.yaml), the
``lizaalert_tagger`` package (the worker has the archive's root on its path) and
the weights, and, when model-config.yaml asks for ``precision: int8``
(or ``--int8``), the int8 variant quantized here on calibration photos
(``weights_int8.pt``, TorchScript; ``--calibration DIR`` for real photos).
Without int8 the build is deterministic: the same inputs give a
byte-identical archive (fixed manifest date, sorted zip entries, fixed
timestamps), so an archive's hash identifies what it serves. The int8 file is
not guaranteed to be: TorchScript names its classes by a per-process counter.

Example:
    lizaalert-archive --weights build/default/weights.pt --spec build/default/attributes.json \\
        --version 2.0            # -> model_store/lizaalert_tagger_2.0.mar
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from lizaalert_tagger.common.paths import HANDLER_DIR, MODEL_STORE
from lizaalert_tagger.common.spec import SPEC_FILENAME
from lizaalert_tagger.vision.inference import WEIGHTS_FILENAME

MODEL_NAME = "lizaalert_tagger"
HANDLER_FILE = "tagger_handler.py"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # lizaalert_tagger/
CARRIED_SUBPACKAGES = ("common", "vision", "serving")  # what the handler imports, and all they import
FIXED_DATE = "01/01/2000 00:00:00"  # manifest "createdOn", fixed for reproducible archives
ZIP_TIME = (2000, 1, 1, 0, 0, 0)
CALIBRATION_SEED = 2  # int8 calibration scenes: not the training (0), threshold (1) or held-out (1001) seeds
CALIBRATION_COUNT = 64


def archive_file_name(version: str, name: str = MODEL_NAME) -> str:
    """``lizaalert_tagger_<version>.mar``: versions live side by side in the store."""
    return f"{name}_{version}.mar"


def check_inputs(weights: Path, spec_path: Path) -> None:
    """Fail early, with the real reason, if the weights do not fit the spec."""
    from lizaalert_tagger.vision.model import load_tagger
    from lizaalert_tagger.common.spec import load_spec

    load_tagger(weights, load_spec(spec_path))


def config_precision(config: Path) -> str:
    """The precision the config's ``handler:`` section serves, validated as the worker will validate it."""
    import yaml
    from lizaalert_tagger.serving.settings import HandlerSettings

    return HandlerSettings.from_yaml((yaml.safe_load(Path(config).read_text()) or {}).get("handler")).precision


def calibration_images(spec_path: Path, photos: Path | None = None, count: int = CALIBRATION_COUNT):
    """Normalised ``[N, 3, H, W]`` calibration images, preprocessed exactly as the server does it.

    From ``photos`` (a folder of real photos) when given, else generated scenes
    at real photo sizes (640..4000 px, seed ``CALIBRATION_SEED``).
    """
    from lizaalert_tagger.common.errors import InvalidInput
    from lizaalert_tagger.scenes import make_dataset
    from lizaalert_tagger.vision.preprocess import preprocess_image
    from lizaalert_tagger.common.spec import load_spec

    spec = load_spec(spec_path)
    with tempfile.TemporaryDirectory() as tmp:
        if photos is None:
            photos = Path(tmp) / "scenes"
            make_dataset(photos, count, CALIBRATION_SEED, jobs=2, spec=spec)
            photos = photos / "images"
        files = sorted(p for p in Path(photos).iterdir() if p.is_file())[:count]
        tensors = []
        for path in files:
            try:
                tensors.append(preprocess_image(path.read_bytes(), spec.preprocessing))
            except InvalidInput:
                continue  # not a photo: calibrate on the others
    if not tensors:
        raise ValueError(f"no usable calibration photo in {photos}")
    import torch

    return torch.stack(tensors)


def build_int8(weights: Path, spec_path: Path, out: Path, photos: Path | None = None) -> Path:
    """Quantize the trunk to int8 on calibration photos; write the TorchScript file to ``out``."""
    from lizaalert_tagger.vision.model import load_tagger
    from lizaalert_tagger.vision.quantize import quantize_int8, save_int8
    from lizaalert_tagger.common.spec import load_spec

    model = load_tagger(weights, load_spec(spec_path))
    return save_int8(quantize_int8(model, calibration_images(spec_path, photos)), out)


def stage_weights(weights: Path, target: Path) -> Path:
    """The archive's ``weights.pt``: a ``torch.save`` state dict as it is, or the fp32 state dict of a
    ``.safetensors`` file (the repository ships fp16 safetensors; the worker loads fp32 tensors)."""
    if weights.suffix == ".safetensors":
        import torch

        from lizaalert_tagger.vision.model import load_state

        torch.save({k: v.contiguous() for k, v in load_state(weights).items()}, target)
    else:
        shutil.copyfile(weights, target)
    return target


def carried_files() -> list[Path]:
    """The package files the worker imports, which the archive carries: the package's ``__init__.py``
    and the subpackages in ``CARRIED_SUBPACKAGES`` (the layers below serving; ``.importlinter`` keeps
    them from importing the rest), without caches."""
    files = [PACKAGE_DIR / "__init__.py"]
    for sub in CARRIED_SUBPACKAGES:
        files += sorted(p for p in (PACKAGE_DIR / sub).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    return files


def copy_package(target: Path) -> Path:
    """The carried part of the package (:func:`carried_files`) under ``target``."""
    for source in carried_files():
        dest = target / source.relative_to(PACKAGE_DIR)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
    return target


def sources_digest() -> str:
    """sha256 over what an archive's code is made of: the handler folder and the carried package files.
    Editing the benchmark, the client or training code does not change it."""
    digest = hashlib.sha256()
    for path in sorted(p for p in HANDLER_DIR.iterdir() if p.is_file()) + carried_files():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _zip_deterministically(source_dir: Path, target: Path) -> None:
    tmp_target = target.with_suffix(target.suffix + ".tmp")
    with zipfile.ZipFile(tmp_target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in source_dir.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(source_dir).as_posix(), date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    tmp_target.replace(target)  # atomic: TorchServe never sees half an archive


def build_archive(
    weights: Path,
    version: str,
    *,
    spec: Path = HANDLER_DIR / SPEC_FILENAME,
    config: Path = HANDLER_DIR / "model-config.yaml",
    store: Path = MODEL_STORE,
    file_name: str | None = None,
    name: str = MODEL_NAME,
    int8: bool | None = None,
    calibration: Path | None = None,
) -> Path:
    """Build ``store/file_name`` and return its path.

    ``int8`` adds the quantized TorchScript variant (``weights_int8.pt``);
    ``None`` adds it exactly when model-config.yaml asks for ``precision: int8``.
    """
    weights, spec, config, store = Path(weights), Path(spec), Path(config), Path(store)
    for label, path in (("weights", weights), ("spec", spec), ("model config", config)):
        if not path.is_file():
            raise FileNotFoundError(f"{label} file not found: {path}")
    check_inputs(weights, spec)
    precision = config_precision(config)
    if int8 is None:
        int8 = precision == "int8"
    elif precision == "int8" and not int8:
        raise ValueError(f"{config} asks for precision int8; an archive without the int8 variant could not serve it")
    store.mkdir(parents=True, exist_ok=True)
    target = store / (file_name or archive_file_name(version, name))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        staging = tmp / "staging"
        staging.mkdir()
        shutil.copyfile(spec, staging / SPEC_FILENAME)
        stage_weights(weights, staging / WEIGHTS_FILENAME)
        package = staging / "package"
        copy_package(package / PACKAGE_DIR.name)
        # a directory in --extra-files is copied by content: lizaalert_tagger/ lands at the archive's root
        extra = [str(package), str(staging / SPEC_FILENAME)]
        if int8:
            from lizaalert_tagger.vision.quantize import INT8_FILENAME

            extra.append(str(build_int8(weights, spec, staging / INT8_FILENAME, calibration)))
        out = tmp / "out"
        out.mkdir()
        cmd = [
            str(Path(sys.executable).parent / "torch-model-archiver"),
            "--model-name", name,
            "--version", version,
            "--serialized-file", str(staging / WEIGHTS_FILENAME),
            "--handler", str(HANDLER_DIR / HANDLER_FILE),
            "--extra-files", ",".join(extra),
            "--config-file", str(config),
            "--export-path", str(out),
            "--archive-format", "no-archive",
            "--force",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"torch-model-archiver failed ({result.returncode}): {result.stderr.strip()}")
        unpacked = out / name
        manifest_path = unpacked / "MAR-INF" / "MANIFEST.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["createdOn"] = FIXED_DATE
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _zip_deterministically(unpacked, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lizaalert-archive", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True,
                        help="weights: a .safetensors file or a state dict saved with torch.save(model.state_dict())")
    parser.add_argument("--version", required=True, help="model version, e.g. 1.0 or 2.0")
    parser.add_argument("--spec", type=Path, default=HANDLER_DIR / SPEC_FILENAME, help="attribute spec (default: %(default)s)")
    parser.add_argument("--config", type=Path, default=HANDLER_DIR / "model-config.yaml", help="model-config.yaml (default: %(default)s)")
    parser.add_argument("--store", type=Path, default=MODEL_STORE, help="model store directory (default: %(default)s)")
    parser.add_argument("--file", dest="file_name", help="archive file name (default: lizaalert_tagger_<version>.mar)")
    parser.add_argument("--name", default=MODEL_NAME, help="model name (default: %(default)s)")
    parser.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                        help="add the int8 variant (default: exactly when the config's precision is int8)")
    parser.add_argument("--calibration", type=Path, help="folder of real photos to calibrate int8 on "
                        f"(default: {CALIBRATION_COUNT} generated scenes)")
    args = parser.parse_args(argv)
    try:
        path = build_archive(
            args.weights, args.version, spec=args.spec, config=args.config,
            store=args.store, file_name=args.file_name, name=args.name, int8=args.int8, calibration=args.calibration,
        )
    except (OSError, ValueError, RuntimeError) as e:  # a missing input, an unwritable store, a failed archiver
        print(f"lizaalert-archive: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} (model {args.name}, version {args.version}, {path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
