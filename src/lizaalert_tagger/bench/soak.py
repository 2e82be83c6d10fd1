"""Soak test: many requests at high concurrency with `hey`, worker memory before, during and after.

    lizaalert-soak --requests 5000 --concurrency 32     # against `make serve`
    lizaalert-soak --instances 64 --concurrency 8 --requests 64 --photo P.jpg   # KServe bodies of 64 photos each

Sends ``--requests`` POSTs of one photo to the default model with the load
generator ``hey`` (Debian package ``hey``), bounded in count and time, to a
loopback server only. Prints the status distribution, throughput, latency
percentiles and each worker's RSS before, at its peak during the load (sampled
every 50 ms) and after (worker PIDs come from the management API's describe
call). Exit code 1 if any request failed.

``--instances N`` sends a KServe-style JSON body ``{"instances": [N x base64 photo]}``
instead of the raw photo (the server takes up to 64 per request, in chunks of its
batch size): the memory check of many photos per request. One such request is
sent first through the client and its N answers compared with the photo's own
``/predictions`` answer, so the figures come with a check that the answers are right.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import psutil

from lizaalert_tagger.bench.hey import HeyError, HeyResult, require_hey, run_hey, whole_waves
from lizaalert_tagger.client.http import MODEL_NAME, ClientError, TaggerClient, instances_body
from lizaalert_tagger.common.paths import EXAMPLE_PHOTO

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class SoakResult:
    requests: int
    load: HeyResult
    rss_before_mb: dict[int, float] = field(default_factory=dict)
    rss_after_mb: dict[int, float] = field(default_factory=dict)
    rss_peak_mb: dict[int, float] = field(default_factory=dict)
    instances: int = 0  # photos per request (0: the raw photo as the body)

    @property
    def statuses(self) -> dict[int, int]:
        return self.load.statuses

    @property
    def failed(self) -> int:
        return self.load.failed

    def report(self) -> str:
        load = self.load
        lines = [
            f"requests  {self.requests}" + (f" of {self.instances} instances each" if self.instances else "")
            + f" in {load.seconds:.1f} s = {load.rps:.1f} req/s",
            f"statuses  {dict(sorted(load.statuses.items()))}" + (f"  errors {load.errors}" if load.errors else ""),
            "latency   " + "  ".join(f"{k} {v:.0f} ms" for k, v in load.latency_ms.items()),
        ]
        fmt = lambda v: "gone" if v is None else f"{v:.0f} MB"  # noqa: E731
        for pid in sorted(set(self.rss_before_mb) | set(self.rss_after_mb) | set(self.rss_peak_mb)):
            before, after = self.rss_before_mb.get(pid), self.rss_after_mb.get(pid)
            lines.append(f"worker {pid}  RSS before {fmt(before)}, peak {fmt(self.rss_peak_mb.get(pid))}, after {fmt(after)}")
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


class PeakRss:
    """The highest RSS of each worker while the ``with`` block runs, polled every ``every`` seconds."""

    def __init__(self, pids: list[int], every: float = 0.05) -> None:
        self.pids, self.every = pids, every
        self.peak: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        processes = {}
        for pid in self.pids:
            try:
                processes[pid] = psutil.Process(pid)
            except psutil.Error:
                continue
        while True:
            for pid, process in processes.items():
                try:
                    self.peak[pid] = max(self.peak.get(pid, 0.0), process.memory_info().rss / 2**20)
                except psutil.Error:
                    continue
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def check_instances(client: TaggerClient, photo: bytes, count: int, model: str = MODEL_NAME) -> None:
    """One request of ``count`` instances of ``photo``: each answer must equal the photo's own prediction
    (same codes; scores within 1e-4, the batch's rounding); ValueError says what differs."""
    alone = client.predict(photo, model)
    predictions = client.predict_instances([photo] * count, model)
    for number, prediction in enumerate(predictions):
        for key, value in alone["attributes"].items():
            got = prediction["attributes"][key]
            if got["code"] != value["code"] or abs(got["score"] - value["score"]) > 1e-4:
                raise ValueError(f"instance {number}: {key} is {got['code']} ({got['score']}), alone "
                                 f"{value['code']} ({value['score']})")


def run_soak(
    client: TaggerClient,
    photo: bytes,
    requests: int,
    concurrency: int,
    model: str = MODEL_NAME,
    timeout: float = 900.0,
    instances: int = 0,
) -> SoakResult:
    """``requests`` POSTs of ``photo`` (rounded up to whole waves), ``concurrency`` at a time, with the
    workers' RSS before, at the peak and after; ``instances``: each POST a JSON body of that many copies
    (checked once first). :class:`HeyError` without hey, ValueError for a server not on loopback."""
    require_hey()
    host = urlparse(client.inference_url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"refusing to load {host}: soak tests only target this machine (127.0.0.1)")
    requests = whole_waves(requests, concurrency)
    client.ping()  # also renews the token if needed
    if instances:
        check_instances(client, photo, instances, model)
    before = worker_rss(client, model)
    with tempfile.NamedTemporaryFile(suffix=".json" if instances else ".jpg") as body:
        body.write(instances_body([photo] * instances) if instances else photo)
        body.flush()
        with PeakRss(list(before)) as peak:
            load = run_hey(f"{client.inference_url}/predictions/{model}", Path(body.name), concurrency,
                           client.keys.inference, requests=requests, timeout_s=120, wall_timeout_s=timeout,
                           content_type="application/json" if instances else "application/octet-stream")
    return SoakResult(requests, load, before, worker_rss(client, model), peak.peak, instances)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lizaalert-soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000, help="total requests (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default: %(default)s)")
    parser.add_argument("--photo", type=Path, default=EXAMPLE_PHOTO, help="photo to send (default: %(default)s)")
    parser.add_argument("--instances", type=int, default=0,
                        help="send each request as {\"instances\": [the photo N times]} (KServe style, at most 64; "
                             "default: the raw photo)")
    parser.add_argument("--model", default=MODEL_NAME, help="(default: %(default)s)")
    parser.add_argument("--inference-url", help="default: $LIZAALERT_INFERENCE_URL or http://127.0.0.1:8080")
    parser.add_argument("--management-url", help="default: $LIZAALERT_MANAGEMENT_URL or http://127.0.0.1:8081")
    parser.add_argument("--key-file", type=Path, help="TorchServe key_file.json (default: run/key_file.json)")
    args = parser.parse_args(argv)
    try:
        client = TaggerClient(args.inference_url, args.management_url, args.key_file)
        result = run_soak(client, args.photo.read_bytes(), args.requests, args.concurrency, args.model,
                          instances=args.instances)
    except (ClientError, HeyError, OSError, ValueError) as e:
        print(f"lizaalert-soak: {e}", file=sys.stderr)
        return 2
    print(result.report())
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
