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
    from lizaalert_tagger.common.spec import SPEC_FILENAME
    from lizaalert_tagger.ops.archive import HANDLER_FILE, PACKAGE_DIR, build_int8, copy_package
    from lizaalert_tagger.vision.inference import WEIGHTS_FILENAME
    from lizaalert_tagger.vision.quantize import INT8_FILENAME

    d = tmp_path_factory.mktemp("model_dir")
    for name in (HANDLER_FILE, SPEC_FILENAME, "model-config.yaml"):
        shutil.copy(HANDLER_DIR / name, d / name)
    copy_package(d / PACKAGE_DIR.name)
    shutil.copy(seeded_weights, d / WEIGHTS_FILENAME)
    # the int8 variant the shipped model-config.yaml serves, calibrated on a few small scenes (seconds)
    build_int8(seeded_weights, d / SPEC_FILENAME, d / INT8_FILENAME, scene_photos(tmp_path_factory.mktemp("calibration"), 8))
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
    runs once the answer is written; inside both, ``local.headers`` holds the request's headers.
    JSON content type always.
    """

    def __init__(self, route, after=None) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        self.requests: list[tuple[str, str, dict, bytes]] = []
        self.lock = threading.Lock()
        self.local = threading.local()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                url = urlsplit(self.path)
                request = (self.command, url.path, parse_qs(url.query), body)
                outer.local.headers = self.headers
                with outer.lock:
                    outer.requests.append(request)
                status, answer = route(*request)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client gave up first (a time-out test): nobody to answer
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
    from lizaalert_tagger.ops.torchserve import TorchServe, free_port

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


@pytest.fixture(scope="session")
def twelve_attribute_spec(tmp_path_factory) -> Path:
    """A spec file: the shipped spec plus a twelfth attribute, a binary "tent" (the scene generator draws it)."""
    import json

    raw = json.loads((HANDLER_DIR / "attributes.json").read_text(encoding="utf-8"))
    stop = max(a["logits"][1] for a in raw["attributes"])
    raw["attributes"].append({"key": "tent", "columns": ["Палатка"], "kind": "binary", "logits": [stop, stop + 1],
                              "threshold": 0.5, "classes": [{"code": 0, "label": "no tent", "label_ru": "нет палатки"},
                                                            {"code": 1, "label": "tent", "label_ru": "Палатка"}]})
    path = tmp_path_factory.mktemp("twelve_attributes") / "attributes.json"
    path.write_text(json.dumps(raw, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


# --- client fakes: raw EXIF, generated field photos, a fake tagger and a fake TorchServe ------------------------
# (shared by tests/unit/common/test_exif.py, tests/unit/client/* and tests/integration/test_report_browser.py)

EXIF_BYTE, EXIF_ASCII, EXIF_SHORT, EXIF_LONG, EXIF_RATIONAL, EXIF_UNDEFINED, EXIF_SRATIONAL = 1, 2, 3, 4, 5, 7, 10


def _exif_pack(typ: int, values) -> tuple[bytes, int]:
    import struct

    if typ in (EXIF_ASCII, EXIF_BYTE, EXIF_UNDEFINED):
        data = values if isinstance(values, bytes) else values.encode("latin-1") + b"\0"
        return data, len(data)
    fmt = {EXIF_SHORT: ">H", EXIF_LONG: ">L", EXIF_RATIONAL: ">LL", EXIF_SRATIONAL: ">ll"}[typ]
    return b"".join(struct.pack(fmt, *(v if isinstance(v, tuple) else (v,))) for v in values), len(values)


def exif_payload(ifd0=(), exif=None, gps=None) -> bytes:
    """``Exif\\0\\0`` + a big-endian TIFF: IFD0 and optional Exif and GPS IFDs of ``(tag, type, values)`` entries,
    hostile values of any TIFF type included (which Pillow's writer refuses)."""
    import struct

    ifds = [list(ifd0)]
    for pointer, entries in ((0x8769, exif), (0x8825, gps)):
        if entries is not None:
            ifds[0].append((pointer, EXIF_LONG, None))
            ifds.append(list(entries))

    def size(entries) -> int:
        data = 0
        for _, t, v in entries:
            n = 4 if v is None else len(_exif_pack(t, v)[0])
            data += (n + 1) // 2 * 2 if n > 4 else 0
        return 2 + 12 * len(entries) + 4 + data

    offsets = [8]
    for entries in ifds[:-1]:
        offsets.append(offsets[-1] + size(entries))
    sub = iter(offsets[1:])
    ifds[0] = [(tag, t, [next(sub)] if v is None else v) for tag, t, v in ifds[0]]
    out = b"MM\0*" + struct.pack(">L", 8)
    for entries, offset in zip(ifds, offsets):
        entries = sorted(entries, key=lambda e: e[0])
        head, data = struct.pack(">H", len(entries)), b""
        data_at = offset + 2 + 12 * len(entries) + 4
        for tag, t, v in entries:
            packed, count = _exif_pack(t, v)
            if len(packed) <= 4:
                head += struct.pack(">HHL", tag, t, count) + packed.ljust(4, b"\0")
            else:
                head += struct.pack(">HHLL", tag, t, count, data_at + len(data))
                data += packed + (b"\0" if len(packed) % 2 else b"")
        out += head + struct.pack(">L", 0) + data
    return b"Exif\0\0" + out


def jpeg_with_exif(ifd0=(), exif=None, gps=None) -> bytes:
    """A small JPEG carrying :func:`exif_payload`."""
    from lizaalert_tagger.scenes.exif import insert_exif

    return insert_exif(make_photo(size=(48, 32)), exif_payload(ifd0, exif, gps))


def field_photos(folder: Path, count: int, seed: int = 21, exif_fraction: float = 0.5, size=(160, 240)) -> dict[str, dict[str, int]]:
    """``count`` generated scenes under ``folder`` in nested sub-folders, some with EXIF; returns
    ``{relative path: labels}``."""
    from lizaalert_tagger import scenes
    from lizaalert_tagger.scenes.exif import with_exif

    truth = {}
    for index in range(count):
        data, plan = scenes.generate(seed, index, *size)
        relative = ("", "day1/", "day1/drone/")[index % 3] + f"IMG_{index:04d}.jpg"
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(with_exif(data, seed, index, plan.labels, exif_fraction))
        truth[relative] = plan.labels
    return truth


class FakeTagger:
    """``TaggerClient.predict`` answering with each photo's generated labels (found by its bytes) and a
    score per attribute that depends on the path only. ``hook(n, name)`` runs before the n-th answer;
    ``answers[name]``, when set, is sent instead of the photo's own answer."""

    def __init__(self, spec, folder: Path, truth: dict[str, dict[str, int]]) -> None:
        import hashlib
        import threading

        self.spec = spec
        self.by_bytes = {hashlib.sha256((folder / name).read_bytes()).hexdigest(): name for name in truth}
        self.truth = truth
        self.calls: list[str] = []
        self.lock = threading.Lock()
        self.hook = None
        self.answers: dict[str, dict] = {}

    def name_of(self, photo: bytes) -> str | None:
        import hashlib

        return self.by_bytes.get(hashlib.sha256(photo).hexdigest())

    def answer(self, name: str) -> dict:
        import hashlib

        if name in self.answers:
            return self.answers[name]
        seed = int(hashlib.sha256(name.encode()).hexdigest(), 16)
        attributes = {}
        for i, a in enumerate(self.spec.attributes):
            cls = a.class_for(self.truth[name][a.key])
            attributes[a.key] = {"code": cls.code, "label": cls.label, "label_ru": cls.label_ru,
                                 "score": round(0.55 + ((seed >> (5 * i)) % 44) / 100, 6)}
        tags = [attributes[a.key]["label"] for a in self.spec.attributes if attributes[a.key]["code"]]
        return {"model": {"name": "lizaalert_tagger", "version": "9.9"}, "attributes": attributes, "tags": tags}

    def method(self):
        """A function to patch ``TaggerClient.predict`` with (an instance would not be bound)."""
        return lambda client, photo, model="lizaalert_tagger", version=None: self(client, photo, model, version)

    def __call__(self, client, photo: bytes, model="lizaalert_tagger", version=None) -> dict:
        name = self.name_of(photo)
        with self.lock:
            self.calls.append(name)
            n = len(self.calls)
        if self.hook:
            self.hook(n, name)
        if name is None:
            from lizaalert_tagger.client.http import ClientError

            raise ClientError("predict on lizaalert_tagger failed: HTTP 400: not a photo this model reads", 400)
        return self.answer(name)


def read_details_csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter=";"))


def make_field_run(tmp: Path, spec, count: int, seed: int = 21, extra=None, report: bool = True,
                   size=(240, 360)) -> tuple[Path, Path, FakeTagger]:
    """``count`` generated scenes (half with EXIF, nested folders) tagged by ``tag-folder --out RUN/ --report``
    in-process, ``TaggerClient.predict`` answering from the scenes' labels. ``extra(folder, fake)``
    may add photos first. ``--send-original``: the fake finds each photo by its bytes, large ones included."""
    from lizaalert_tagger.client import tagctl
    from lizaalert_tagger.client.http import TaggerClient

    folder, run = tmp / "photos", tmp / "run"
    truth = field_photos(folder, count, seed, 0.5, size)
    fake = FakeTagger(spec, folder, truth)
    if extra:
        extra(folder, fake)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TaggerClient, "predict", fake.method())
        args = ["--inference-url", "http://127.0.0.1:9", "--token", "t", "tag-folder", str(folder), "--out", f"{run}/", "--quiet",
                "--send-original"]
        assert tagctl.main(args + (["--report"] if report else [])) == 0
    return folder, run, fake


def fake_answer(spec, version: str = "1.0") -> dict:
    """A served answer of this spec's shape: every attribute's first class, but day for the time of day
    (a tag, "День" in Cyrillic)."""
    attributes = {}
    for a in spec.attributes:
        cls = a.classes[1] if a.key == "time_of_day" else a.classes[0]
        attributes[a.key] = {"code": cls.code, "label": cls.label, "label_ru": cls.label_ru}
    return {"attributes": attributes, "tags": ["day"], "model": {"name": "lizaalert_tagger", "version": version}}


class FakeTorchServe:
    """TorchServe's inference and management APIs as far as tagctl uses them (a :class:`LoopbackServer`).

    Records every request (method, path, query, body). ``before_answer(n, body)`` runs before the n-th
    prediction (1-based) is answered: it may raise SIGINT, block on ``release``, or return
    ``(status, body)`` to answer with instead of the usual answer.
    """

    def __init__(self, spec) -> None:
        import json
        import threading

        self.answer = json.dumps(fake_answer(spec), ensure_ascii=False).encode()
        self.predictions = 0
        self.answered = 0
        self.before_answer = None
        self.release = threading.Event()
        self.server = LoopbackServer(self._route, after=self._answered)
        self.lock, self.requests, self.url = self.server.lock, self.server.requests, self.server.url

    def _route(self, method: str, path: str, query: dict, body: bytes) -> tuple[int, bytes]:
        if path.startswith("/predictions/"):
            with self.lock:
                self.predictions += 1
                n = self.predictions
            instead = self.before_answer(n, body) if self.before_answer else None
            return instead or (200, self.answer)
        if path == "/models" and method == "POST":
            return 200, b'{"status": "Model \\"lizaalert_tagger\\" Version: 2.0 registered"}'
        return 404, b'{"code": 404, "type": "ModelNotFoundException", "message": "not here"}'

    def _answered(self, method: str, path: str, query: dict, body: bytes) -> None:
        if path.startswith("/predictions/"):
            with self.lock:
                self.answered += 1

    def bodies(self) -> list[bytes]:
        with self.lock:
            return [body for method, path, _, body in self.requests if path.startswith("/predictions/")]

    def close(self) -> None:
        self.release.set()
        self.server.close()


@pytest.fixture()
def fake_torchserve(spec, monkeypatch):
    """A :class:`FakeTorchServe`, with the LIZAALERT_* connection variables unset."""
    for name in ("LIZAALERT_INFERENCE_URL", "LIZAALERT_MANAGEMENT_URL", "LIZAALERT_TOKEN", "LIZAALERT_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    server = FakeTorchServe(spec)
    yield server
    server.close()


def photo_folder(folder: Path, count: int, start: int = 0) -> Path:
    """``count`` files with distinct bytes named like photos (a fake server does not decode them), some in a sub-folder."""
    for i in range(start, start + count):
        path = folder / ("sub" if i % 3 == 0 else "") / f"p{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"photo %d" % i)
    return folder


# --- the serving core in-process: batches through the handler, generated scenes -----------------------------
# (shared by tests/unit/serving/*, tests/unit/vision/test_explain.py and tests/integration/test_explanations.py)


@pytest.fixture(scope="session")
def scene_photo():
    """``scene_photo(index)``: a generated 800x480 scene of the held-out seed, as JPEG bytes."""
    from lizaalert_tagger import scenes

    def make(index: int = 0) -> bytes:
        return scenes.generate(2001, index, 480, 800)[0]

    return make


@pytest.fixture(scope="session")
def run_batch(model_dir):
    """``run_batch(handler, requests, headers=None)``: one batch through ``handler.handle`` with a real ts
    Context; returns ``(answers parsed from JSON, statuses)``, a status None where the handler left TorchServe's 200."""
    import json

    def run(handler, requests, headers=None):
        ctx = make_context(model_dir, batch_size=len(requests), headers=headers)
        out = handler.handle(requests, ctx)
        assert len(out) == len(requests) and all(isinstance(body, str) for body in out)
        return [json.loads(body) for body in out], [ctx.get_response_status(i)[0] for i in range(len(requests))]

    return run


# --- the monitoring files (deploy/prometheus, deploy/grafana, metrics.yaml) --------------------------------------
# (shared by tests/unit/deploy/test_monitoring_files.py and tests/integration/test_monitoring.py)


class MonitoringFiles:
    """The shipped Prometheus config and rules, the Grafana dashboard and metrics.yaml, read and taken apart."""

    PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                       "offset", "bool", "inf", "nan"}
    # Grafana variables, replaced by values that make the dashboard's queries plain PromQL.
    GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$share_window": "1h", "$job": "lizaalert_tagger", "$instance": ".*",
                         "$attribute": "time_of_day"}
    JOB = "lizaalert_tagger"

    def __init__(self, root: Path) -> None:
        self.prometheus_dir = root / "deploy" / "prometheus"
        self.prometheus_config = self.prometheus_dir / "prometheus.yml"
        self.alerts = self.prometheus_dir / "alerts.yml"
        self.alerts_test = self.prometheus_dir / "alerts_test.yml"
        self.dashboard_file = root / "deploy" / "grafana" / "lizaalert_tagger.json"
        self.metrics_yaml = root / "metrics.yaml"

    @classmethod
    def metric_names(cls, expr: str) -> set[str]:
        """Metric names a PromQL expression selects (not functions, keywords, labels or strings)."""
        import re

        text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # string literals
        text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
        text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
        text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
        names = set()
        for match in re.finditer(r"(?<![\w:$.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", text):
            if match.group(1).lower() not in cls.PROMQL_KEYWORDS:
                names.add(match.group(1))
        return names

    def declared_metrics(self) -> set[str]:
        """Every metric name metrics.yaml declares (frontend ts_metrics and the handler's model_metrics)."""
        config = yaml.safe_load(self.metrics_yaml.read_text(encoding="utf-8"))
        return {metric["name"] for section in ("ts_metrics", "model_metrics")
                for metrics in (config.get(section) or {}).values() for metric in metrics}

    def rules(self) -> list[dict]:
        return [rule for group in yaml.safe_load(self.alerts.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]

    def recorded_metrics(self) -> set[str]:
        return {rule["record"] for rule in self.rules() if "record" in rule}

    def dashboard(self) -> dict:
        import json

        return json.loads(self.dashboard_file.read_text(encoding="utf-8"))

    def panels(self) -> list[dict]:
        """Panels that show data (rows are only headings); nested row panels included."""
        panels = []
        for panel in self.dashboard()["panels"]:
            panels += panel.get("panels", [])
            if panel["type"] != "row":
                panels.append(panel)
        return panels

    def dashboard_exprs(self) -> list[tuple[str, str]]:
        """``(panel title, PromQL with its Grafana variables filled in)`` for every query of the dashboard."""
        return [(panel["title"], self.as_promql(target["expr"])) for panel in self.panels() for target in panel["targets"]]

    def as_promql(self, expr: str) -> str:
        for variable, value in sorted(self.GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
        return expr


@pytest.fixture(scope="session")
def monitoring_files() -> MonitoringFiles:
    return MonitoringFiles(ROOT)


# Photos whose names and EXIF text carry markup that would run if the report did not escape it
HOSTILE_NAMES = ('<script>window.__xss=1;<', "script>.jpg")  # one path: "<script>window.__xss=1;</script>.jpg"
HOSTILE_FILES = ('<img src=x onerror="window.__xss=2">.jpg', '"><svg onload=window.__xss=5>.jpg')
HOSTILE_MAKE = "<script>window.__xss=3</script>"
HOSTILE_DATE = "<img src=x onerror=window.__xss=4>"


def add_hostile_photos(folder: Path, fake: FakeTagger) -> None:
    """Four generated photos with :data:`HOSTILE_NAMES`, :data:`HOSTILE_FILES` and EXIF text
    :data:`HOSTILE_MAKE`, :data:`HOSTILE_DATE`, answered by ``fake`` as its first photo is."""
    import hashlib

    from lizaalert_tagger import scenes
    from lizaalert_tagger.scenes.exif import insert_exif

    base = next(iter(fake.truth))
    nested = folder / HOSTILE_NAMES[0]
    nested.mkdir()
    targets = [nested / HOSTILE_NAMES[1], *(folder / name for name in HOSTILE_FILES), folder / "exif_markup.jpg"]
    for i, path in enumerate(targets):
        data = scenes.generate(99, i, 160, 240)[0]
        if path.name == "exif_markup.jpg":
            data = insert_exif(data, exif_payload(ifd0=[(0x010F, EXIF_ASCII, HOSTILE_MAKE)],
                                                  exif=[(0x9003, EXIF_ASCII, HOSTILE_DATE)]))
        path.write_bytes(data)
        name = path.relative_to(folder).as_posix()
        fake.by_bytes[hashlib.sha256(data).hexdigest()] = name
        fake.truth[name] = fake.truth[base]


# --- the project's files, for the deployment and nginx tests (unit and integration) ----------


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def project_config() -> dict[str, str]:
    """The root config.properties, as TorchServe reads it."""
    from lizaalert_tagger.ops.properties import read_properties

    return read_properties(ROOT / "config.properties")


@pytest.fixture(scope="session")
def nginx_dir() -> Path:
    return ROOT / "deploy" / "nginx"


@pytest.fixture(scope="session")
def nginx_template(nginx_dir) -> str:
    return (nginx_dir / "tagger.conf.template").read_text()


# --- ops: archives as TorchServe names them, without building one ---------------------------


@pytest.fixture()
def manifest_archive():
    """A factory of ``.mar`` files that hold only ``MAR-INF/MANIFEST.json`` naming ``model``
    (what TorchServe and ``ops.model_state`` read a model's name from), written to ``path``."""
    import json
    import zipfile

    def write(path: Path, model: str = "lizaalert_tagger", version: str = "1.0") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("MAR-INF/MANIFEST.json", json.dumps({"model": {"modelName": model, "modelVersion": version}}))
        return path

    return write


@pytest.fixture()
def grad_calls(monkeypatch):
    """A list that grows by one per ``torch.autograd.grad`` call (one per backward pass of Grad-CAM)."""
    import torch

    calls = []
    original = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    return calls
