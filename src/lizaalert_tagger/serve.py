#!/usr/bin/env python3
"""Serve the tagger with TorchServe in the foreground, using config.properties.

Runs TorchServe from the run directory (default ``run/``): its token file
``key_file.json`` (owner-only), logs and temp files live there. Prints the
API addresses, where the token is and a ``curl`` line once the default model
answers; Ctrl-C (or SIGTERM) stops TorchServe and its workers.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from lizaalert_tagger.paths import EXAMPLE_PHOTO, ROOT
from lizaalert_tagger.runtime import DEFAULT_MODEL_STORE, DEFAULT_RUN_DIR, TorchServe



def banner(ts: TorchServe, model: str, version: str) -> str:
    rel = lambda p: p.relative_to(ROOT) if ROOT in p.parents else p  # noqa: E731
    key_file = rel(ts.key_file)
    token = f"$(.venv/bin/python scripts/tagctl.py --key-file {key_file} token)"
    return "\n".join([
        "",
        f"TorchServe is serving {model} (version {version})",
        f"  inference   {ts.inference_url}/predictions/{model}",
        f"  management  {ts.management_url}/models",
        f"  metrics     {ts.metrics_url}/metrics   (Prometheus text, no token)",
        f"  token       {key_file}   (\"inference\", \"management\" and \"API\" keys; owner-only)",
        f"  logs        {rel(ts.log_dir)}/",
        "Tag a photo:",
        f"  curl -H \"Authorization: Bearer {token}\" -H \"Content-Type: application/octet-stream\" --data-binary @{rel(EXAMPLE_PHOTO)} {ts.inference_url}/predictions/{model}",
        "Stop with Ctrl-C.",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="working directory of TorchServe (default: %(default)s)")
    parser.add_argument("--model-store", type=Path, default=DEFAULT_MODEL_STORE, help="model store (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the model to be ready (default: %(default)s)")
    args = parser.parse_args(argv)

    ts = TorchServe(run_dir=args.run_dir, model_store=args.model_store, quiet=True)
    stop = lambda *_: (_ for _ in ()).throw(KeyboardInterrupt)  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    print(f"starting TorchServe (console output: {ts.run_dir / 'console.log'}) ...", flush=True)
    try:
        ts.start(timeout=args.timeout)
        import requests

        describe = requests.get(f"{ts.management_url}/models/lizaalert_tagger",
                                headers={"Authorization": f"Bearer {ts.keys()['management']}"}, timeout=10).json()
        version = next((m["modelVersion"] for m in describe if m.get("isDefault", True)), "?")
        print(banner(ts, "lizaalert_tagger", version), flush=True)
        ts.process.wait()
        print(f"TorchServe exited with code {ts.process.returncode}; see {ts.log_dir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping TorchServe ...", flush=True)
        return 0
    except (RuntimeError, TimeoutError) as e:
        print(f"serve.py: {e}", file=sys.stderr)
        return 1
    finally:
        ts.stop()


if __name__ == "__main__":
    sys.exit(main())
