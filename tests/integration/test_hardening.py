"""Hostile input, crashed workers, queue saturation, soak and security posture, against a real TorchServe."""
import base64
import io
import os
import signal
import struct
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests
from PIL import Image

from conftest import PHOTO_CASES as CASES, make_photo, start_server

pytestmark = pytest.mark.integration


def url(server):
    return f"{server.inference_url}/predictions/lizaalert_tagger"


def auth(server, kind="inference"):
    return {"Authorization": f"Bearer {server.keys()[kind]}"}


def worker_pids(server):
    r = requests.get(f"{server.management_url}/models/lizaalert_tagger", headers=auth(server, "management"), timeout=30)
    return sorted(int(w["pid"]) for v in r.json() for w in v["workers"])


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's header)."""
    data = make_photo("PNG", size=(8, 8))
    ihdr = struct.pack(">II", width, height) + data[24:29]
    chunk = b"IHDR" + ihdr
    return data[:12] + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(make_photo("JPEG", size=(16, 16)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (64, 48), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


GOOD = {**{k: v for k, v in CASES.items()}, "animated_gif": animated_gif}

BAD = {
    "empty": lambda: b"",
    "text": lambda: b"just some words",
    "html": lambda: b"<!doctype html><html><body><img src=x></body></html>",
    "svg": lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>',
    "zip": lambda: b"PK\x03\x04\x14\x00\x00\x00" + os.urandom(200),
    "gzip": lambda: zlib.compress(b"x" * 1000),
    "pdf": lambda: b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF",
    "random": lambda: os.urandom(4096),
    "truncated_jpeg": lambda: make_photo("JPEG", size=(800, 600))[:3000],
    "truncated_png": lambda: make_photo("PNG", size=(800, 600))[:500],
    "header_only_png": lambda: make_photo("PNG")[:33],
    "png_bomb": lambda: png_claiming(40000, 40000),
    "jpeg_bomb": lambda: jpeg_claiming(60000, 60000),
}


@pytest.mark.parametrize("case", sorted(GOOD))
def test_every_photo_format_is_tagged(server, case):
    r = requests.post(url(server), data=GOOD[case](), headers=auth(server), timeout=60)
    assert r.status_code == 200, r.text
    assert len(r.json()["attributes"]) == 11


def test_everything_else_is_a_clean_4xx_without_worker_restart(server):
    pids = worker_pids(server)
    bodies = {name: make() for name, make in BAD.items()}
    results = {}
    for name, body in bodies.items():
        r = requests.post(url(server), data=body, headers=auth(server), timeout=60)
        results[name] = r
    json_cases = {
        "broken_base64": {"data": "not*base64*at*all"},
        "base64_of_text": {"data": base64.b64encode(b"hello").decode()},
        "no_data_key": {"url": "http://example.com/x.jpg"},
    }
    for name, body in json_cases.items():
        results[name] = requests.post(url(server), json=body, headers=auth(server), timeout=60)
    summary = {name: (r.status_code, r.json().get("type")) for name, r in results.items()}
    for name, r in results.items():
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        body = r.json()
        assert set(body) >= {"code", "type", "message"} and body["code"] == r.status_code, (name, body)
        assert len(body["message"]) > 10
    assert summary["png_bomb"] == (413, "too_many_pixels") and summary["jpeg_bomb"] == (413, "too_many_pixels")
    assert summary["broken_base64"][1] == "bad_base64"
    assert worker_pids(server) == pids  # nothing crashed
    r = requests.post(url(server), data=make_photo("JPEG"), headers=auth(server), timeout=60)
    assert r.status_code == 200


def test_body_over_the_limit_gets_413(server):
    limit = int(server.props["max_request_size"])
    r = requests.post(url(server), data=b"\xff\xd8" + b"\x00" * (limit + 1000), headers=auth(server), timeout=60)
    assert r.status_code == 413
    # a 25 MiB photo body is admitted (refused by our decoder, not by the size limit)
    r = requests.post(url(server), data=b"\xff\xd8" + b"\x00" * (25 * 2**20), headers=auth(server), timeout=60)
    assert r.status_code == 400 and r.json()["type"] in ("corrupt_image", "not_an_image")


def test_one_bad_photo_fails_only_its_own_request_under_batching(server):
    good, bad = make_photo("JPEG"), b"garbage" * 20
    jobs = [(i % 3 == 1, bad if i % 3 == 1 else good) for i in range(48)]

    def post(job):
        is_bad, body = job
        r = requests.post(url(server), data=body, headers=auth(server), timeout=60)
        return is_bad, r.status_code

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(post, jobs))
    assert all(code == 400 for is_bad, code in outcomes if is_bad)
    assert all(code == 200 for is_bad, code in outcomes if not is_bad)


def test_deeply_nested_target_is_its_own_400_amid_concurrent_predictions(server):
    """An explanation whose ``target`` is nested 2,000 deep (RecursionError in json.loads) was answered
    503, and so were predictions batched with it. Now it is its own 400 and every prediction a 200.
    A JSON body nested that deep, which the worker cannot parse, is a 400 too."""
    photo = make_photo("JPEG")
    nested = '{"a":' * 2000
    explain = f"{server.inference_url}/explanations/lizaalert_tagger"
    deep_body = ('{"data": "' + base64.b64encode(photo).decode() + '", "target": ' + '{"a": ' * 2000 + "1" + "}" * 2001).encode()

    def post(kind: str) -> tuple[str, int, dict]:
        if kind == "nested_target":
            r = requests.post(explain, files={"data": ("p.jpg", photo, "image/jpeg")}, data={"target": nested},
                              headers=auth(server), timeout=120)
        elif kind == "nested_body":
            r = requests.post(explain, data=deep_body, headers={**auth(server), "Content-Type": "application/json"}, timeout=120)
        else:
            r = requests.post(url(server), data=photo, headers=auth(server), timeout=60)
        return kind, r.status_code, r.json()

    kinds = ["predict"] * 24
    for at in (3, 9, 15):
        kinds.insert(at, "nested_target")
    kinds.insert(20, "nested_body")
    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(post, kinds))
    for kind, status, body in outcomes:
        if kind == "predict":
            assert status == 200 and len(body["attributes"]) == 11, (kind, status, body)
        else:
            assert status == 400 and body["code"] == 400, (kind, status, body)
    assert {body["type"] for kind, _, body in outcomes if kind == "nested_target"} == {"bad_target"}


def test_killed_worker_is_restarted_and_tag_folder_still_tags_every_photo(server, tmp_path):
    from lizaalert_tagger.client import tagctl
    from lizaalert_tagger.common.labels_csv import read_labels
    from lizaalert_tagger.common.spec import load_spec

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(60):
        (folder / f"p{i:03d}.jpg").write_bytes(make_photo("JPEG", size=(1600, 1200), color=(i * 4, 100, 50)))
    pids_before = worker_pids(server)
    result = {}

    def run():
        result["code"] = tagctl.main(["--inference-url", server.inference_url, "--management-url", server.management_url,
                                      "--key-file", str(server.key_file), "--retries", "8",
                                      "tag-folder", str(folder), "--out", str(tmp_path / "out.csv"), "--concurrency", "8", "--quiet"])

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(1.5)
    os.kill(pids_before[0], signal.SIGKILL)
    thread.join(timeout=300)
    assert result.get("code") == 0
    table = read_labels(tmp_path / "out.csv", load_spec())
    assert sorted(r.filename for r in table.rows) == sorted(p.name for p in folder.iterdir())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (len(worker_pids(server)) < 2 or pids_before[0] in worker_pids(server)):
        time.sleep(0.5)
    after = worker_pids(server)
    assert pids_before[0] not in after and len(after) == len(pids_before)


def test_queue_saturation_gives_503_then_recovers(tmp_path, model_store):
    from lizaalert_tagger.client.http import TaggerClient

    server = start_server(tmp_path / "run", model_store, job_queue_size=2)
    try:
        photo = make_photo("JPEG", size=(2400, 1800))
        with ThreadPoolExecutor(32) as pool:
            codes = Counter(pool.map(lambda _: requests.post(url(server), data=photo, headers=auth(server), timeout=120).status_code, range(64)))
        assert codes[503] > 0 and set(codes) <= {200, 503}, codes
        r = requests.post(url(server), data=photo, headers=auth(server), timeout=60)
        assert r.status_code == 200  # recovered as soon as the flood stopped
        # the client retries 503 with backoff; with retries off it says clearly what happened
        client = TaggerClient(server.inference_url, server.management_url, server.key_file, retries=0)
        with ThreadPoolExecutor(32) as pool:
            outcomes = list(pool.map(lambda _: _try(client, photo), range(64)))
        messages = [o for o in outcomes if isinstance(o, str)]
        assert messages and all("HTTP 503" in m and "busy" in m for m in messages)
        patient = TaggerClient(server.inference_url, server.management_url, server.key_file, retries=10)
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: patient.predict(photo), range(32)))
        assert all(len(a["attributes"]) == 11 for a in answers)
    finally:
        server.stop()


def _try(client, photo):
    from lizaalert_tagger.client.http import ClientError

    try:
        return client.predict(photo)
    except ClientError as e:
        return str(e)


def test_soak_zero_errors_and_bounded_memory(server):
    from lizaalert_tagger.bench.soak import run_soak
    from lizaalert_tagger.client.http import TaggerClient

    client = TaggerClient(server.inference_url, server.management_url, server.key_file)
    # CI runs a short soak; the full one is `scripts/soak.py --requests 5000 --concurrency 32`.
    count = int(os.environ.get("SOAK_REQUESTS", "400"))
    result = run_soak(client, make_photo("JPEG", size=(640, 480)), count, 32)
    print("\n" + result.report())
    assert result.requests >= count and result.statuses.get(200) == result.requests and result.failed == 0
    for pid, before in result.rss_before_mb.items():
        assert result.rss_after_mb[pid] < before + 150, (pid, before, result.rss_after_mb[pid])


def test_instances_are_answered_right_and_memory_stays_bounded(server):
    """Issue 22.4: 8 concurrent requests of 64 instances pushed a worker to 1,862 MB when the batch was one
    forward pass over 512 photos. In chunks of the batch size, every answer is right and the peak stays far below."""
    from lizaalert_tagger.bench.soak import run_soak
    from lizaalert_tagger.client.http import TaggerClient

    client = TaggerClient(server.inference_url, server.management_url, server.key_file)
    result = run_soak(client, make_photo("JPEG", size=(1600, 1200)), 16, 8, instances=64)  # checks 64 answers first
    print("\n" + result.report())
    assert result.statuses.get(200) == result.requests == 16 and result.failed == 0
    assert result.rss_peak_mb and len(result.rss_peak_mb) == len(result.rss_before_mb)
    for pid, peak in result.rss_peak_mb.items():  # the target is 1,200 MB (lizaalert-soak --instances 64 measures it)
        assert peak < 1400, (pid, result.rss_before_mb[pid], peak)


# --- security posture -----------------------------------------------------------


def test_all_ports_bind_to_loopback(server):
    jvm = [p for p in psutil.Process(server.process.pid).children(recursive=True) if p.name() == "java"]
    assert jvm
    listening = [c for c in jvm[0].net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
    assert len(listening) >= 5  # inference, management, metrics, gRPC x2
    assert all(c.laddr.ip in ("127.0.0.1", "::ffff:127.0.0.1") for c in listening), listening


@pytest.mark.parametrize("archive_url", [
    "http://127.0.0.1:9/lizaalert_tagger.mar",
    "https://example.com/lizaalert_tagger.mar",
    "file:///tmp/lizaalert_tagger.mar",
    "../lizaalert_tagger.mar",
])
def test_registration_only_from_the_model_store(server, archive_url):
    r = requests.post(f"{server.management_url}/models", params={"url": archive_url}, headers=auth(server, "management"), timeout=30)
    assert 400 <= r.status_code < 500 and r.status_code != 409, r.text


def test_registration_of_an_archive_outside_the_store_is_refused(server, tmp_path):
    import shutil

    outside = tmp_path / "outside.mar"
    shutil.copy(server.model_store / "lizaalert_tagger.mar", outside)
    r = requests.post(f"{server.management_url}/models", params={"url": str(outside), "model_name": "evil"},
                      headers=auth(server, "management"), timeout=30)
    assert r.status_code == 404 and "not found" in r.text.lower()
    models = requests.get(f"{server.management_url}/models", headers=auth(server, "management"), timeout=30).json()
    assert [m["modelName"] for m in models["models"]] == ["lizaalert_tagger"]


@pytest.mark.parametrize(
    ("precision", "served_file", "refusal"),
    [("fp32", "weights.pt", "refused to load"), ("int8", "weights_int8.pt", "not an int8 TorchScript model")],
)
def test_archive_with_pickled_code_in_its_weights_is_refused(tmp_path, model_store, precision, served_file, refusal):
    """A crafted archive whose served weights file is a pickle with code: the worker refuses to load it.

    fp32/bf16 load ``weights.pt`` with ``weights_only``; int8 loads ``weights_int8.pt``
    with TorchScript's loader, which runs no pickled Python either."""
    import pickle

    import torch
    import yaml

    from lizaalert_tagger.ops.archive import build_archive
    from lizaalert_tagger.common.paths import HANDLER_DIR
    from lizaalert_tagger.client.http import TaggerClient

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    config = yaml.safe_load((HANDLER_DIR / "model-config.yaml").read_text())
    config["handler"]["precision"] = precision
    (tmp_path / "model-config.yaml").write_text(yaml.safe_dump(config))
    store = tmp_path / "store"
    good = build_archive(pytest_seeded(tmp_path), "1.0", config=tmp_path / "model-config.yaml", store=store,
                         file_name="lizaalert_tagger.mar")
    # swap the file the worker will load for the crafted pickle
    import zipfile
    evil_weights = tmp_path / "evil.pt"
    torch.save({"trunk.conv1.weight": Evil()}, evil_weights, pickle_module=pickle)
    crafted = store / "lizaalert_tagger_evil.mar"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(crafted, "w") as dst:
        assert served_file in src.namelist()
        for item in src.infolist():
            dst.writestr(item, evil_weights.read_bytes() if item.filename == served_file else src.read(item))
    server = start_server(tmp_path / "run", store)
    try:
        client = TaggerClient(server.inference_url, server.management_url, server.key_file, retries=0, timeout=120)
        from lizaalert_tagger.client.http import ClientError
        with pytest.raises(ClientError):
            client.management("POST", "/models", "register", params={"url": crafted.name, "model_name": "evil",
                                                                      "initial_workers": 1, "synchronous": "true"})
        assert not marker.exists()
    finally:
        server.stop()
    log = (tmp_path / "run" / "logs" / "model_log.log").read_text()
    assert refusal in log


def pytest_seeded(tmp_path):
    import torch

    from lizaalert_tagger.vision.model import LizaAlertTagger

    torch.manual_seed(0)
    path = tmp_path / "w.pt"
    torch.save(LizaAlertTagger().state_dict(), path)
    return path
