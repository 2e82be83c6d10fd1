"""Serve the tagger with TorchServe in the foreground, using config.properties.

Runs TorchServe from the run directory (default ``run/``): its token file
``key_file.json`` (owner-only), logs and temp files live there. Prints the
API addresses, where the token is and a ``curl`` line once the default model
answers; Ctrl-C (or SIGTERM) stops TorchServe and its workers.

Versions registered and defaults set through the management API (``tagctl
models register / set-default / scale / unregister``) survive a restart:
TorchServe snapshots its model state in ``RUN_DIR/logs/config/`` and the next
start restores the newest snapshot. ``--fresh`` starts from config.properties'
``load_models`` instead (as does any edit of ``load_models``).
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from lizaalert_tagger.client.http import ClientError
from lizaalert_tagger.common.paths import EXAMPLE_PHOTO, MODEL_STORE, ROOT, RUN_DIR
from lizaalert_tagger.ops.torchserve import TorchServe


def _relative(path: Path) -> Path:
    return path.relative_to(ROOT) if ROOT in path.parents else path


def default_versions(ts: TorchServe) -> dict[str, str]:
    """``{model: default version}`` of the models the server started with ("?" where describe fails).

    ValueError when a describe answers with something that is not TorchServe's list of versions.
    """
    client = ts.client(retries=2, timeout=10)
    versions = {}
    for name in ts.model_names:
        try:
            described = client.management("GET", f"/models/{name}", f"describe {name}")
        except ClientError as e:
            print(f"warning: {e}", file=sys.stderr)
            versions[name] = "?"
            continue
        if not isinstance(described, list) or not all(isinstance(m, dict) for m in described):
            raise ValueError(f"describe {name} at {ts.management_url} answered {str(described)[:120]!r}, "
                             f"not TorchServe's list of versions")
        versions[name] = next((str(m.get("modelVersion", "?")) for m in described if m.get("isDefault", True)), "?")
    return versions


def banner(ts: TorchServe, versions: dict[str, str]) -> str:
    key_file = _relative(ts.key_file)
    token = f"$(.venv/bin/tagctl --key-file {key_file} token)"
    model = next(iter(versions), "MODEL")
    return "\n".join([
        "",
        *(f"TorchServe is serving {name} (version {version})" for name, version in versions.items()),
        f"  inference   {ts.inference_url}/predictions/{model}",
        f"  management  {ts.management_url}/models",
        f"  metrics     {ts.metrics_url}/metrics   (Prometheus text, no token)",
        f"  token       {key_file}   (\"inference\", \"management\" and \"API\" keys; owner-only)",
        f"  logs        {_relative(ts.log_dir)}/",
        *([f"  restored    {_relative(ts.restored_from)}   (versions and defaults as last set via the management API; --fresh: start from load_models)"]
          if ts.restored_from else []),
        "Tag a photo:",
        f"  curl -H \"Authorization: Bearer {token}\" -H \"Content-Type: application/octet-stream\" --data-binary @{_relative(EXAMPLE_PHOTO)} {ts.inference_url}/predictions/{model}",
        "Stop with Ctrl-C.",
        "",
    ])


def _stop_on_sigterm(signum, frame) -> None:
    """SIGTERM stops the server the way Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lizaalert-serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR, help="working directory of TorchServe (default: %(default)s)")
    parser.add_argument("--model-store", type=Path, default=MODEL_STORE, help="model store (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the model to be ready (default: %(default)s)")
    parser.add_argument("--fresh", action="store_true",
                        help="ignore the model state saved by the last run (registered versions, default version) "
                             "and start from config.properties' load_models")
    args = parser.parse_args(argv)

    previous_handler = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    ts = None
    try:
        ts = TorchServe(run_dir=args.run_dir, model_store=args.model_store, quiet=True, restore=not args.fresh)
        print(f"starting TorchServe (console output: {ts.run_dir / 'console.log'}) ...", flush=True)
        ts.start(timeout=args.timeout)
        print(banner(ts, default_versions(ts)), flush=True)
        ts.process.wait()
        print(f"TorchServe exited with code {ts.process.returncode}; see {ts.log_dir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping TorchServe ...", flush=True)
        return 0
    except (ClientError, OSError, RuntimeError, ValueError) as e:  # TimeoutError is an OSError
        print(f"lizaalert-serve: {_one_line(e)}", file=sys.stderr)
        return 1
    finally:
        if ts is not None:
            ts.stop()
        signal.signal(signal.SIGTERM, previous_handler)


def _one_line(error: Exception) -> str:
    """An error for a person: an OSError about a file says which file and what went wrong."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"cannot use {error.filename}: {error.strerror}"
    return str(error)


if __name__ == "__main__":
    sys.exit(main())
