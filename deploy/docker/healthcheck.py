#!/usr/bin/env python3
"""Health check of the tagger's TorchServe from inside its container, with tokens on.

TorchServe 0.12 wants a token even on ``/ping``, and only the container holds
it: the server writes ``key_file.json`` to its working directory at start. So
this check reads that file and asks, as a client would:

1. ``GET /ping`` (inference token): the frontend answers and calls itself Healthy;
2. ``GET /models/<model>`` (management token): at least one worker is READY,
   i.e. the model really answers, not just the Java frontend.

Tokens expire (``token_expiration_min``). A refused token is renewed with the
API key (``GET /token?type=...``, which rewrites the key file) and the call is
tried once more, so an idle server does not turn unhealthy after a day. Clients
that copied the old token out of the file get the new one from the file again.

Exit status 0 = healthy, 1 = not (one line on stdout says why; Docker keeps it
in ``docker inspect``). Standard library only, so that a probe every few
seconds costs a Python start-up and nothing more. Used by the image's
HEALTHCHECK and by the Kubernetes readiness probe (deploy/k8s/deployment.yaml).
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_KEY_FILE = Path("/home/tagger/run/key_file.json")
DEFAULT_INFERENCE_URL = "http://127.0.0.1:8080"
DEFAULT_MANAGEMENT_URL = "http://127.0.0.1:8081"
DEFAULT_MODEL = "lizaalert_tagger"


class Unhealthy(Exception):
    """What is wrong, in one line."""


def read_keys(key_file: Path) -> dict[str, str]:
    """The inference, management and API tokens from TorchServe's key file."""
    try:
        raw = json.loads(key_file.read_text(encoding="utf-8"))
        return {"inference": raw["inference"]["key"], "management": raw["management"]["key"], "api": raw["API"]["key"]}
    except FileNotFoundError:
        raise Unhealthy(f"no key file at {key_file} yet: TorchServe has not started") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Unhealthy(f"key file {key_file} unreadable ({e.__class__.__name__}: {e})") from None


class TokenRefused(Unhealthy):
    """TorchServe refused the token (wrong or expired): HTTP 400 with InvalidKeyException."""


def get_json(url: str, token: str, timeout: float):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            return json.loads(body) if body.strip() else None
    except urllib.error.HTTPError as e:
        text = e.read(300).decode("utf-8", "replace").strip()
        kind = TokenRefused if "InvalidKeyException" in text or "Token Authorization failed" in text else Unhealthy
        raise kind(f"GET {url}: HTTP {e.code}: {text[:200]}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise Unhealthy(f"GET {url}: {getattr(e, 'reason', e)}") from None


def get_with_renewal(url: str, kind: str, key_file: Path, management_url: str, timeout: float):
    """GET with the ``kind`` token; if refused, renew it with the API key and try once more."""
    keys = read_keys(key_file)
    try:
        return get_json(url, keys[kind], timeout)
    except TokenRefused:
        get_json(f"{management_url}/token?type={kind}", keys["api"], timeout)  # rewrites the key file
        return get_json(url, read_keys(key_file)[kind], timeout)


def check(key_file: Path, inference_url: str, management_url: str, model: str, timeout: float) -> str:
    """Raise :class:`Unhealthy` or return a one-line summary."""
    ping = get_with_renewal(f"{inference_url}/ping", "inference", key_file, management_url, timeout)
    if not isinstance(ping, dict) or ping.get("status") != "Healthy":
        raise Unhealthy(f"/ping says {ping}")
    versions = get_with_renewal(f"{management_url}/models/{model}", "management", key_file, management_url, timeout)
    workers = [w for v in versions or [] for w in v.get("workers", [])]
    ready = [w for w in workers if w.get("status") == "READY"]
    if not ready:
        states = sorted({w.get("status", "?") for w in workers})
        raise Unhealthy(f"model {model} has no READY worker (workers: {', '.join(states) or 'none'})")
    return f"healthy: {model} has {len(ready)} READY worker(s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--key-file", type=Path, default=DEFAULT_KEY_FILE, help="TorchServe's key file (default: %(default)s)")
    parser.add_argument("--inference-url", default=DEFAULT_INFERENCE_URL, help="default: %(default)s")
    parser.add_argument("--management-url", default=DEFAULT_MANAGEMENT_URL, help="default: %(default)s")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model that must have a READY worker (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        print(check(args.key_file, args.inference_url.rstrip("/"), args.management_url.rstrip("/"), args.model, args.timeout))
    except Unhealthy as e:
        print(f"unhealthy: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
