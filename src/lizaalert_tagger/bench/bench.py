"""Benchmark: in-process pipeline limit, the served model, and a seed-style baseline, side by side.

    make bench                         # full run (a few minutes)
    lizaalert-bench --quick    # tiny counts: checks that every row is produced

For each photo size (``--sizes``: 12 MP, 1080p, a heavy 12 MP and a 20 MP drone frame), prints one table:

- in-process: decode + preprocess + model exactly as the handler does it
  (the archive's model-config.yaml: precision, channels_last, draft decoding,
  batch size), in ``maxWorkers`` processes with the handler's thread count
  each: what these cores can do without any serving overhead;
- served: TorchServe started from the project's config and the default
  archive, loaded with ``hey`` at several concurrencies (127.0.0.1 only);
- seed-style baseline: the original hackathon service as it ran, written here
  with the standard library: one photo per request on a single-threaded HTTP
  server, full decode, fp32 eager, no eval()/no_grad(), no batching, same load;

then the ratios against the project's targets (BENCHMARKS.md), the time from
start to the first answer and the workers' RSS. Needs ``hey``
(scripts/install_system_tools.sh hey). Only ratios from one run mean anything
on a shared machine.
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
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from lizaalert_tagger.bench.hey import HeyError, require_hey, run_hey
from lizaalert_tagger.client.http import MODEL_NAME, ClientError
from lizaalert_tagger.common.machine import available_cores, cpu_model
from lizaalert_tagger.common.paths import DEFAULT_ARCHIVE
from lizaalert_tagger.ops.torchserve import TorchServe, free_port

SIZES = {"12mp": (4000, 3000), "1080p": (1920, 1080), "12mp-heavy": (4000, 3000), "20mp": (5472, 3648)}
# Sensor noise (sigma, in 8-bit levels) and JPEG quality per photo: the noise makes a file as large
# and as slow to decode as a real one. 12mp/1080p: ~2.4 MB / ~0.5 MB (the first bench's photos);
# 12mp-heavy: ~3.9 MB, a noisy phone photo; 20mp: ~8.6 MB, a DJI drone frame (5472x3648).
NOISE = {"12mp": (6, 90), "1080p": (6, 90), "12mp-heavy": (11, 90), "20mp": (14, 92)}
DEFAULT_SIZES = "12mp,1080p,12mp-heavy,20mp"
SEED_TARGET = {"12mp": 6, "1080p": 8}  # served / seed-style baseline at the top concurrency (BENCHMARKS.md)
SERVED_TARGET = {"12mp": 0.9, "1080p": 0.9}  # served / in-process limit; the heavy photos: 0.8


# --- inputs -------------------------------------------------------------------------


def make_photo(size: tuple[int, int], seed: int = 7, noise: float = 6, quality: int = 90) -> bytes:
    """A generated scene at exactly ``size`` with Gaussian sensor-like noise (``noise``: its sigma in
    8-bit levels), saved as JPEG at ``quality``.

    The noise gives the file the size and decoding cost of a real photo (12 MP, sigma 6, q90:
    ~2.4 MB, ~35 ms draft / ~190 ms full decode here); a clean synthetic scene
    compresses to a few hundred KB and decodes several times faster.
    """
    import numpy as np
    from PIL import Image

    from lizaalert_tagger import scenes

    data, _ = scenes.generate(seed, 0, max(size), max(size))
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


def scene_photos(count: int, seed: int = 7) -> list[bytes]:
    """``count`` generated held-out scenes (their real sizes, 640..4000 px), JPEG bytes."""
    from lizaalert_tagger.scenes import generate

    return [generate(seed, index)[0] for index in range(count)]


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
    from lizaalert_tagger.serving.settings import HandlerSettings
    from lizaalert_tagger.vision.inference import load_model, run_inference
    from lizaalert_tagger.common.spec import load_spec

    torch.set_num_threads(threads)
    settings = HandlerSettings.from_yaml(settings)
    spec = load_spec(Path(model_dir) / "attributes.json")
    model = load_model(model_dir, spec, settings.precision, channels_last=settings.channels_last)
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


def handler_threads(config: dict) -> int:
    """The torch threads of one worker, as the handler sets them: ``torch_threads``, or the
    available cores shared by ``maxWorkers`` workers."""
    workers = int(config.get("maxWorkers", 1))
    return (config.get("handler") or {}).get("torch_threads") or max(1, available_cores() // workers)


def inprocess_limit(model_dir: Path, photo: bytes, config: dict, batches: int) -> dict:
    """Photos per second of ``maxWorkers`` processes running the handler's pipeline flat out,
    and one photo's latency alone."""
    settings = config.get("handler", {})
    workers = int(config.get("maxWorkers", 1))
    threads = handler_threads(config)
    batch = int(config.get("batchSize", 1))
    with get_context("spawn").Pool(workers) as pool:
        results = pool.map(_inprocess_worker, [(str(model_dir), photo, batch, batches, threads, settings)] * workers)
    images = sum(r[0] for r in results)
    seconds = max(r[1] for r in results)
    return {"rps": images / seconds, "single_ms": min(r[2] for r in results), "decode_ms": min(r[3] for r in results),
            "hot_single_ms": min(r[4] for r in results),
            "workers": workers, "threads": threads, "batch": batch}


# --- explanation cost ---------------------------------------------------------------------


def _explain_worker(args: tuple) -> tuple[float, float, float]:
    """One process, the handler's thread count: the same photo predicted and explained, batch 1,
    interleaved; the medians in ms of decode + preprocess + served model + answer JSON, and of the
    same plus Grad-CAM on the fp32 model and the maps' JSON, as the handler answers them: every
    attribute explained (``target=all``, the dearest request) and one object explained (what the
    handler does by default for a photo with one object found: one backward pass), in the
    archive's ``explain_precision``."""
    model_dir, photo, count, threads, settings = args
    import torch

    from lizaalert_tagger.vision.answers import decode_logits
    from lizaalert_tagger.vision.explain import GradCAM, explaining_model, explanation_json
    from lizaalert_tagger.vision.preprocess import decode_image, image_to_tensor
    from lizaalert_tagger.serving.settings import HandlerSettings
    from lizaalert_tagger.vision.inference import load_model, run_inference
    from lizaalert_tagger.common.spec import load_spec

    torch.set_num_threads(threads)
    settings = HandlerSettings.from_yaml(settings)
    spec = load_spec(Path(model_dir) / "attributes.json")
    model = load_model(model_dir, spec, settings.precision, channels_last=settings.channels_last)
    explainer = GradCAM(explaining_model(model, model_dir, spec, channels_last=settings.channels_last),
                        settings.explain_layer, settings.resolved_explain_precision())
    height, width = spec.preprocessing.size
    one_object = [next(a.key for a in spec.attributes if a.is_binary)]

    def predict(wanted: list[str] | None | bool) -> float:
        start = time.perf_counter()
        decoded = decode_image(photo, target_size=(width, height), draft=settings.jpeg_draft)
        image = image_to_tensor(decoded.image, spec.preprocessing)[None]
        logits = run_inference(model, image, bf16=settings.bf16, channels_last=settings.channels_last)
        answer = decode_logits(logits, spec)[0]
        if wanted is not False:
            explanation = explainer.explain(image, [spec.answer_codes(answer)], None if wanted is None else [wanted])
            answer["explanations"] = explanation_json(explanation, 0, spec)
        json.dumps(answer)
        return (time.perf_counter() - start) * 1000

    for _ in range(3):  # warm-up, as the handler does it (and its first explanation)
        predict(False), predict(None), predict(one_object)
    predicted, every, one = [], [], []
    for _ in range(count):
        predicted.append(predict(False))
        every.append(predict(None))
        one.append(predict(one_object))
    return tuple(sorted(times)[len(times) // 2] for times in (predicted, every, one))


def explain_cost(model_dir: Path, photo: bytes, config: dict, count: int, layer: str | None = None,
                 precision: str | None = None) -> dict:
    """Predict vs explain of the same photo in-process (batch 1, median of ``count``): every attribute
    (``target=all``) and one object; with the archive's settings and the handler's thread count;
    Grad-CAM at ``layer`` (default: the archive's ``explain_layer``) in ``precision`` (default: the
    archive's ``explain_precision`` as this CPU resolves it)."""
    settings = dict(config.get("handler", {}))
    if layer:
        settings["explain_layer"] = layer
    if precision:
        settings["explain_precision"] = precision
    threads = handler_threads(config)
    with get_context("spawn").Pool(1) as pool:
        predict_ms, all_ms, one_ms = pool.map(_explain_worker, [(str(model_dir), photo, count, threads, settings)])[0]
    from lizaalert_tagger.serving.settings import HandlerSettings

    return {"predict_ms": predict_ms, "explain_ms": all_ms, "ratio": all_ms / predict_ms,
            "one_object_ms": one_ms, "one_object_ratio": one_ms / predict_ms, "count": count, "threads": threads,
            "layer": settings.get("explain_layer"),
            "precision": HandlerSettings.from_yaml(settings).resolved_explain_precision()}


def served_explain_cost(client, photos: list[bytes], count: int, one_key: str = "car") -> dict:
    """Through TorchServe, one request at a time: the median client-side latency of ``/predictions``, of
    ``/explanations`` with one map (the default request for a photo with one object found, else
    ``target=<one_key>`` on a photo with none) and of ``target=all``, on the photo among ``photos``
    whose default explanation has the fewest maps (``maps`` says how many the one-map request got)."""
    found = [len(client.explain(p).get("explanations", {})) for p in photos]
    best = min(range(len(photos)), key=lambda i: (found[i] != 1, found[i]))
    chosen, target = photos[best], (one_key if found[best] == 0 else None)
    maps = len(client.explain(chosen, target=target).get("explanations", {}))

    def median_ms(call) -> float:
        call()  # warm
        times = []
        for _ in range(count):
            start = time.perf_counter()
            call()
            times.append((time.perf_counter() - start) * 1000)
        return sorted(times)[len(times) // 2]

    predict = median_ms(lambda: client.predict(chosen))
    one = median_ms(lambda: client.explain(chosen, target=target))
    every = median_ms(lambda: client.explain(chosen, target="all"))
    return {"predict_ms": predict, "one_object_ms": one, "one_object_ratio": one / predict, "maps": maps,
            "asked": f"target={target}" if target else "default (objects found)", "all_ms": every,
            "all_ratio": every / predict, "count": count, "photo_bytes": len(chosen)}


# --- seed-style baseline ------------------------------------------------------------------


def serve_baseline(port: int, model_dir: str) -> None:
    """The original service: one request at a time, full decode, fp32 eager, no eval()/no_grad()."""
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


def served_load(url: str, photo_path: Path, requests: int, concurrency: int, token: str | None = None) -> dict:
    """hey's figures for ``requests`` POSTs of the photo: answered per second, latencies (ms), errors."""
    return run_hey(url, photo_path, concurrency, token, requests=requests).summary()


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


def start_baseline(model_dir: Path) -> tuple[subprocess.Popen, str]:
    """The seed-style baseline in a process of its own; its ``/prediction`` URL once it answers."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "lizaalert_tagger.bench.bench", "--baseline-server", str(port),
                                "--model-dir", str(model_dir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/")
    return process, f"http://127.0.0.1:{port}/prediction"


# --- one run --------------------------------------------------------------------------------


@dataclass
class BenchPlan:
    """What one ``lizaalert-bench`` run measures (the command line, typed)."""

    archive: Path = DEFAULT_ARCHIVE
    config: Path | None = None  # a config.properties instead of the project's
    concurrencies: list[int] = field(default_factory=lambda: [1, 4, 16, 32])
    requests: int = 0  # per load run; 0: by concurrency (see served_requests / baseline_requests)
    sizes: list[str] = field(default_factory=lambda: _names(DEFAULT_SIZES))
    baseline_sizes: list[str] = field(default_factory=lambda: ["12mp", "1080p"])
    explain_sizes: list[str] = field(default_factory=lambda: ["12mp", "1080p"])
    explain_layers: list[str] = field(default_factory=lambda: ["layer3", "layer4"])
    explain_precisions: list[str] = field(default_factory=list)  # empty: the archive's explain_precision only
    quick: bool = False

    # Served runs need many requests per client (24 each): with a few, the ramp-up and the tail of
    # the last wave dominate and understate throughput. The baseline is single-threaded (no ramp),
    # and 8 per client already takes minutes there.
    def served_requests(self, concurrency: int) -> int:
        return self.requests or (max(4, 2 * concurrency) if self.quick else max(96, 24 * concurrency))

    def baseline_requests(self, concurrency: int) -> int:
        return self.requests or (max(4, 2 * concurrency) if self.quick else max(48, 8 * concurrency))


@dataclass
class BenchRun:
    """The table's rows, the raw figures, the archive's model config and the work folder."""

    rows: list[tuple] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    work: Path = Path()


def measure_photo(plan: BenchPlan, run: BenchRun, size_name: str, model_dir: Path, ts, client, baseline_url: str) -> None:
    """The rows of one photo: in-process limit, explanation costs, served and baseline loads."""
    photo = bench_photo(size_name)
    photo_path = run.work / f"{size_name}.jpg"
    photo_path.write_bytes(photo)
    figures = run.summary[size_name] = {"bytes": len(photo), "pixels": SIZES[size_name]}
    limit = figures["inprocess"] = inprocess_limit(model_dir, photo, run.config, batches=2 if plan.quick else 32)
    run.rows.append((size_name, "in-process limit", "-", limit["rps"], limit["single_ms"], None, None, 0))
    for layer in plan.explain_layers if size_name in plan.explain_sizes else []:
        for precision in plan.explain_precisions or [None]:
            cost = explain_cost(model_dir, photo, run.config, count=3 if plan.quick else 15, layer=layer, precision=precision)
            figures[f"explain_{layer}" + (f"_{precision}" if precision else "")] = cost
            what = f"{layer} {cost['precision']}"
            run.rows.append((size_name, f"explain all 11 {what}", 1, 1000 / cost["explain_ms"], cost["explain_ms"],
                             None, None, 0))
            run.rows.append((size_name, f"explain 1 object {what}", 1, 1000 / cost["one_object_ms"],
                             cost["one_object_ms"], None, None, 0))
    loads = [("served (TorchServe)", "served", f"{ts.inference_url}/predictions/{MODEL_NAME}", plan.served_requests,
              client.keys.inference)]
    if size_name in plan.baseline_sizes:
        loads.append(("seed-style baseline", "seed", baseline_url, plan.baseline_requests, None))
    for what, key, url, count, token in loads:
        for c in plan.concurrencies:
            load = figures[f"{key}_c{c}"] = served_load(url, photo_path, count(c), c, token)
            run.rows.append((size_name, what, c, load["rps"], load.get("p50"), load.get("p95"), load.get("p99"),
                             load["errors"]))


def run_bench(plan: BenchPlan) -> BenchRun:
    """Serve the archive with TorchServe and the seed-style baseline side by side and measure every photo."""
    from lizaalert_tagger.client.http import TaggerClient

    run = BenchRun(work=Path(tempfile.mkdtemp(prefix="lizaalert-bench-")))
    model_dir = run.work / "model"
    run.config = unpack_archive(plan.archive, model_dir)
    ts = TorchServe(run_dir=run.work / "run", model_store=plan.archive.parent, ports=(free_port(), free_port(), free_port()),
                    **({"config": plan.config} if plan.config else {}))
    baseline = None
    try:
        t0 = time.monotonic()
        ts.start(timeout=300)
        client = TaggerClient(ts.inference_url, ts.management_url, ts.key_file)
        client.predict(make_photo((640, 480)))
        run.summary["ready_s"] = time.monotonic() - t0
        baseline, baseline_url = start_baseline(model_dir)
        for size_name in plan.sizes:
            measure_photo(plan, run, size_name, model_dir, ts, client, baseline_url)
        run.summary["worker_rss_mb"] = worker_rss(ts)
        run.summary["worker_rss_explained_mb"] = rss_after_explanations(ts, client, bench_photo("1080p"))
        if plan.explain_sizes:
            run.summary["served_explain"] = served_explain_cost(client, scene_photos(12), count=3 if plan.quick else 15)
    finally:
        if baseline is not None:
            baseline.kill()
        ts.stop()
    (run.work / "summary.json").write_text(json.dumps(run.summary, indent=2))
    return run


# --- the report -----------------------------------------------------------------------------


def print_table(plan: BenchPlan, run: BenchRun) -> None:
    config = run.config
    print(f"\nbench: {' '.join(sys.argv)}  ({time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, "
          f"{available_cores()} cores, CPU: {cpu_model()})")
    if plan.config:
        print(f"config.properties: {plan.config}")
    print(f"archive {plan.archive}: workers={config.get('maxWorkers')} batch={config.get('batchSize')} "
          f"delay={config.get('maxBatchDelay')} ms "
          f"handler={config.get('handler')}")
    print(f"\n{'photo':22} {'what':26} {'conc':>4} {'img/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}")
    fmt = lambda v: f"{v:8.0f}" if isinstance(v, (int, float)) else f"{'-':>8}"  # noqa: E731
    for size_name, what, c, rps, p50, p95, p99, errors in run.rows:
        print(f"{photo_label(size_name, run.summary[size_name]['bytes']):22} {what:26} {c!s:>4} {rps:7.1f} "
              f"{fmt(p50)} {fmt(p95)} {fmt(p99)} {errors:6d}")


def photo_ratios(figures: dict, size_name: str, top: int) -> str:
    """One photo's ratios against the targets (BENCHMARKS.md)."""
    parts = [f"served/in-process at c={top} = {figures[f'served_c{top}']['rps'] / figures['inprocess']['rps']:.2f} "
             f"(>= {SERVED_TARGET.get(size_name, 0.8)})"]
    if f"seed_c{top}" in figures and size_name in SEED_TARGET:
        parts.insert(0, f"served/seed at c={top} = {figures[f'served_c{top}']['rps'] / figures[f'seed_c{top}']['rps']:.1f}x "
                        f"(>= {SEED_TARGET[size_name]}x)")
    if "served_c1" in figures:
        idle, single = figures["served_c1"]["p50"], figures["inprocess"]["single_ms"]
        parts.append(f"idle latency / (decode + batch-1 model, idle process) = {idle / single:.2f} "
                     f"(<= 1.25; {idle:.0f} / {single:.0f} ms; "
                     f"back-to-back in-process {figures['inprocess']['hot_single_ms']:.0f} ms)")
    return f"  {photo_label(size_name, figures['bytes'])}: " + "; ".join(parts)


def print_ratios(plan: BenchPlan, run: BenchRun) -> None:
    summary = run.summary
    print("\nratios (targets in parentheses)")
    for size_name in plan.sizes:
        print(photo_ratios(summary[size_name], size_name, max(plan.concurrencies)))
    for size_name in plan.sizes:
        for key, cost in summary[size_name].items():
            if key.startswith("explain_"):
                print(f"  {size_name}: explain ({cost['layer']}, {cost['precision']}) / predict, same photo, batch 1, in-process, "
                      f"median of {cost['count']}: one object {cost['one_object_ratio']:.2f}x (<= 3x; "
                      f"{cost['one_object_ms']:.0f} / {cost['predict_ms']:.0f} ms), all 11 {cost['ratio']:.2f}x "
                      f"({cost['explain_ms']:.0f} ms), {cost['threads']} threads")
    if "served_explain" in summary:
        cost = summary["served_explain"]
        print(f"  served explain / predict, one request at a time, median of {cost['count']} "
              f"({cost['photo_bytes'] / 1e3:.0f} KB scene, {cost['asked']}: {cost['maps']} map(s)): "
              f"{cost['one_object_ratio']:.2f}x (<= 3x for one; {cost['one_object_ms']:.0f} / {cost['predict_ms']:.0f} ms), "
              f"target=all {cost['all_ratio']:.2f}x ({cost['all_ms']:.0f} ms)")
    print(f"  ready after start: {summary['ready_s']:.1f} s (<= 10 s)")
    print("  worker RSS, predictions only: " + ", ".join(f"{v:.0f} MB" for v in summary["worker_rss_mb"].values())
          + "; after explanations (int8 + fp32 loaded): "
          + ", ".join(f"{v:.0f} MB" for v in summary["worker_rss_explained_mb"].values()) + " (<= 1200 MB)")
    print(f"(raw figures: {run.work / 'summary.json'})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lizaalert-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    parser.add_argument("--explain-precisions", default="",
                        help="explaining-pass precisions to time, of fp32, bf16 (default: the archive's explain_precision "
                             "as this CPU resolves it)")
    parser.add_argument("--quick", action="store_true", help="tiny counts: only checks that every row is produced")
    parser.add_argument("--baseline-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_server:
        serve_baseline(args.baseline_server, args.model_dir)
        return 0
    plan = BenchPlan(archive=args.archive, config=args.config,
                     concurrencies=[int(c) for c in args.concurrency.split(",")], requests=args.requests,
                     sizes=_names(args.sizes), baseline_sizes=_names(args.baseline_sizes),
                     explain_sizes=_names(args.explain_sizes), explain_layers=_names(args.explain_layers),
                     explain_precisions=_names(args.explain_precisions), quick=args.quick)
    unknown = sorted(set(plan.sizes + plan.baseline_sizes + plan.explain_sizes) - set(SIZES))
    if unknown:
        parser.error(f"unknown photos {unknown}; expected names among {sorted(SIZES)}")
    try:
        require_hey()  # before minutes of in-process measuring
        run = run_bench(plan)
    except (HeyError, ClientError, OSError, RuntimeError, ValueError) as e:
        print(f"lizaalert-bench: {e}", file=sys.stderr)
        return 1
    print_table(plan, run)
    print_ratios(plan, run)
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
        list(pool.map(lambda _: client.explain(photo, target="all"), range(requests)))  # all: the fp32 model loads
    return worker_rss(ts)


def worker_rss(ts) -> dict[int, float]:
    import psutil

    return {pid: psutil.Process(pid).memory_info().rss / 2**20 for pid in ts.worker_pids()}


if __name__ == "__main__":
    sys.exit(main())
