"""Model versions: register v2 next to v1, switch the default both ways and unregister,
under a steady stream of requests on the default URL: zero failed requests."""
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import make_photo, run_tagctl as tagctl

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def v2_archive(server, seeded_weights):
    from lizaalert_tagger.archive import build_archive

    return build_archive(seeded_weights, "2.0", store=server.model_store)


class Stream:
    """A bounded pool of clients posting photos to the default URL until stopped."""

    def __init__(self, server, clients: int = 4, max_seconds: float = 240):
        self.url = f"{server.inference_url}/predictions/lizaalert_tagger"
        self.headers = {"Authorization": f"Bearer {server.keys()['inference']}"}
        self.photo = make_photo("JPEG")
        self.stop = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.lock = threading.Lock()
        self.log: list[tuple[float, int, str]] = []  # (time, status, served version)
        self.pool = ThreadPoolExecutor(clients)
        self.futures = [self.pool.submit(self._run) for _ in range(clients)]

    def _run(self):
        with requests.Session() as session:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                try:
                    r = session.post(self.url, data=self.photo, headers=self.headers, timeout=60)
                    version = r.json().get("model", {}).get("version", "?") if r.status_code == 200 else r.text[:100]
                    status = r.status_code
                except requests.RequestException as e:
                    status, version = -1, repr(e)
                with self.lock:
                    self.log.append((time.monotonic(), status, version))

    def versions_since(self, t0: float) -> Counter:
        with self.lock:
            return Counter(v for t, s, v in self.log if t >= t0 and s == 200)

    def wait_for_version(self, version: str, timeout: float = 60) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.versions_since(t0)[version] >= 5:
                return
            time.sleep(0.2)
        raise AssertionError(f"no answers from version {version} within {timeout} s: {self.versions_since(t0)}")

    def finish(self):
        self.stop.set()
        for f in self.futures:
            f.result()
        self.pool.shutdown()
        return self.log


def test_switch_default_version_without_dropping_requests(server, v2_archive):
    stream = Stream(server)
    try:
        stream.wait_for_version("1.0")
        code, out = tagctl(server, "models", "register", v2_archive.name, "--workers", "1")
        assert code == 0, out
        code, out = tagctl(server, "predict", "--json", "--version", "2.0", str(_photo_file(server)))
        assert code == 0 and '"version": "2.0"' in out
        code, out = tagctl(server, "models", "set-default", "lizaalert_tagger", "2.0")
        assert code == 0, out
        stream.wait_for_version("2.0")
        code, out = tagctl(server, "models", "set-default", "lizaalert_tagger", "1.0")
        assert code == 0, out
        stream.wait_for_version("1.0")
        code, out = tagctl(server, "models", "unregister", "lizaalert_tagger", "2.0")
        assert code == 0, out
        t_after = time.monotonic()
        time.sleep(2)
        after = stream.versions_since(t_after)
    finally:
        log = stream.finish()
    failures = [(s, v) for _, s, v in log if s != 200]
    assert failures == [], f"{len(failures)} of {len(log)} requests failed: {failures[:5]}"
    versions = Counter(v for _, _, v in log)
    assert versions["1.0"] > 0 and versions["2.0"] > 0
    assert set(after) == {"1.0"}
    print(f"{len(log)} requests, 0 failed; served by version: {dict(versions)}")


def test_unknown_model_and_version_are_one_line_errors(server, capsys):
    code, _ = tagctl(server, "models", "describe", "no_such_model")
    assert code == 1
    err = capsys.readouterr().err
    assert "HTTP 404" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def _photo_file(server):
    path = server.run_dir / "photo.jpg"
    path.write_bytes(make_photo("JPEG"))
    return path
