#!/usr/bin/env python3
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
from lizaalert_tagger.common.paths import EXAMPLE_PHOTO, ROOT
from lizaalert_tagger.ops.runtime import DEFAULT_MODEL_STORE, DEFAULT_RUN_DIR, TorchServe


def _relative(path: Path) -> Path:
    return path.relative_to(ROOT) if ROOT in path.parents else path


def default_versions(ts: TorchServe) -> dict[str, str]:
    """``{model: default version}`` of the models the server started with ("?" where describe fails)."""
    client = ts.client(retries=2, timeout=10)
    versions = {}
    for name in ts.model_names:
        try:
            described = client.management("GET", f"/models/{name}", f"describe {name}")
            versions[name] = next((str(m["modelVersion"]) for m in described if m.get("isDefault", True)), "?")
        except (ClientError, KeyError, TypeError) as e:
            print(f"warning: {e}", file=sys.stderr)
            versions[name] = "?"
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="working directory of TorchServe (default: %(default)s)")
    parser.add_argument("--model-store", type=Path, default=DEFAULT_MODEL_STORE, help="model store (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the model to be ready (default: %(default)s)")
    parser.add_argument("--fresh", action="store_true",
                        help="ignore the model state saved by the last run (registered versions, default version) "
                             "and start from config.properties' load_models")
    args = parser.parse_args(argv)

    ts = TorchServe(run_dir=args.run_dir, model_store=args.model_store, quiet=True, restore=not args.fresh)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    print(f"starting TorchServe (console output: {ts.run_dir / 'console.log'}) ...", flush=True)
    try:
        ts.start(timeout=args.timeout)
        print(banner(ts, default_versions(ts)), flush=True)
        ts.process.wait()
        print(f"TorchServe exited with code {ts.process.returncode}; see {ts.log_dir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping TorchServe ...", flush=True)
        return 0
    except (RuntimeError, TimeoutError, ValueError) as e:
        print(f"lizaalert-serve: {e}", file=sys.stderr)
        return 1
    finally:
        ts.stop()


if __name__ == "__main__":
    sys.exit(main())
