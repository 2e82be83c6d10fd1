"""Where a served photo's time goes: per-process CPU and a py-spy profile of the workers under load.

    lizaalert-profile --photo 20mp               # hey -c 32 on the 20 MP photo: 60 s warm-up, 20 s measured
    lizaalert-profile --photo 12mp-heavy --concurrency 16 --warmup 30

Starts TorchServe from the project's config and the default archive (127.0.0.1 only, as
``lizaalert-bench``), loads it with ``hey`` for ``--warmup`` seconds, then measures ``--seconds``
under the same load:

- CPU time per process (psutil): the Java frontend (and its threads, grouped by name: Netty's
  event loops, the per-worker threads, GC, the JIT), each Python worker and ``hey``, in cores;
- ``py-spy record`` on every worker (``--format raw``, idle samples dropped): the share of the
  worker's busy samples in TorchServe's protocol (reading the request, writing the answer),
  decoding, resizing/normalising, the network, metrics/logging and the rest, plus the top
  functions by self time.

The photos are ``lizaalert-bench``'s (``--photo``: one of its SIZES). Needs ``hey`` and
``py-spy`` (``make system-tools``; py-spy is a dev dependency) and ptrace rights over the workers
(root, or ``kernel.yama.ptrace_scope=0``). Only ratios from one run mean anything on a shared host.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lizaalert_tagger.bench.bench import SIZES, bench_photo, photo_label, unpack_archive
from lizaalert_tagger.bench.hey import HeyError, hey_command, parse_hey, require_hey
from lizaalert_tagger.client.http import MODEL_NAME, ClientError
from lizaalert_tagger.common.machine import available_cores, cpu_model
from lizaalert_tagger.common.paths import DEFAULT_ARCHIVE
from lizaalert_tagger.ops.torchserve import TorchServe, free_port

# What a worker's busy sample is doing, by the first of these found in its stack (innermost frame
# first), so that a decode inside the handler counts as decoding, not as "handle".
CATEGORIES = (
    ("network (int8 model)", ("run_inference", "_run_model")),
    ("decode (Pillow)", ("decode_image",)),
    ("resize + normalise", ("image_to_tensor",)),
    ("Grad-CAM", ("explain (lizaalert_tagger",)),
    ("answer JSON", ("postprocess", "decode_logits")),
    ("protocol: read request", ("retrieve_msg", "_retrieve_buffer", "_retrieve_inference_msg")),
    ("protocol: send answer", ("send_intermediate_predict_response", "create_predict_response", "sendall")),
    ("metrics + logging", ("metric", "logging", "emit")),
)


def categorise(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, keys in CATEGORIES:
            if any(key in frame for key in keys):
                return name
    return "other"


def read_raw(path: Path) -> collections.Counter:
    """py-spy's raw output: ``frame;frame;... count`` per line -> Counter of stacks (tuples)."""
    stacks: collections.Counter = collections.Counter()
    if not path.exists():
        return stacks
    for line in path.read_text().splitlines():
        body, _, count = line.rpartition(" ")
        if body and count.isdigit():
            stacks[tuple(body.split(";"))] += int(count)
    return stacks


def summarise_stacks(stacks: collections.Counter, top: int = 12) -> dict:
    total = sum(stacks.values())
    shares: collections.Counter = collections.Counter()
    selves: collections.Counter = collections.Counter()
    for stack, count in stacks.items():
        shares[categorise(list(stack))] += count
        selves[stack[-1]] += count
    return {"samples": total,
            "share": {k: v / total for k, v in shares.most_common()} if total else {},
            "self_top": [(frame, n / total) for frame, n in selves.most_common(top)] if total else []}


def java_thread_groups(pid: int) -> collections.Counter:
    """CPU seconds (user + system) per Java thread name, numbers stripped (``W-9000-x_1`` -> ``W--x_``)."""
    out: collections.Counter = collections.Counter()
    ticks = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        group = "".join(c for c in name if not c.isdigit()).rstrip("#-_ ") or name
        out[group] += (int(fields[11]) + int(fields[12])) / ticks
    return out


def jfr_hot_methods(path: Path, top: int = 15) -> dict:
    """``jdk.ExecutionSample`` events of a JFR recording: the share of samples per method, by self
    time (the innermost frame) and inclusive (anywhere in the stack, once per sample)."""
    out = subprocess.run(["jfr", "print", "--json", "--stack-depth", "64", "--events", "jdk.ExecutionSample", str(path)],
                         capture_output=True, text=True, timeout=300)
    try:
        events = json.loads(out.stdout)["recording"]["events"]
    except (ValueError, KeyError):
        return {}
    selves: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    for event in events:
        frames = event["values"]["stackTrace"]["frames"] if event["values"].get("stackTrace") else []
        names = [f"{f['method']['type']['name'].rsplit('.', 1)[-1]}.{f['method']['name']}" for f in frames]
        if names:
            selves[names[0]] += 1
            inclusive.update(set(names))
    total = len(events)
    if not total:
        return {}
    return {"samples": total, "self_top": [(m, n / total) for m, n in selves.most_common(top)],
            "inclusive_top": [(m, n / total) for m, n in inclusive.most_common(top * 2)]}


def faults_and_switches(proc) -> tuple[int, int]:
    """(minor page faults, voluntary + involuntary context switches) of a process so far."""
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    switches = proc.num_ctx_switches()
    return int(fields[7]), switches.voluntary + switches.involuntary


def cpu_seconds(proc) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far."""
    t = proc.cpu_times()
    return t.user, t.system


@dataclass
class ProfilePlan:
    """What one ``lizaalert-profile`` run loads and records (the command line, typed)."""

    photo: str = "20mp"
    concurrency: int = 32
    warmup: float = 60.0
    seconds: float = 20.0
    archive: Path = DEFAULT_ARCHIVE
    config: Path | None = None
    py_spy: str | None = None  # the py-spy binary; None: CPU per process only
    jfr: bool = True


def _start_py_spy(spy: str, workers: list, seconds: float, work: Path) -> list[tuple[int, Path, subprocess.Popen]]:
    """``py-spy record`` on every worker for ``seconds``, raw output in ``work``."""
    spies = []
    for w in workers:
        out = work / f"spy-{w.pid}.txt"
        spies.append((w.pid, out, subprocess.Popen(
            [spy, "record", "--pid", str(w.pid), "--duration", str(int(seconds)), "--rate", "200",
             "--format", "raw", "--output", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
    return spies


def _start_jfr(java_pid: int, seconds: float, jfr_file: Path) -> None:
    if shutil.which("jcmd"):
        subprocess.run(["jcmd", str(java_pid), "JFR.start", "name=lizaalert", "settings=profile",
                        f"duration={int(seconds)}s", f"filename={jfr_file}"], capture_output=True, timeout=60)


def measure_window(procs: dict, java_pid: int, window: float) -> dict:
    """CPU of each process (cores, kernel share), page faults and context switches, and the Java
    threads' CPU, over ``window`` seconds."""
    import psutil

    threads_before = java_thread_groups(java_pid)
    before = {name: cpu_seconds(p) for name, p in procs.items()}
    events_before = {name: faults_and_switches(p) for name, p in procs.items()}
    total_before = psutil.cpu_times()
    t0 = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - t0
    after = {name: cpu_seconds(p) for name, p in procs.items()}
    events_after = {name: faults_and_switches(p) for name, p in procs.items()}
    total_after = psutil.cpu_times()
    threads_after = java_thread_groups(java_pid)
    busy = sum(getattr(total_after, f) - getattr(total_before, f) for f in ("user", "system", "nice", "irq", "softirq"))
    used = {name: sum(after[name]) - sum(before[name]) for name in procs}
    return {
        "window_s": elapsed,
        "cores_used": {**{name: used[name] / elapsed for name in procs}, "everything (host)": busy / elapsed},
        "kernel_share": {name: (after[name][1] - before[name][1]) / max(1e-9, used[name]) for name in procs},
        "cpu_s": used,
        "events": {name: (events_after[name][0] - events_before[name][0], events_after[name][1] - events_before[name][1])
                   for name in procs},
        "java_threads": {k: (threads_after[k] - threads_before.get(k, 0)) / elapsed
                         for k in threads_after if threads_after[k] - threads_before.get(k, 0) > 0.005 * elapsed},
    }


def per_photo(window: dict, answered_rps: float) -> dict:
    """CPU ms, page faults and context switches per photo answered in the window (about)."""
    photos = max(1e-9, answered_rps * window["window_s"])
    return {name: {"cpu_ms": 1000 * cpu / photos, "page_faults": window["events"][name][0] / photos,
                   "context_switches": window["events"][name][1] / photos}
            for name, cpu in window["cpu_s"].items()}


def _under_load(plan: ProfilePlan, ts, photo: bytes, photo_path: Path, work: Path) -> dict:
    """hey on the served photo; after the warm-up, the measured window with py-spy and JFR running."""
    import psutil

    from lizaalert_tagger.client.http import TaggerClient

    client = TaggerClient(ts.inference_url, ts.management_url, ts.key_file)
    client.predict(photo)
    url = f"{ts.inference_url}/predictions/{MODEL_NAME}"
    hey = subprocess.Popen(hey_command(url, photo_path, plan.concurrency, client.keys.inference,
                                       seconds=plan.warmup + plan.seconds + 2),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(plan.warmup)
    java = psutil.Process(ts.process.pid)
    java = next((p for p in [java, *java.children(recursive=True)] if p.name() == "java"), java)
    workers = [psutil.Process(pid) for pid in ts.worker_pids()]
    procs = {"frontend (Java)": java, "load generator (hey)": psutil.Process(hey.pid),
             **{f"worker {i} (pid {w.pid})": w for i, w in enumerate(workers)}}
    spies = _start_py_spy(plan.py_spy, workers, plan.seconds, work) if plan.py_spy else []
    jfr_file = work / "frontend.jfr"
    if plan.jfr:
        _start_jfr(java.pid, plan.seconds, jfr_file)
    result = measure_window(procs, java.pid, plan.seconds)
    hey_out, _ = hey.communicate(timeout=plan.warmup + plan.seconds + 300)
    result["hey"] = parse_hey(hey_out).summary()
    result["per_photo"] = per_photo(result, result["hey"]["rps"])
    deadline = time.monotonic() + 60
    while plan.jfr and shutil.which("jfr") and not jfr_file.exists() and time.monotonic() < deadline:
        time.sleep(1)  # JFR writes the file when its duration ends
    result["frontend_jfr"] = jfr_hot_methods(jfr_file) if jfr_file.exists() else {}
    result["workers"] = {}
    for pid, out, proc in spies:
        _, err = proc.communicate(timeout=120)
        stacks = read_raw(out)
        if not stacks:
            print(f"py-spy on {pid} recorded nothing: {err.strip()[-300:]}", file=sys.stderr)
        result["workers"][pid] = summarise_stacks(stacks)
    return result


def run_profile(plan: ProfilePlan) -> dict:
    """Serve the archive, load it with hey and measure where the time goes (see the module's doc)."""
    work = Path(tempfile.mkdtemp(prefix="lizaalert-profile-"))
    config = unpack_archive(plan.archive, work / "model")
    photo = bench_photo(plan.photo)
    photo_path = work / f"{plan.photo}.jpg"
    photo_path.write_bytes(photo)
    ts = TorchServe(run_dir=work / "run", model_store=plan.archive.parent, ports=(free_port(), free_port(), free_port()),
                    **({"config": plan.config} if plan.config else {}))
    result: dict = {"photo": photo_label(plan.photo, len(photo)), "concurrency": plan.concurrency, "cpu": cpu_model(),
                    "cores": available_cores(), "archive": str(plan.archive), "handler": config.get("handler")}
    try:
        ts.start(timeout=300)
        result.update(_under_load(plan, ts, photo, photo_path, work))
    finally:
        ts.stop()
    return result


def print_profile(result: dict, py_spy: bool) -> None:
    print(f"\nprofile: {result['photo']} at c={result['concurrency']}, {result['window_s']:.0f} s window "
          f"({time.strftime('%Y-%m-%d %H:%M')}, {result['cores']} cores, CPU: {result['cpu']})")
    print(f"served: {result['hey'].get('rps', 0):.1f} img/s over the whole load{' (py-spy running)' if py_spy else ''}, "
          f"errors {result['hey'].get('errors', 0)}")
    print("\nCPU, in cores:")
    for name, cores in result["cores_used"].items():
        kernel = result["kernel_share"].get(name)
        each = result["per_photo"].get(name)
        print(f"  {name:28} {cores:5.2f}" + (f"  ({kernel:.0%} of it in the kernel; per photo: {each['cpu_ms']:.0f} ms CPU, "
                                             f"{each['page_faults']:.0f} page faults, {each['context_switches']:.0f} context switches)"
                                             if kernel is not None else ""))
    print("  Java threads: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(result["java_threads"].items(), key=lambda kv: -kv[1])))
    if result["frontend_jfr"]:
        jfr = result["frontend_jfr"]
        print(f"\nfrontend (JFR, {jfr['samples']} samples of running Java code):")
        print("  top self time: " + "; ".join(f"{m} {share:.1%}" for m, share in jfr["self_top"][:8]))
        print("  top inclusive: " + "; ".join(f"{m} {share:.1%}" for m, share in jfr["inclusive_top"][:12]))
    for pid, summary in result["workers"].items():
        print(f"\nworker {pid}: {summary['samples']} busy samples")
        for name, share in summary["share"].items():
            print(f"  {name:28} {share:6.1%}")
        print("  top self time: " + "; ".join(f"{frame.split(' (')[0]} {share:.1%}" for frame, share in summary["self_top"][:8]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lizaalert-profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", choices=sorted(SIZES), default="20mp", help="the photo sent (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=32, help="hey's concurrency (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=60,
                        help="seconds of load before measuring: the JVM's JIT compiles for the first minute or so (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=20, help="the measured window (default: %(default)s)")
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE, help="archive to serve (default: %(default)s)")
    parser.add_argument("--config", type=Path, help="a config.properties to use instead of the project's")
    parser.add_argument("--no-py-spy", action="store_true", help="CPU per process only")
    parser.add_argument("--no-jfr", action="store_true",
                        help="skip the Java Flight Recorder profile of the frontend (needs the JDK's jcmd and jfr)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not args.no_py_spy and not Path(spy).exists():
        parser.error("py-spy is not installed (pip install py-spy), or pass --no-py-spy")
    plan = ProfilePlan(photo=args.photo, concurrency=args.concurrency, warmup=args.warmup, seconds=args.seconds,
                       archive=args.archive, config=args.config, py_spy=None if args.no_py_spy else spy, jfr=not args.no_jfr)
    try:
        require_hey()
        result = run_profile(plan)
    except (HeyError, ClientError, OSError, RuntimeError, ValueError) as e:
        print(f"lizaalert-profile: {e}", file=sys.stderr)
        return 1
    print_profile(result, py_spy=plan.py_spy is not None)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
