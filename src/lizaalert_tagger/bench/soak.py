"""Soak test: many requests at high concurrency with `hey`, worker memory before and after.

    lizaalert-soak --requests 5000 --concurrency 32     # against `make serve`

Sends ``--requests`` POSTs of one photo to the default model with the load
generator ``hey`` (Debian package ``hey``), bounded in count and time, to a
loopback server only. Prints the status distribution, throughput, latency
percentiles and each worker's RSS before and after (worker PIDs come from the
management API's describe call). Exit code 1 if any request failed.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import psutil

from lizaalert_tagger.bench.hey import HeyError, HeyResult, require_hey, run_hey, whole_waves
from lizaalert_tagger.client.http import MODEL_NAME, ClientError, TaggerClient
from lizaalert_tagger.common.paths import EXAMPLE_PHOTO

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class SoakResult:
    requests: int
    load: HeyResult
    rss_before_mb: dict[int, float] = field(default_factory=dict)
    rss_after_mb: dict[int, float] = field(default_factory=dict)

    @property
    def statuses(self) -> dict[int, int]:
        return self.load.statuses

    @property
    def failed(self) -> int:
        return self.load.failed

    def report(self) -> str:
        load = self.load
        lines = [
            f"requests  {self.requests} in {load.seconds:.1f} s = {load.rps:.1f} req/s",
            f"statuses  {dict(sorted(load.statuses.items()))}" + (f"  errors {load.errors}" if load.errors else ""),
            "latency   " + "  ".join(f"{k} {v:.0f} ms" for k, v in load.latency_ms.items()),
        ]
        for pid in sorted(set(self.rss_before_mb) | set(self.rss_after_mb)):
            before, after = self.rss_before_mb.get(pid), self.rss_after_mb.get(pid)
            fmt = lambda v: "gone" if v is None else f"{v:.0f} MB"  # noqa: E731
            lines.append(f"worker {pid}  RSS before {fmt(before)}, after {fmt(after)}")
        lines.append(f"failed    {self.failed}")
        return "\n".join(lines)


def worker_rss(client: TaggerClient, model: str) -> dict[int, float]:
    """RSS in MB of each worker of the model's default version (PIDs from describe)."""
    rss = {}
    for version in client.management("GET", f"/models/{model}", "describe"):
        for worker in version.get("workers", []):
            try:
                rss[int(worker["pid"])] = psutil.Process(int(worker["pid"])).memory_info().rss / 2**20
            except (psutil.Error, KeyError, ValueError):
                continue
    return rss


def run_soak(
    client: TaggerClient,
    photo: bytes,
    requests: int,
    concurrency: int,
    model: str = MODEL_NAME,
    timeout: float = 900.0,
) -> SoakResult:
    """``requests`` POSTs of ``photo`` (rounded up to whole waves), ``concurrency`` at a time, with the
    workers' RSS before and after. :class:`HeyError` without hey, ValueError for a server not on loopback."""
    require_hey()
    host = urlparse(client.inference_url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"refusing to load {host}: soak tests only target this machine (127.0.0.1)")
    requests = whole_waves(requests, concurrency)
    client.ping()  # also renews the token if needed
    before = worker_rss(client, model)
    with tempfile.NamedTemporaryFile(suffix=".jpg") as body:
        body.write(photo)
        body.flush()
        load = run_hey(f"{client.inference_url}/predictions/{model}", Path(body.name), concurrency,
                       client.keys.inference, requests=requests, timeout_s=120, wall_timeout_s=timeout)
    return SoakResult(requests, load, before, worker_rss(client, model))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lizaalert-soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000, help="total requests (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default: %(default)s)")
    parser.add_argument("--photo", type=Path, default=EXAMPLE_PHOTO, help="photo to send (default: %(default)s)")
    parser.add_argument("--model", default=MODEL_NAME, help="(default: %(default)s)")
    parser.add_argument("--inference-url", help="default: $LIZAALERT_INFERENCE_URL or http://127.0.0.1:8080")
    parser.add_argument("--management-url", help="default: $LIZAALERT_MANAGEMENT_URL or http://127.0.0.1:8081")
    parser.add_argument("--key-file", type=Path, help="TorchServe key_file.json (default: run/key_file.json)")
    args = parser.parse_args(argv)
    try:
        client = TaggerClient(args.inference_url, args.management_url, args.key_file)
        result = run_soak(client, args.photo.read_bytes(), args.requests, args.concurrency, args.model)
    except (ClientError, HeyError, OSError, ValueError) as e:
        print(f"lizaalert-soak: {e}", file=sys.stderr)
        return 2
    print(result.report())
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
