"""The load generator ``hey``: finding it, its command line and the one parser of its summary.

Every load the benchmarks put on a server (``lizaalert-bench``, ``-soak``, ``-field-bench``,
``-profile``) is ``hey`` POSTing one file (a photo, or a KServe ``instances`` JSON body), and every figure they print comes from
:func:`parse_hey`.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "install it with scripts/install_system_tools.sh hey (make system-tools) or apt-get install hey"
PERCENTILES = ("p50", "p95", "p99")


class HeyError(RuntimeError):
    """hey is missing, failed, or printed no summary; the message says which and what to do."""


@dataclass
class HeyResult:
    """hey's summary: status codes and errors counted, the run's length, latency percentiles (ms)."""

    statuses: dict[int, int]
    errors: dict[str, int]
    seconds: float
    rps: float  # hey's Requests/sec: failed requests count too
    latency_ms: dict[str, float]

    @property
    def failed(self) -> int:
        """Requests not answered 200: other statuses and transport errors (time-outs, refused connections)."""
        return sum(n for code, n in self.statuses.items() if code != 200) + sum(self.errors.values())

    @property
    def answered_rps(self) -> float:
        """Photos answered 200 per second."""
        return self.statuses.get(200, 0) / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, float]:
        """``{"rps": answered per second, "p50": ..., "p95": ..., "p99": ..., "errors": failed}`` (ms)."""
        return {"rps": self.answered_rps, **self.latency_ms, "errors": self.failed}


def require_hey() -> str:
    """The path of ``hey``; :class:`HeyError` saying how to install it when it is missing."""
    path = shutil.which("hey")
    if path is None:
        raise HeyError(f"the load generator `hey` is not installed: {INSTALL_HINT}")
    return path


def whole_waves(requests: int, concurrency: int) -> int:
    """``requests`` rounded up to a multiple of ``concurrency`` (hey sends n // c per client)."""
    return -(-max(requests, 1) // concurrency) * concurrency


def hey_command(url: str, body: Path, concurrency: int, token: str | None = None, *,
                requests: int | None = None, seconds: float | None = None, timeout_s: int = 300,
                content_type: str = "application/octet-stream") -> list[str]:
    """``hey`` POSTing the file ``body`` ``requests`` times (rounded up to whole waves of
    ``concurrency``) or for ``seconds``; ``timeout_s`` per request."""
    cmd = ["hey", "-c", str(concurrency), "-t", str(timeout_s), "-m", "POST", "-D", str(body), "-T", content_type]
    cmd += ["-z", f"{seconds}s"] if seconds else ["-n", str(whole_waves(requests or concurrency, concurrency))]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    return cmd + [url]


def run_hey(url: str, body: Path, concurrency: int, token: str | None = None, *, requests: int,
            timeout_s: int = 300, wall_timeout_s: float = 1800,
            content_type: str = "application/octet-stream") -> HeyResult:
    """Run hey to the end (``requests`` POSTs of ``body``) and parse its summary."""
    command = hey_command(url, body, concurrency, token, requests=requests, timeout_s=timeout_s, content_type=content_type)
    command[0] = require_hey()
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=wall_timeout_s)
    except subprocess.TimeoutExpired:
        raise HeyError(f"hey ran longer than {wall_timeout_s:.0f} s (stopped): {' '.join(command)}") from None
    if out.returncode != 0:
        raise HeyError(f"hey failed ({out.returncode}): {out.stderr.strip()[:300]}")
    return parse_hey(out.stdout)


def _number(pattern: str, text: str, what: str) -> float:
    match = re.search(pattern, text)
    if match is None:
        raise HeyError(f"hey's output has no {what}: expected its summary, got {text.strip()[:200]!r}")
    return float(match.group(1))


def parse_hey(text: str) -> HeyResult:
    """hey's summary: ``[200] N responses`` lines, the error distribution, ``Total: S secs``,
    ``Requests/sec``, and the latency distribution (``50% in S secs``)."""
    statuses = {int(code): int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
    errors: dict[str, int] = {}
    if "Error distribution:" in text:
        for n, message in re.findall(r"\[(\d+)\]\s+(.+)", text.split("Error distribution:", 1)[1]):
            key = message.strip()[:120]
            errors[key] = errors.get(key, 0) + int(n)
    seconds = _number(r"Total:\s+([\d.]+) secs", text, "total time")
    rps = _number(r"Requests/sec:\s+([\d.]+)", text, "requests per second")
    latency = {f"p{p}": float(s) * 1000 for p, s in re.findall(r"\s(\d+)%+ in ([\d.]+) secs", text)}
    return HeyResult(statuses, errors, seconds, rps, {k: latency[k] for k in PERCENTILES if k in latency})
