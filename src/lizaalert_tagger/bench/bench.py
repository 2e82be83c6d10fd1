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
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from http.server import BaseHTTPRequestHandler, HTTPServer
from multiprocessing import get_context
from pathlib import Path
from lizaalert_tagger.common.machine import available_cores, cpu_model
from lizaalert_tagger.common.paths import DEFAULT_ARCHIVE

SIZES = {"12mp": (4000, 3000), "1080p": (1920, 1080), "12mp-heavy": (4000, 3000), "20mp": (5472, 3648)}
# Sensor noise (sigma, in 8-bit levels) and JPEG quality per photo: the noise makes a file as large
# and as slow to decode as a real one. 12mp/1080p: ~2.4 MB / ~0.5 MB (the first bench's photos);
# 12mp-heavy: ~3.9 MB, a noisy phone photo; 20mp: ~8.6 MB, a DJI drone frame (5472x3648).
NOISE = {"12mp": (6, 90), "1080p": (6, 90), "12mp-heavy": (11, 90), "20mp": (14, 92)}
DEFAULT_SIZES = "12mp,1080p,12mp-heavy,20mp"
SEED_TARGET = {"12mp": 6, "1080p": 8}  # served / seed-style baseline at the top concurrency (the first bench issue)
SERVED_TARGET = {"12mp": 0.9, "1080p": 0.9}  # served / in-process limit; the heavy photos: 0.8


# --- inputs -------------------------------------------------------------------------


def make_photo(size: tuple[int, int], seed: int = 7, noise: float = 6, quality: int = 90) -> bytes:
    """A generated scene at exactly ``size`` with Gaussian sensor-like noise (``noise``: its sigma in
    8-bit levels), saved as JPEG at ``quality``.

    The noise gives the file the size and decoding cost of a real photo (12 MP, sigma 6, q90:
    ~2.4 MB, ~35 ms draft / ~190 ms full decode here); a clean synthetic scene
    compresses to a few hundred KB and decodes several times faster.
    """
    from lizaalert_tagger import scenes as make_scenes
    import numpy as np
    from PIL import Image

    data, _ = make_scenes.generate(seed, 0, max(size), max(size))
    img = Image.open(io.BytesIO(data)).convert("RGB").resize(size, Image.Resampling.BILINEAR)
    grain = np.random.default_rng(seed).normal(0, noise, (size[1], size[0], 3))
    img = Image.fromarray(np.clip(np.asarray(img) + grain, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def bench_photo(name: str, seed: int = 7) -> bytes:
    """The bench's photo called ``name`` (a key of :data:`SIZES`)."""
    if name not in SIZES:
        raise ValueError(f"unknown photo {name!r}; expected one of {sorted(SIZES)}")
    noise, quality = NOISE[name]
    return make_photo(SIZES[name], seed, noise, quality)


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

    from lizaalert_tagger.vision.preprocess import decode_image, image_to_tensor
    from lizaalert_tagger.serving.service import HandlerSettings, load_model, run_inference
    from lizaalert_tagger.common.spec import load_spec

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
    cores = available_cores()
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

    from lizaalert_tagger.vision.answers import decode_logits
    from lizaalert_tagger.vision.explain import GradCAM, explaining_model, explanation_json
    from lizaalert_tagger.vision.preprocess import decode_image, image_to_tensor
    from lizaalert_tagger.serving.service import WEIGHTS_FILENAME, HandlerSettings, load_model, run_inference
    from lizaalert_tagger.common.spec import load_spec

    torch.set_num_threads(threads)
    settings = HandlerSettings.from_yaml(settings)
    spec = load_spec(Path(model_dir) / "attributes.json")
    model = load_model(model_dir, spec, settings)
    explainer = GradCAM(explaining_model(model, model_dir, spec, WEIGHTS_FILENAME, channels_last=settings.channels_last),
                        settings.explain_layer)
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


def explain_cost(model_dir: Path, photo: bytes, config: dict, count: int, layer: str | None = None) -> dict:
    """Predict vs explain of the same photo in-process (batch 1, median of ``count``), with the
    archive's settings and the handler's thread count; Grad-CAM at ``layer`` (default: the
    archive's ``explain_layer``)."""
    settings = dict(config.get("handler", {}))
    if layer:
        settings["explain_layer"] = layer
    workers = int(config.get("maxWorkers", 1))
    threads = settings.get("torch_threads") or max(1, available_cores() // workers)
    with get_context("spawn").Pool(1) as pool:
        predict_ms, explain_ms = pool.map(_explain_worker, [(str(model_dir), photo, count, threads, settings)])[0]
    return {"predict_ms": predict_ms, "explain_ms": explain_ms, "ratio": explain_ms / predict_ms, "count": count,
            "threads": threads, "layer": settings.get("explain_layer")}


# --- seed-style baseline ------------------------------------------------------------------


def serve_baseline(port: int, model_dir: str) -> None:
    """SEED.md's service: one request at a time, full decode, fp32 eager, no eval()/no_grad()."""
    import numpy as np
    import torch
    from PIL import Image

    from lizaalert_tagger.vision.answers import codes_from_logits
    from lizaalert_tagger.vision.model import load_tagger
    from lizaalert_tagger.common.spec import load_spec

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


def hey_command(url: str, photo_path: Path, concurrency: int, token: str | None = None, *,
                requests: int | None = None, seconds: float | None = None) -> list[str]:
    """``hey`` POSTing the photo ``requests`` times (rounded up to a multiple of ``concurrency``:
    hey sends n // c per client) or for ``seconds``."""
    cmd = ["hey", "-c", str(concurrency), "-t", "300", "-m", "POST", "-D", str(photo_path), "-T", "application/octet-stream"]
    cmd += ["-z", f"{seconds}s"] if seconds else ["-n", str(-(-(requests or concurrency) // concurrency) * concurrency)]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    return cmd + [url]


def hey_result(output: str) -> dict:
    """Answered photos per second (hey's own req/s counts failed requests too), latencies, errors."""
    from lizaalert_tagger.bench.soak import parse_hey

    statuses, errors, seconds, _, latency = parse_hey(output)
    return {"rps": statuses.get(200, 0) / seconds, **latency, "errors": sum(n for c, n in statuses.items() if c != 200) + sum(errors.values())}


def hey_load(url: str, photo_path: Path, requests: int, concurrency: int, token: str | None = None) -> dict:
    out = subprocess.run(hey_command(url, photo_path, concurrency, token, requests=requests), capture_output=True, text=True, timeout=1800)
    return hey_result(out.stdout)


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
    parser.add_argument("--config", type=Path,
                        help="a TorchServe config.properties to try instead of the project's (tuning; ports and paths are still set here)")
    parser.add_argument("--concurrency", default="1,4,16,32", help="served concurrencies (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=0,
                        help="requests per load run (default: served 24 x concurrency, at least 96; baseline 8 x concurrency, at least 48)")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"photos, among {', '.join(SIZES)} (default: %(default)s)")
    parser.add_argument("--baseline-sizes", default="12mp,1080p",
                        help="photos that also load the seed-style baseline; 'none' for none (default: %(default)s)")
    parser.add_argument("--explain-sizes", default="12mp,1080p",
                        help="photos whose explanation cost is measured; 'none' for none (default: %(default)s)")
    parser.add_argument("--explain-layers", default="layer3,layer4",
                        help="Grad-CAM layers to time; the archive's explain_layer is what it serves (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny counts: only checks that every row is produced")
    parser.add_argument("--baseline-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes, baseline_sizes, explain_sizes = (_names(v) for v in (args.sizes, args.baseline_sizes, args.explain_sizes))
    unknown = sorted(set(sizes + baseline_sizes + explain_sizes) - set(SIZES))
    if unknown:
        parser.error(f"unknown photos {unknown}; expected names among {sorted(SIZES)}")
    if args.baseline_server:
        serve_baseline(args.baseline_server, args.model_dir)
        return 0

    from lizaalert_tagger.client.http import TaggerClient
    from lizaalert_tagger.ops.runtime import TorchServe, free_port

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

    ts = TorchServe(run_dir=work / "run", model_store=args.archive.parent, ports=(free_port(), free_port(), free_port()),
                    **({"config": args.config} if args.config else {}))
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
        for size_name in sizes:
            photo = bench_photo(size_name)
            photo_path = work / f"{size_name}.jpg"
            photo_path.write_bytes(photo)
            summary[size_name] = {"bytes": len(photo), "pixels": SIZES[size_name]}
            limit = inprocess_limit(model_dir, photo, config, batches=2 if args.quick else 32)
            rows.append((size_name, "in-process limit", "-", limit["rps"], limit["single_ms"], None, None, 0))
            summary[size_name]["inprocess"] = limit
            for layer in _names(args.explain_layers) if size_name in explain_sizes else []:
                cost = explain_cost(model_dir, photo, config, count=3 if args.quick else 15, layer=layer)
                rows.append((size_name, f"in-process explain {layer}", 1, 1000 / cost["explain_ms"], cost["explain_ms"], None, None, 0))
                summary[size_name][f"explain_{layer}"] = cost
            for c in concurrencies:
                served = hey_load(f"{ts.inference_url}/predictions/lizaalert_tagger", photo_path, served_count(c), c, client.keys.inference)
                rows.append((size_name, "served (TorchServe)", c, served["rps"], served.get("p50"), served.get("p95"), served.get("p99"), served["errors"]))
                summary[size_name][f"served_c{c}"] = served
            for c in concurrencies if size_name in baseline_sizes else []:
                seed = hey_load(f"http://127.0.0.1:{baseline_port}/prediction", photo_path, count(c), c)
                rows.append((size_name, "seed-style baseline", c, seed["rps"], seed.get("p50"), seed.get("p95"), seed.get("p99"), seed["errors"]))
                summary[size_name][f"seed_c{c}"] = seed
        summary["worker_rss_mb"] = worker_rss(ts)
        summary["worker_rss_explained_mb"] = rss_after_explanations(ts, client, bench_photo("1080p"))
    finally:
        baseline.kill()
        ts.stop()

    print(f"\nbench: {' '.join(sys.argv)}  ({time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, "
          f"{available_cores()} cores, CPU: {cpu_model()})")
    if args.config:
        print(f"config.properties: {args.config}")
    print(f"archive {args.archive}: workers={config.get('maxWorkers')} batch={config.get('batchSize')} "
          f"delay={config.get('maxBatchDelay')} ms "
          f"handler={config.get('handler')}")
    print(f"\n{'photo':22} {'what':26} {'conc':>4} {'img/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}")
    fmt = lambda v: f"{v:8.0f}" if isinstance(v, (int, float)) else f"{'-':>8}"  # noqa: E731
    for size_name, what, c, rps, p50, p95, p99, errors in rows:
        print(f"{photo_label(size_name, summary[size_name]['bytes']):22} {what:26} {c!s:>4} {rps:7.1f} "
              f"{fmt(p50)} {fmt(p95)} {fmt(p99)} {errors:6d}")
    top = max(concurrencies)
    print("\nratios (targets in parentheses)")
    for size_name in sizes:
        s = summary[size_name]
        parts = [f"served/in-process at c={top} = {s[f'served_c{top}']['rps'] / s['inprocess']['rps']:.2f} "
                 f"(>= {SERVED_TARGET.get(size_name, 0.8)})"]
        if f"seed_c{top}" in s and size_name in SEED_TARGET:
            parts.insert(0, f"served/seed at c={top} = {s[f'served_c{top}']['rps'] / s[f'seed_c{top}']['rps']:.1f}x "
                            f"(>= {SEED_TARGET[size_name]}x)")
        if "served_c1" in s:
            parts.append(f"idle latency / (decode + batch-1 model, idle process) = {s['served_c1']['p50'] / s['inprocess']['single_ms']:.2f} "
                         f"(<= 1.25; {s['served_c1']['p50']:.0f} / {s['inprocess']['single_ms']:.0f} ms; "
                         f"back-to-back in-process {s['inprocess']['hot_single_ms']:.0f} ms)")
        print(f"  {photo_label(size_name, s['bytes'])}: " + "; ".join(parts))
    for size_name in sizes:
        for key, cost in summary[size_name].items():
            if key.startswith("explain_"):
                print(f"  {size_name}: explain ({key[8:]}) / predict, same photo, batch 1, in-process, median of {cost['count']} = "
                      f"{cost['ratio']:.2f}x (<= 3x; {cost['explain_ms']:.0f} / {cost['predict_ms']:.0f} ms, "
                      f"{cost['threads']} threads)")
    print(f"  ready after start: {summary['ready_s']:.1f} s (<= 10 s)")
    print("  worker RSS, predictions only: " + ", ".join(f"{v:.0f} MB" for v in summary["worker_rss_mb"].values())
          + "; after explanations (int8 + fp32 loaded): "
          + ", ".join(f"{v:.0f} MB" for v in summary["worker_rss_explained_mb"].values()) + " (<= 1200 MB)")
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"(raw figures: {work / 'summary.json'})")
    return 0


def _names(value: str) -> list[str]:
    return [] if value.strip().lower() == "none" else [v.strip() for v in value.split(",") if v.strip()]


def photo_label(name: str, size_bytes: int) -> str:
    width, height = SIZES[name]
    return f"{name} {width}x{height} {size_bytes / 1e6:.1f}MB"


def rss_after_explanations(ts, client, photo: bytes, requests: int = 8) -> dict[int, float]:
    """Worker RSS once explanations have run: each worker then holds the served (int8) model and
    the fp32 one Grad-CAM needs. ``requests`` explanations, 4 at a time, reach every worker."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: client.explain(photo), range(requests)))
    return worker_rss(ts)


def worker_rss(ts) -> dict[int, float]:
    import psutil

    return {pid: psutil.Process(pid).memory_info().rss / 2**20 for pid in ts.worker_pids()}


if __name__ == "__main__":
    sys.exit(main())
