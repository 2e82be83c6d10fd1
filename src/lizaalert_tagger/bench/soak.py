#!/usr/bin/env python3
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
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import psutil

from lizaalert_tagger.common.paths import EXAMPLE_PHOTO

from lizaalert_tagger.client.http import MODEL_NAME, TaggerClient

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class SoakResult:
    requests: int
    statuses: dict[int, int]
    errors: dict[str, int]
    seconds: float
    rps: float
    latency_ms: dict[str, float]
    rss_before_mb: dict[int, float] = field(default_factory=dict)
    rss_after_mb: dict[int, float] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(n for code, n in self.statuses.items() if code != 200) + sum(self.errors.values())

    def report(self) -> str:
        lines = [
            f"requests  {self.requests} in {self.seconds:.1f} s = {self.rps:.1f} req/s",
            f"statuses  {dict(sorted(self.statuses.items()))}" + (f"  errors {self.errors}" if self.errors else ""),
            "latency   " + "  ".join(f"{k} {v:.0f} ms" for k, v in self.latency_ms.items()),
        ]
        for pid in sorted(set(self.rss_before_mb) | set(self.rss_after_mb)):
            before, after = self.rss_before_mb.get(pid), self.rss_after_mb.get(pid)
            fmt = lambda v: "gone" if v is None else f"{v:.0f} MB"  # noqa: E731
            lines.append(f"worker {pid}  RSS before {fmt(before)}, after {fmt(after)}")
        lines.append(f"failed    {self.failed}")
        return "\n".join(lines)


def parse_hey(text: str) -> tuple[dict[int, int], dict[str, int], float, float, dict[str, float]]:
    """Status codes, errors, total seconds, requests/s and latency percentiles from hey's summary."""
    statuses = {int(code): int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
    errors: dict[str, int] = {}
    if "Error distribution:" in text:
        for n, message in re.findall(r"\[(\d+)\]\s+(.+)", text.split("Error distribution:", 1)[1]):
            errors[message.strip()[:120]] = errors.get(message.strip()[:120], 0) + int(n)
    total = float(re.search(r"Total:\s+([\d.]+) secs", text).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    latency = {f"p{p}": float(s) * 1000 for p, s in re.findall(r"\s(\d+)%+ in ([\d.]+) secs", text)}
    return statuses, errors, total, rps, {k: latency[k] for k in ("p50", "p95", "p99") if k in latency}


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
    hey = shutil.which("hey")
    if hey is None:
        raise SystemExit("soak.py: the load generator `hey` is missing: apt-get install hey (or scripts/install_system_tools.sh hey)")
    host = urlparse(client.inference_url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"soak.py: refusing to load {host}: soak tests only target this machine (127.0.0.1)")
    requests = -(-requests // concurrency) * concurrency  # hey sends n // c per client: keep n a multiple of c
    client.ping()  # also renews the token if needed
    before = worker_rss(client, model)
    with tempfile.NamedTemporaryFile(suffix=".jpg") as body:
        body.write(photo)
        body.flush()
        cmd = [hey, "-n", str(requests), "-c", str(concurrency), "-t", "120", "-m", "POST", "-D", body.name,
               "-T", "application/octet-stream", "-H", f"Authorization: Bearer {client.keys.inference}",
               f"{client.inference_url}/predictions/{model}"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"soak.py: hey failed ({out.returncode}): {out.stderr.strip()[:300]}")
    statuses, errors, seconds, rps, latency = parse_hey(out.stdout)
    return SoakResult(requests, statuses, errors, seconds, rps, latency, before, worker_rss(client, model))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000, help="total requests (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default: %(default)s)")
    parser.add_argument("--photo", type=Path, default=EXAMPLE_PHOTO, help="photo to send (default: %(default)s)")
    parser.add_argument("--model", default=MODEL_NAME, help="(default: %(default)s)")
    parser.add_argument("--inference-url", help="default: $LIZAALERT_INFERENCE_URL or http://127.0.0.1:8080")
    parser.add_argument("--management-url", help="default: $LIZAALERT_MANAGEMENT_URL or http://127.0.0.1:8081")
    parser.add_argument("--key-file", type=Path, help="TorchServe key_file.json (default: run/key_file.json)")
    args = parser.parse_args(argv)
    client = TaggerClient(args.inference_url, args.management_url, args.key_file)
    result = run_soak(client, args.photo.read_bytes(), args.requests, args.concurrency, args.model)
    print(result.report())
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
