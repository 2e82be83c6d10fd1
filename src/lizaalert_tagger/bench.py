#!/usr/bin/env python3
"""Benchmark: in-process pipeline limit, the served model, and a seed-style baseline, side by side.

    make bench                         # full run (a few minutes)
    lizaalert-bench --quick    # tiny counts: checks that every row is produced

For 12 MP (4000x3000) and 1080p (1920x1080) JPEGs separately, prints one table:

- in-process: decode + preprocess + model exactly as the handler does it
  (the archive's model-config.yaml: precision, channels_last, draft decoding,
  batch size), in ``maxWorkers`` processes with the handler's thread count
  each: what these cores can do without any serving overhead;
- served: TorchServe started from the project's config and the default
  archive, loaded with ``hey`` at several concurrencies (127.0.0.1 only);
- seed-style baseline: what SEED.md describes, written here with the standard
  library: one photo per request on a single-threaded HTTP server, full
  decode, fp32 eager, no eval()/no_grad(), no batching, same load;

then the ratios the performance issue asks for, the time from start to the
first answer and the workers' RSS. Only ratios from one run mean anything on a
shared machine.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from http.server import BaseHTTPRequestHandler, HTTPServer
from multiprocessing import get_context
from pathlib import Path
from lizaalert_tagger.paths import DEFAULT_ARCHIVE, ROOT

SIZES = {"12mp": (4000, 3000), "1080p": (1920, 1080)}


# --- inputs -------------------------------------------------------------------------


def make_photo(size: tuple[int, int], seed: int = 7) -> bytes:
    """A generated scene at exactly ``size`` with sensor-like noise, JPEG quality 90.

    The noise gives the file the size and decoding cost of a real photo (12 MP:
    ~2.2 MB, ~35 ms draft / ~190 ms full decode here); a clean synthetic scene
    compresses to a few hundred KB and decodes several times faster.
    """
    from lizaalert_tagger import scenes as make_scenes
    import numpy as np
    from PIL import Image

    data, _ = make_scenes.generate(seed, 0, max(size), max(size))
    img = Image.open(io.BytesIO(data)).convert("RGB").resize(size, Image.Resampling.BILINEAR)
    noise = np.random.default_rng(seed).normal(0, 6, (size[1], size[0], 3))
    img = Image.fromarray(np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def unpack_archive(archive: Path, into: Path) -> dict:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(into)
    import yaml

    return yaml.safe_load((into / "model-config.yaml").read_text())


# --- in-process limit -----------------------------------------------------------------


def _inprocess_worker(args: tuple) -> tuple[int, float, float, float, float]:
    """One worker process: ``batches`` batches of ``batch`` photos, as the handler runs them."""
    model_dir, photo, batch, batches, threads, settings = args
    import torch

    from lizaalert_tagger.preprocess import decode_image, image_to_tensor
    from lizaalert_tagger.service import HandlerSettings, load_model, run_inference
    from lizaalert_tagger.spec import load_spec

    torch.set_num_threads(threads)
    settings = HandlerSettings.from_yaml(settings)
    spec = load_spec(Path(model_dir) / "attributes.json")
    model = load_model(model_dir, spec, settings)
    height, width = spec.preprocessing.size

    def run(images):
        return run_inference(model, images, bf16=settings.bf16, channels_last=settings.channels_last)

    def prep():
        decoded = decode_image(photo, target_size=(width, height), draft=settings.jpeg_draft)
        return image_to_tensor(decoded.image, spec.preprocessing)

    for size in (1, batch) * 2:  # warm-up, as the handler does it
        run(torch.stack([prep() for _ in range(size)]))
    # Latency of one photo alone: decode + batch-1 model, the median of 9 (one sample is noise here),
    # measured twice: back to back, and on an idle process (50 ms pause before each photo), which is
    # what a served request at concurrency 1 meets. The int8 kernels run ~2x slower on an idle
    # core than back to back (measured here: 8.6 vs 18.9 ms for the model), server or not.
    def lone_photo(pause: float) -> tuple[float, float]:
        singles, decodes = [], []
        for _ in range(9):
            time.sleep(pause)
            t0 = time.perf_counter()
            one = prep()
            t1 = time.perf_counter()
            run(one[None])
            singles.append((time.perf_counter() - t0) * 1000)
            decodes.append((t1 - t0) * 1000)
        return sorted(singles)[4], sorted(decodes)[4]

    hot_ms, decode_ms = lone_photo(0.0)
    single_ms, _ = lone_photo(0.05)
    start = time.perf_counter()
    for _ in range(batches):
        run(torch.stack([prep() for _ in range(batch)]))
    return batch * batches, time.perf_counter() - start, single_ms, decode_ms, hot_ms


def inprocess_limit(model_dir: Path, photo: bytes, config: dict, batches: int) -> dict:
    settings = config.get("handler", {})
    workers = int(config.get("maxWorkers", 1))
    cores = len(os.sched_getaffinity(0))
    threads = settings.get("torch_threads") or max(1, cores // workers)
    batch = int(config.get("batchSize", 1))
    with get_context("spawn").Pool(workers) as pool:
        results = pool.map(_inprocess_worker, [(str(model_dir), photo, batch, batches, threads, settings)] * workers)
    images = sum(r[0] for r in results)
    seconds = max(r[1] for r in results)
    return {"rps": images / seconds, "single_ms": min(r[2] for r in results), "decode_ms": min(r[3] for r in results),
            "hot_single_ms": min(r[4] for r in results),
            "workers": workers, "threads": threads, "batch": batch}


# --- explanation cost ---------------------------------------------------------------------


def _explain_worker(args: tuple) -> tuple[float, float]:
    """One process, the handler's thread count: the same photo predicted and explained, batch 1,
    interleaved; the medians in ms (decode + preprocess + served model + answer JSON, and the
    same plus Grad-CAM on the fp32 model and the maps' JSON, as the handler answers them)."""
    model_dir, photo, count, threads, settings = args
    import torch

    from lizaalert_tagger.decode import decode_logits
    from lizaalert_tagger.explain import DEFAULT_LAYER, GradCAM, explaining_model, explanation_json
    from lizaalert_tagger.preprocess import decode_image, image_to_tensor
    from lizaalert_tagger.service import WEIGHTS_FILENAME, HandlerSettings, load_model, run_inference
    from lizaalert_tagger.spec import load_spec

    torch.set_num_threads(threads)
    settings = HandlerSettings.from_yaml(settings)
    spec = load_spec(Path(model_dir) / "attributes.json")
    model = load_model(model_dir, spec, settings)
    explainer = GradCAM(explaining_model(model, model_dir, spec, WEIGHTS_FILENAME), DEFAULT_LAYER)
    height, width = spec.preprocessing.size

    def predict(explain: bool) -> float:
        start = time.perf_counter()
        decoded = decode_image(photo, target_size=(width, height), draft=settings.jpeg_draft)
        image = image_to_tensor(decoded.image, spec.preprocessing)[None]
        logits = run_inference(model, image, bf16=settings.bf16, channels_last=settings.channels_last)
        answer = decode_logits(logits, spec)[0]
        if explain:
            explanation = explainer.explain(image, [spec.answer_codes(answer)])
            answer["explanations"] = explanation_json(explanation, 0, spec)
        json.dumps(answer)
        return (time.perf_counter() - start) * 1000

    for _ in range(3):  # warm-up, as the handler does it (and its first explanation)
        predict(False), predict(True)
    predicted, explained = [], []
    for _ in range(count):
        predicted.append(predict(False))
        explained.append(predict(True))
    return sorted(predicted)[len(predicted) // 2], sorted(explained)[len(explained) // 2]


def explain_cost(model_dir: Path, photo: bytes, config: dict, count: int) -> dict:
    """Predict vs explain of the same photo in-process (batch 1, median of ``count``), with the
    archive's settings and the handler's thread count."""
    settings = config.get("handler", {})
    workers = int(config.get("maxWorkers", 1))
    threads = settings.get("torch_threads") or max(1, len(os.sched_getaffinity(0)) // workers)
    with get_context("spawn").Pool(1) as pool:
        predict_ms, explain_ms = pool.map(_explain_worker, [(str(model_dir), photo, count, threads, settings)])[0]
    return {"predict_ms": predict_ms, "explain_ms": explain_ms, "ratio": explain_ms / predict_ms, "count": count,
            "threads": threads}


# --- seed-style baseline ------------------------------------------------------------------


def serve_baseline(port: int, model_dir: str) -> None:
    """SEED.md's service: one request at a time, full decode, fp32 eager, no eval()/no_grad()."""
    import numpy as np
    import torch
    from PIL import Image

    from lizaalert_tagger.decode import codes_from_logits
    from lizaalert_tagger.model import load_tagger
    from lizaalert_tagger.spec import load_spec

    spec = load_spec(Path(model_dir) / "attributes.json")
    model = load_tagger(Path(model_dir) / "weights.pt", spec)
    model.train()  # the seed never called eval()
    mean = torch.tensor(spec.preprocessing.mean or (0, 0, 0)).view(3, 1, 1)
    std = torch.tensor(spec.preprocessing.std or (1, 1, 1)).view(3, 1, 1)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            img = Image.open(io.BytesIO(body)).convert("RGB").resize((256, 256))
            x = (torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255 - mean) / std
            logits = model(x[None])  # no no_grad(), no batching
            answer = {key: codes[0] for key, codes in codes_from_logits(logits, spec).items()}
            out = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args):
            pass

    class Server(HTTPServer):
        request_queue_size = 1024  # queue connections as uvicorn would, instead of refusing them

    Server(("127.0.0.1", port), Handler).serve_forever()


# --- load ---------------------------------------------------------------------------------


def hey_load(url: str, photo_path: Path, requests: int, concurrency: int, token: str | None = None) -> dict:
    from lizaalert_tagger.soak import parse_hey

    requests = -(-requests // concurrency) * concurrency  # hey sends n // c per client
    cmd = ["hey", "-n", str(requests), "-c", str(concurrency), "-t", "300", "-m", "POST", "-D", str(photo_path),
           "-T", "application/octet-stream"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=1800)
    statuses, errors, seconds, rps, latency = parse_hey(out.stdout)
    # only answered photos count: hey's own req/s includes failed requests
    return {"rps": statuses.get(200, 0) / seconds, **latency, "errors": sum(n for c, n in statuses.items() if c != 200) + sum(errors.values())}


def wait_http(url: str, timeout: float = 120) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.3)
    raise TimeoutError(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE, help="archive to benchmark (default: %(default)s)")
    parser.add_argument("--concurrency", default="1,4,16,32", help="served concurrencies (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=0,
                        help="requests per load run (default: served 24 x concurrency, at least 96; baseline 8 x concurrency, at least 48)")
    parser.add_argument("--sizes", default="12mp,1080p", help="photo sizes (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny counts: only checks that every row is produced")
    parser.add_argument("--baseline-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_server:
        serve_baseline(args.baseline_server, args.model_dir)
        return 0

    from lizaalert_tagger.client import TaggerClient
    from lizaalert_tagger.runtime import TorchServe, free_port

    concurrencies = [int(c) for c in args.concurrency.split(",")]
    # Served runs need many requests per client (24 each): with a few, the ramp-up and the tail of
    # the last wave dominate and understate throughput. The baseline is single-threaded (no ramp),
    # and 8 per client already takes minutes there.
    served_count = lambda c: args.requests or (max(4, 2 * c) if args.quick else max(96, 24 * c))  # noqa: E731
    count = lambda c: args.requests or (max(4, 2 * c) if args.quick else max(48, 8 * c))  # noqa: E731
    work = Path(tempfile.mkdtemp(prefix="lizaalert-bench-"))
    model_dir = work / "model"
    config = unpack_archive(args.archive, model_dir)
    rows: list[tuple] = []
    summary: dict = {}

    ts = TorchServe(run_dir=work / "run", model_store=args.archive.parent, ports=(free_port(), free_port(), free_port()))
    t0 = time.monotonic()
    ts.start(timeout=300)
    client = TaggerClient(ts.inference_url, ts.management_url, ts.key_file)
    client.predict(make_photo((640, 480)))
    summary["ready_s"] = time.monotonic() - t0
    baseline_port = free_port()
    baseline = subprocess.Popen([sys.executable, __file__, "--baseline-server", str(baseline_port), "--model-dir", str(model_dir)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{baseline_port}/")
        for size_name in args.sizes.split(","):
            photo = make_photo(SIZES[size_name])
            photo_path = work / f"{size_name}.jpg"
            photo_path.write_bytes(photo)
            limit = inprocess_limit(model_dir, photo, config, batches=2 if args.quick else 32)
            rows.append((size_name, "in-process limit", "-", limit["rps"], limit["single_ms"], None, None, 0))
            summary[size_name] = {"inprocess": limit}
            cost = explain_cost(model_dir, photo, config, count=3 if args.quick else 15)
            rows.append((size_name, "in-process explain", 1, 1000 / cost["explain_ms"], cost["explain_ms"], None, None, 0))
            summary[size_name]["explain"] = cost
            for c in concurrencies:
                served = hey_load(f"{ts.inference_url}/predictions/lizaalert_tagger", photo_path, served_count(c), c, client.keys.inference)
                rows.append((size_name, "served (TorchServe)", c, served["rps"], served.get("p50"), served.get("p95"), served.get("p99"), served["errors"]))
                summary[size_name][f"served_c{c}"] = served
            for c in concurrencies:
                seed = hey_load(f"http://127.0.0.1:{baseline_port}/prediction", photo_path, count(c), c)
                rows.append((size_name, "seed-style baseline", c, seed["rps"], seed.get("p50"), seed.get("p95"), seed.get("p99"), seed["errors"]))
                summary[size_name][f"seed_c{c}"] = seed
        summary["worker_rss_mb"] = worker_rss(ts)
    finally:
        baseline.kill()
        ts.stop()

    print(f"\nbench: {' '.join(sys.argv)}  ({time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, "
          f"{len(os.sched_getaffinity(0))} cores, {platform.processor() or platform.machine()})")
    print(f"archive {args.archive.name}: workers={config.get('maxWorkers')} batch={config.get('batchSize')} "
          f"handler={config.get('handler')}")
    print(f"\n{'photo':6} {'what':22} {'conc':>4} {'img/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}")
    fmt = lambda v: f"{v:8.0f}" if isinstance(v, (int, float)) else f"{'-':>8}"  # noqa: E731
    for size_name, what, c, rps, p50, p95, p99, errors in rows:
        print(f"{size_name:6} {what:22} {c!s:>4} {rps:7.1f} {fmt(p50)} {fmt(p95)} {fmt(p99)} {errors:6d}")
    top = max(concurrencies)
    print("\nratios (targets in parentheses)")
    for size_name, target in (("12mp", 6), ("1080p", 8)):
        if size_name not in summary:
            continue
        s = summary[size_name]
        print(f"  {size_name}: served/seed at c={top} = {s[f'served_c{top}']['rps'] / s[f'seed_c{top}']['rps']:.1f}x (>= {target}x); "
              f"served/in-process = {s[f'served_c{top}']['rps'] / s['inprocess']['rps']:.2f} (>= 0.9); "
              + (f"idle latency / (decode + batch-1 model, idle process) = {s['served_c1']['p50'] / s['inprocess']['single_ms']:.2f} "
                 f"(<= 1.25; {s['served_c1']['p50']:.0f} / {s['inprocess']['single_ms']:.0f} ms; "
                 f"back-to-back in-process {s['inprocess']['hot_single_ms']:.0f} ms)" if "served_c1" in s else ""))
    for size_name in SIZES:
        if size_name in summary and "explain" in summary[size_name]:
            cost = summary[size_name]["explain"]
            print(f"  {size_name}: explain/predict, same photo, batch 1, in-process, median of {cost['count']} = "
                  f"{cost['ratio']:.2f}x (<= 3x; {cost['explain_ms']:.0f} / {cost['predict_ms']:.0f} ms, "
                  f"{cost['threads']} threads)")
    print(f"  ready after start: {summary['ready_s']:.1f} s (<= 10 s); worker RSS: "
          + ", ".join(f"{v:.0f} MB" for v in summary["worker_rss_mb"].values()) + " (<= 1200 MB)")
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"(raw figures: {work / 'summary.json'})")
    return 0


def worker_rss(ts) -> dict[int, float]:
    import psutil

    return {pid: psutil.Process(pid).memory_info().rss / 2**20 for pid in ts.worker_pids()}


if __name__ == "__main__":
    sys.exit(main())
