"""Explanations through a real TorchServe: /explanations in every payload form, workers' RSS with the
fp32 explaining model loaded, and ``tagctl explain``. In-process tests of explain requests are in
tests/unit/serving/test_explain_requests.py."""
from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from conftest import run_tagctl

pytestmark = pytest.mark.integration


def auth(server):
    return {"Authorization": f"Bearer {server.keys()['inference']}"}


def test_explanations_endpoint(server, spec, scene_photo):
    import requests

    url = f"{server.inference_url}/explanations/lizaalert_tagger"
    photo = scene_photo(3)
    r = requests.post(url, data=photo, headers=auth(server), timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    found = [a.key for a in spec.attributes if a.is_binary and body["attributes"][a.key]["code"] == 1]
    assert list(body["explanations"]) == found  # by default: the objects found only
    assert body["explained_with"]["explained"] == found and body["explained_with"]["attributes_explained"] == "found"
    predicted = requests.post(f"{server.inference_url}/predictions/lizaalert_tagger", data=photo, headers=auth(server), timeout=60).json()
    assert body["attributes"] == predicted["attributes"]
    # target=all: every attribute
    r = requests.post(url, files={"data": ("photo.jpg", photo, "image/jpeg")}, data={"target": "all"}, headers=auth(server), timeout=120)
    assert r.status_code == 200, r.text
    assert list(r.json()["explanations"]) == list(spec.keys) and r.json()["explanations"]["car"]["shape"] == [16, 16]
    # query parameters with a raw body, a version in the path
    # TorchServe 0.12 drops /explanations' query parameters: the options travel as form fields
    r = requests.post(f"{url}/1.0", files={"data": ("photo.jpg", photo, "image/jpeg")}, data={"target": "drone:1", "overlay": "true"},
                      headers=auth(server), timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["explanations"]["drone"]["target"] == "requested"
    assert Image.open(io.BytesIO(base64.b64decode(r.json()["overlay"]))).format == "PNG"
    # multipart: the photo and the options as form fields
    r = requests.post(url, files={"data": ("photo.jpg", photo, "image/jpeg")}, data={"target": "hugs:1"}, headers=auth(server), timeout=120)
    assert r.status_code == 200 and r.json()["explanations"]["hugs"]["value"] == 1, r.text
    # JSON
    r = requests.post(url, json={"data": base64.b64encode(photo).decode(), "target": {"season": "winter"}}, headers=auth(server), timeout=120)
    assert r.status_code == 200 and r.json()["explanations"]["season"]["label"] == "winter", r.text
    r = requests.post(url, files={"data": ("photo.jpg", photo, "image/jpeg")}, data={"target": "boat:1"}, headers=auth(server), timeout=60)
    assert r.status_code == 400 and r.json()["type"] == "bad_target"
    r = requests.post(url, data=b"not a photo", headers=auth(server), timeout=60)
    assert r.status_code == 400 and r.json()["type"] == "not_an_image"
    metrics = requests.get(f"{server.metrics_url}/metrics", timeout=30).text
    assert 'lizaalert_explanations{ModelName="lizaalert_tagger",Level="Model",outcome="ok"' in metrics
    assert "lizaalert_explain_ms{" in metrics


def test_workers_rss_with_explanations_loaded(server, scene_photo):
    """Workers serving int8 load the fp32 weights on their first explanation; the budget is 1.2 GB each."""
    import psutil
    import requests

    photo = scene_photo(4)
    for _ in range(6):  # likely every worker
        assert requests.post(f"{server.inference_url}/explanations/lizaalert_tagger", data=photo, headers=auth(server),
                             timeout=120).status_code == 200
    rss = {pid: psutil.Process(pid).memory_info().rss / 2**20 for pid in server.worker_pids()}
    print(f"worker RSS after explanations: {', '.join(f'{v:.0f} MB' for v in rss.values())}")
    assert rss and max(rss.values()) <= 1200, rss


def test_tagctl_explain_writes_one_overlay_per_photo(server, tmp_path, scene_photo):
    photos = []
    for i in (5, 6):
        path = tmp_path / f"scene_{i}.jpg"
        path.write_bytes(scene_photo(i))
        photos.append(str(path))
    out = tmp_path / "explained"
    code, printed = run_tagctl(server, "explain", *photos, str(tmp_path / "missing.jpg"), "--out", str(out))
    assert code == 1  # the missing photo; the others are written
    for photo in photos:
        image = Image.open(out / f"{Path(photo).name}.png")
        assert image.format == "PNG" and image.width > image.height
        assert f"{photo}: " in printed and str(out / f"{Path(photo).name}.png") in printed
    code, _ = run_tagctl(server, "explain", photos[0], "--out", str(out), "--target", "boat:1")
    assert code == 1
