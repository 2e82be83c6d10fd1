#!/usr/bin/env python3
"""Health check of the tagger's TorchServe from inside its container: the project's readiness check.

Healthy means what ``lizaalert_tagger.client.http.TaggerClient`` calls healthy and
ready: ``GET /ping`` answers Healthy, and the model has at least one READY
worker (``TaggerClient.model_ready``, the describe call of the management API),
i.e. the model really answers, not just the Java frontend.

Tokens are the client's business, as everywhere in the project:

- ``docker run`` (the image's CMD, tokens on): the client reads TorchServe's
  ``key_file.json`` in the working directory (``--key-file``) and, when a token
  has expired (a day), renews it with the API key and retries;
- a pod (``pod.properties``: TorchServe on the pod's loopback, tokens off behind
  the nginx sidecar): ``--tokens-off`` sends none.

Exit status 0 = healthy, 1 = not (one line on stdout says why; Docker keeps it
in ``docker inspect``). Used by the image's HEALTHCHECK and by the startup probe
of deploy/k8s/deployment.yaml and deploy/kserve/inferenceservice.yaml.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lizaalert_tagger.client.http import MODEL_NAME, TaggerClient

DEFAULT_KEY_FILE = Path("/home/tagger/run/key_file.json")  # the image's WORKDIR
DEFAULT_INFERENCE_URL = "http://127.0.0.1:8080"
DEFAULT_MANAGEMENT_URL = "http://127.0.0.1:8081"
DEFAULT_MODEL = MODEL_NAME
DEFAULT_TIMEOUT = 3.0  # seconds per request; two requests fit the HEALTHCHECK's --timeout


def check(client: TaggerClient, model: str) -> tuple[bool, str]:
    """(healthy, one line saying why)."""
    if not client.healthy():
        why = f"TorchServe at {client.inference_url} does not answer /ping with Healthy"
        if client.tokens and not client.fixed_token and not client.key_file.exists():
            why += f" (no key file at {client.key_file} yet: TorchServe has not started)"
        return False, why
    if not client.model_ready(model):
        return False, f"model {model} has no READY worker (still loading, or not registered)"
    return True, f"{model} has a READY worker"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tokens = parser.add_mutually_exclusive_group()
    tokens.add_argument("--key-file", type=Path, default=DEFAULT_KEY_FILE,
                        help="TorchServe's key file (default: %(default)s)")
    tokens.add_argument("--token", help="a token to send instead of reading the key file")
    tokens.add_argument("--tokens-off", action="store_true",
                        help="TorchServe runs with disable_token_authorization=true (the pod)")
    parser.add_argument("--inference-url", default=DEFAULT_INFERENCE_URL, help="default: %(default)s")
    parser.add_argument("--management-url", default=DEFAULT_MANAGEMENT_URL, help="default: %(default)s")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="model that must have a READY worker (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds per request (default: %(default)s)")
    args = parser.parse_args(argv)
    # No retries of its own: Docker and the kubelet run the check again.
    client = TaggerClient(args.inference_url, args.management_url, key_file=args.key_file, token=args.token,
                          retries=0, timeout=args.timeout, pool_size=1, tokens=not args.tokens_off)
    healthy, why = check(client, args.model)
    print(f"{'healthy' if healthy else 'unhealthy'}: {why}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
