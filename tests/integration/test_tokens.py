"""Tokens expire (token_expiration_min); clients renew them with the API key and keep working."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import make_photo, run_tagctl, start_server

pytestmark = pytest.mark.integration


def test_client_survives_token_expiry(tmp_path, model_store):
    from lizaalert_tagger.client.http import TaggerClient

    server = start_server(tmp_path / "run", model_store, token_expiration_min=1)
    try:
        photo = make_photo("JPEG")
        client = TaggerClient(server.inference_url, server.management_url, server.key_file)
        assert client.predict(photo)["model"]["version"] == "1.0"
        old_token = server.keys()["inference"]
        time.sleep(65)  # past the 1-minute expiry
        stale = requests.post(f"{server.inference_url}/predictions/lizaalert_tagger", data=photo,
                              headers={"Authorization": f"Bearer {old_token}"}, timeout=30)
        assert stale.status_code == 400 and "Token Authorization failed" in stale.text  # really expired
        # 12 threads share the client and meet the expired tokens of both kinds at once: each kind is
        # renewed once (each renewal invalidates the one before, so one renewal per thread used to lock
        # threads out; a counter shared by the kinds made a management renewal pass for an inference one)
        renewals = []
        renew = client._renew
        client._renew = lambda kind: renewals.append(kind) or renew(kind)
        barrier = threading.Barrier(12)

        def call_together(i):
            barrier.wait(timeout=30)
            if i % 3 == 0:
                return client.management("GET", "/models", "list")["models"][0]["modelName"]
            return client.predict(photo)["model"]["version"]

        with ThreadPoolExecutor(12) as pool:
            assert list(pool.map(call_together, range(12))) == ["lizaalert_tagger", "1.0", "1.0"] * 4
        assert sorted(renewals) == ["inference", "management"]
        assert client.keys.inference != old_token
        answer = client.predict(photo)
        assert answer["model"]["version"] == "1.0"
        assert client.management("GET", "/models", "list")["models"][0]["modelName"] == "lizaalert_tagger"
    finally:
        server.stop()


def test_renew_command_prints_a_working_token(server):
    code, out = run_tagctl(server, "token", "--renew")
    assert code == 0
    token = out.strip()
    r = requests.get(f"{server.inference_url}/ping", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200
