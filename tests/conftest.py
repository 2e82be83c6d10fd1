"""Shared fixtures: photos made in memory, seeded weights, an archive-shaped model dir,
a fake TorchServe context, and (for integration tests) a real TorchServe."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
HANDLER_DIR = ROOT / "handler"


def make_photo(fmt: str = "JPEG", size=(640, 480), mode: str = "RGB", color=(40, 120, 60), **save_kwargs) -> bytes:
    """A small photo in memory: a colour field with a bright rectangle (so orientation is visible)."""
    img = Image.new("RGB", size, color)
    w, h = size
    img.paste((250, 240, 30), (0, 0, max(1, w // 4), max(1, h // 4)))
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt, **save_kwargs)
    return buf.getvalue()


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


PHOTO_CASES = {  # every photo mode and format the decoder must turn into 3x256x256
    "jpeg": lambda: make_photo("JPEG"),
    "progressive_jpeg": lambda: make_photo("JPEG", progressive=True),
    "png": lambda: make_photo("PNG"),
    "grayscale": lambda: make_photo("PNG", mode="L"),
    "rgba": lambda: make_photo("PNG", mode="RGBA"),
    "palette": lambda: make_photo("PNG", mode="P"),
    "cmyk_jpeg": lambda: make_photo("JPEG", mode="CMYK"),
    "16bit": lambda: png(Image.fromarray(np.full((50, 70), 40000, dtype=np.uint16))),
    "webp": lambda: make_photo("WEBP"),
    "bmp": lambda: make_photo("BMP"),
    "tiff": lambda: make_photo("TIFF"),
    "gif": lambda: make_photo("GIF"),
    "1x1": lambda: make_photo("PNG", size=(1, 1)),
    "very_thin": lambda: make_photo("PNG", size=(3000, 2)),
    "very_tall": lambda: make_photo("JPEG", size=(3, 2000)),
}


@pytest.fixture(scope="session")
def spec():
    from lizaalert_tagger.common.spec import load_spec

    return load_spec()


@pytest.fixture(scope="session")
def seeded_weights(tmp_path_factory) -> Path:
    """Random-initialised weights from a fixed seed (nothing here is about accuracy)."""
    from lizaalert_tagger.vision.model import LizaAlertTagger

    torch.manual_seed(1234)
    path = tmp_path_factory.mktemp("weights") / "weights.pt"
    torch.save(LizaAlertTagger().state_dict(), path)
    return path


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, seeded_weights) -> Path:
    """A directory laid out like an extracted archive (what TorchServe's worker sees)."""
    from lizaalert_tagger.ops.archive import HANDLER_FILE, PACKAGE_DIR, SPEC_NAME, WEIGHTS_NAME, build_int8, copy_package
    from lizaalert_tagger.vision.quantize import INT8_FILENAME

    d = tmp_path_factory.mktemp("model_dir")
    for name in (HANDLER_FILE, SPEC_NAME, "model-config.yaml"):
        shutil.copy(HANDLER_DIR / name, d / name)
    copy_package(d / PACKAGE_DIR.name)
    shutil.copy(seeded_weights, d / WEIGHTS_NAME)
    # the int8 variant the shipped model-config.yaml serves, calibrated on a few small scenes (seconds)
    build_int8(seeded_weights, d / SPEC_NAME, d / INT8_FILENAME, scene_photos(tmp_path_factory.mktemp("calibration"), 8))
    return d


def scene_photos(folder: Path, count: int, seed: int = 5) -> Path:
    """``count`` small generated scenes as JPEG files in ``folder``."""
    from lizaalert_tagger import scenes as make_scenes

    for i in range(count):
        (folder / f"scene_{i:02d}.jpg").write_bytes(make_scenes.generate(seed, i, 480, 800)[0])
    return folder


def load_handler_module(model_dir: Path):
    """The adapter file of an archive-shaped dir, imported by its path (the worker finds it the same way)."""
    import importlib.util

    from lizaalert_tagger.ops.archive import HANDLER_FILE

    module_spec = importlib.util.spec_from_file_location("tagger_handler", model_dir / HANDLER_FILE)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def make_context(model_dir: Path, batch_size: int = 8, yaml_overrides: dict | None = None, headers: list[dict] | None = None):
    """A real ts.context.Context as the worker builds it, with one RequestProcessor per request slot."""
    from ts.context import Context, RequestProcessor
    from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

    config = yaml.safe_load((model_dir / "model-config.yaml").read_text())
    config.update(yaml_overrides or {})
    manifest = {"model": {"modelName": "lizaalert_tagger", "modelVersion": "9.9-test",
                          "serializedFile": "weights.pt", "handler": "tagger_handler.py"}}
    metrics = MetricsCacheYamlImpl(str(ROOT / "metrics.yaml"))
    metrics.initialize_cache()
    metrics.model_name = "lizaalert_tagger"
    ctx = Context("lizaalert_tagger", str(model_dir), manifest, batch_size, None, "0.12.0",
                  metrics=metrics, model_yaml_config=config)
    ctx.request_processor = [RequestProcessor(dict((headers or [])[i]) if i < len(headers or []) else {}) for i in range(batch_size)]
    return ctx


@pytest.fixture(scope="session")
def handler(model_dir):
    """The handler initialised from the archive-shaped dir, as the worker does."""
    h = load_handler_module(model_dir).LizaAlertHandler()
    h.initialize(make_context(model_dir))
    return h


# --- a fake HTTP server for client tests -------------------------------------------


class LoopbackServer:
    """A tiny threaded HTTP server on 127.0.0.1 for client tests.

    ``route(method, path, query, body)`` returns ``(status, body bytes)``; every request is
    recorded in ``requests`` as ``(method, path, query, body)``; ``after(method, path, query, body)``
    runs once the answer is written. JSON content type always.
    """

    def __init__(self, route, after=None) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        self.requests: list[tuple[str, str, dict, bytes]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                url = urlsplit(self.path)
                request = (self.command, url.path, parse_qs(url.query), body)
                with outer.lock:
                    outer.requests.append(request)
                status, answer = route(*request)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                if after is not None:
                    after(*request)

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def loopback_server():
    """A factory of :class:`LoopbackServer`; all are closed after the test."""
    servers = []

    def start(route, after=None) -> LoopbackServer:
        servers.append(LoopbackServer(route, after))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


# --- integration: a real TorchServe on loopback ---------------------------------


@pytest.fixture(scope="session")
def model_store(tmp_path_factory, seeded_weights) -> Path:
    """A temp model store holding the default archive built from seeded weights."""
    from lizaalert_tagger.ops.archive import build_archive

    store = tmp_path_factory.mktemp("model_store")
    build_archive(seeded_weights, "1.0", store=store, file_name="lizaalert_tagger.mar")
    return store


def start_server(run_dir: Path, store: Path, **overrides):
    """Start TorchServe with the project's config, overriding only ports, paths and ``overrides``."""
    from lizaalert_tagger.ops.runtime import TorchServe, free_port

    ports = (free_port(), free_port(), free_port())
    ts = TorchServe(run_dir=run_dir, model_store=store, ports=ports, overrides={k: str(v) for k, v in overrides.items()})
    try:
        ts.start(timeout=240)
    except Exception:
        ts.stop()
        raise
    return ts


@pytest.fixture(scope="session")
def server(tmp_path_factory, model_store):
    ts = start_server(tmp_path_factory.mktemp("run"), model_store)
    yield ts
    ts.stop()


@pytest.fixture()
def client(server):
    from lizaalert_tagger.client.http import TaggerClient

    return TaggerClient(server.inference_url, server.management_url, server.key_file)


def run_tagctl(server, *args) -> tuple[int, str]:
    """Run the CLI in-process against ``server``; return (exit code, stdout)."""
    import contextlib
    import io

    from lizaalert_tagger.client import tagctl

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = tagctl.main(["--inference-url", server.inference_url, "--management-url", server.management_url,
                            "--key-file", str(server.key_file), *args])
    return code, out.getvalue()
