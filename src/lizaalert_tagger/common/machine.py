"""Facts about the machine that figures and thread counts depend on (torch-free).

Every figure names the CPU it ran on (:func:`cpu_model`), and every thread or process count
starts from :func:`available_cores`, which honours a container's CPU quota. :func:`has_amx_bf16`
reads the CPU's flags for the explaining pass's precision (``explain_precision: auto``).
"""
from __future__ import annotations

import math
import os
import platform
from pathlib import Path


def available_cores(cgroup_cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """CPUs this process may really use: its affinity, capped by a cgroup v2 CPU quota.

    In a container limited to 2 CPUs on a 32-core node the affinity says 32;
    the quota (``cpu.max``: "200000 100000") says 2, and threads beyond that
    only fight over the quota.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path(cgroup_cpu_max).read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota visible: the affinity is the limit
    return cores


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name, e.g. 'AMD EPYC 9R14' or 'Intel(R) Xeon(R) Platinum 8488C'."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (the first ``flags`` line of ``cpuinfo``); empty where there is none (not Linux x86)."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # AMX tiles (Intel Sapphire Rapids+), AVX-512 BF16 (AMD Zen 4, Intel Cooper Lake+)


def has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bf16 natively (AMX or AVX-512 BF16), not by emulation.

    The explaining pass's ``explain_precision: auto`` takes bf16 there: on a 2-core AMD EPYC with
    AVX-512 BF16 and no AMX it made a one-object explanation 1.4-1.5x faster with the same
    pointing game (BENCHMARKS.md, "Explanations"); where bf16 is emulated it is many times slower.
    """
    flags = cpu_flags(cpuinfo)
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)
