"""End to end through a real TorchServe started on free loopback ports."""
import re

import psutil
import pytest
import requests

from conftest import make_photo, start_server

pytestmark = pytest.mark.integration


def auth(server, kind="inference"):
    return {"Authorization": f"Bearer {server.keys()[kind]}"}


CYRILLIC = re.compile("[\u0400-\u04FF]")


def assert_utf8_answer(r) -> dict:
    """A 200 answer whose raw body is UTF-8 JSON with its Russian labels as they are: no ``\\u``
    escapes, and every attribute's ``label_ru`` (Cyrillic, in every answer) literally in the body."""
    assert r.status_code == 200, r.text
    assert b"\\u" not in r.content, r.content[:300]
    text = r.content.decode("utf-8")  # strict: fails on anything that is not UTF-8
    assert CYRILLIC.search(text), text[:300]
    answer = r.json()
    for key, value in answer["attributes"].items():
        assert value["label_ru"] and CYRILLIC.search(value["label_ru"]), (key, value)
        assert f'"label_ru": "{value["label_ru"]}"' in text or f'"label_ru":"{value["label_ru"]}"' in text, key
    return answer


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_tag_a_photo(server, spec, fmt):
    r = requests.post(f"{server.inference_url}/predictions/lizaalert_tagger", data=make_photo(fmt), headers=auth(server), timeout=60)
    answer = assert_utf8_answer(r)
    assert answer["model"] == {"name": "lizaalert_tagger", "version": "1.0"}
    assert set(answer["attributes"]) == set(spec.keys)
    for a in spec.attributes:
        value = answer["attributes"][a.key]
        assert value["code"] in a.codes
        assert value["label"] == a.class_for(value["code"]).label
        assert 0.0 <= value["score"] <= 1.0


def test_multipart_and_base64_json(server):
    photo = make_photo("JPEG")
    r1 = requests.post(f"{server.inference_url}/predictions/lizaalert_tagger", files={"File": ("x.jpg", photo)}, headers=auth(server), timeout=60)
    import base64
    r2 = requests.post(f"{server.inference_url}/predictions/lizaalert_tagger", json={"data": base64.b64encode(photo).decode()}, headers=auth(server), timeout=60)
    assert assert_utf8_answer(r1)["attributes"] == assert_utf8_answer(r2)["attributes"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}])
def test_requests_without_a_valid_token_are_refused(server, headers):
    photo = make_photo("JPEG")
    r = requests.post(f"{server.inference_url}/predictions/lizaalert_tagger", data=photo, headers=headers, timeout=30)
    assert r.status_code == 400 and "Token Authorization failed" in r.text
    r = requests.get(f"{server.management_url}/models", headers=headers, timeout=30)
    assert r.status_code == 400
    r = requests.get(f"{server.inference_url}/ping", headers=headers, timeout=30)
    assert r.status_code == 400


def test_key_file_is_owner_only(server):
    assert server.key_file.stat().st_mode & 0o077 == 0


def test_metrics_in_prometheus_text(server):
    assert_utf8_answer(requests.post(f"{server.inference_url}/predictions/lizaalert_tagger", data=make_photo("JPEG"), headers=auth(server), timeout=60))
    r = requests.get(f"{server.metrics_url}/metrics", timeout=30)
    assert r.status_code == 200
    assert "# TYPE ts_inference_requests_total counter" in r.text
    assert 'lizaalert_tag_predictions{ModelName="lizaalert_tagger",Level="Model",attribute="time_of_day"' in r.text


def test_garbage_gets_a_json_4xx_and_the_next_photo_works(server):
    url = f"{server.inference_url}/predictions/lizaalert_tagger"
    r = requests.post(url, data=b"\x00\x01garbage" * 10, headers=auth(server), timeout=60)
    assert 400 <= r.status_code < 500
    body = r.json()
    assert body["code"] == r.status_code and body["type"] == "not_an_image" and body["message"]
    r = requests.post(url, data=make_photo("JPEG"), headers=auth(server), timeout=60)
    assert len(assert_utf8_answer(r)["attributes"]) == 11


def test_stop_leaves_no_process_behind(tmp_path, model_store):
    ts = start_server(tmp_path / "run", model_store)
    pids = [ts.process.pid, *ts.worker_pids()]
    assert len(pids) >= 3  # launcher/JVM + two workers
    ts.stop()
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    leftovers = [p.pid for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []
