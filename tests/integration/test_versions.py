"""Model versions: register v2 next to v1, switch the default both ways and unregister,
under a steady stream of requests on the default URL: zero failed requests; the
default version set through the management API survives a restart (TorchServe's
snapshots, restored by ``ops.torchserve.TorchServe``); and readiness waits for what
``load_models`` names, a versioned archive or ``all``. (Which snapshot a start restores,
without a server: tests/unit/ops/test_snapshots.py.)"""
import shutil
import stat
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import make_photo, run_tagctl as tagctl, start_server


@pytest.fixture(scope="module")
def v2_archive(server, seeded_weights):
    from lizaalert_tagger.ops.archive import build_archive

    return build_archive(seeded_weights, "2.0", store=server.model_store)


@pytest.fixture(scope="module")
def two_versions_store(tmp_path_factory, model_store, v2_archive):
    """A store of its own with ``lizaalert_tagger.mar`` (1.0, what config.properties' load_models
    names) and ``lizaalert_tagger_2.0.mar``, both registered as the model ``lizaalert_tagger``."""
    store = tmp_path_factory.mktemp("two_versions")
    shutil.copy(model_store / "lizaalert_tagger.mar", store)
    shutil.copy(v2_archive, store)
    return store


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


@pytest.mark.integration
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


@pytest.mark.integration
def test_unknown_model_and_version_are_one_line_errors(server, capsys):
    code, _ = tagctl(server, "models", "describe", "no_such_model")
    assert code == 1
    err = capsys.readouterr().err
    assert "HTTP 404" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def _photo_file(server):
    path = server.run_dir / "photo.jpg"
    path.write_bytes(make_photo("JPEG"))
    return path


# --- restarts: the model state of the last run is restored ---------------------


def served_versions(server, count: int = 4) -> Counter:
    """Which versions answer ``count`` photos on the default URL ``/predictions/lizaalert_tagger``."""
    url = f"{server.inference_url}/predictions/lizaalert_tagger"
    headers = {"Authorization": f"Bearer {server.keys()['inference']}"}
    versions = Counter()
    for _ in range(count):
        r = requests.post(url, data=make_photo("JPEG"), headers=headers, timeout=60)
        assert r.status_code == 200, r.text
        versions[r.json()["model"]["version"]] += 1
    return versions


def registered_versions(server) -> tuple[list[str], str]:
    """``([registered versions], default version)`` of lizaalert_tagger, from the management API
    (``/models/NAME`` describes the default version only, ``/models/NAME/all`` every version)."""
    client = server.client()
    every = client.management("GET", "/models/lizaalert_tagger/all", "describe all")
    (default,) = client.management("GET", "/models/lizaalert_tagger", "describe default")
    return sorted(str(m["modelVersion"]) for m in every), str(default["modelVersion"])


@pytest.mark.integration
def test_default_version_survives_a_restart(tmp_path, two_versions_store):
    """set-default 2.0, restart in the same run dir: 2.0 answers the default URL, 1.0 is still registered;
    a start with ``restore=False`` (``lizaalert-serve --fresh``) serves what load_models names (1.0)."""
    from lizaalert_tagger.ops.torchserve import TorchServe, free_port

    store = two_versions_store
    v2 = store / "lizaalert_tagger_2.0.mar"
    run_dir = tmp_path / "run"

    server = start_server(run_dir, store)
    try:
        assert server.restored_from is None  # a new run dir: nothing to restore
        assert set(served_versions(server)) == {"1.0"}
        code, out = tagctl(server, "models", "register", v2.name, "--workers", "1")
        assert code == 0, out
        code, out = tagctl(server, "models", "set-default", "lizaalert_tagger", "2.0")
        assert code == 0, out
        assert set(served_versions(server)) == {"2.0"}
        old_keys = server.keys()
    finally:
        server.stop()

    snapshots = sorted((run_dir / "logs" / "config").glob("*.cfg"))
    assert [p.name.split("-", 1)[1] for p in snapshots][-1] == "shutdown.cfg"
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in snapshots)  # owner-only, like the key file
    assert not any(key in p.read_text() for p in snapshots for key in old_keys.values())  # no token in them

    server = start_server(run_dir, store)  # the restart: same run dir and store, new ports
    try:
        assert server.restored_from == snapshots[-1]
        assert server.model_names == ["lizaalert_tagger"]
        assert set(served_versions(server)) == {"2.0"}
        assert registered_versions(server) == (["1.0", "2.0"], "2.0")
        assert server.keys()["inference"] != old_keys["inference"]  # tokens are new at every start
        # the config still comes from config.properties: these ports, not the last run's
        assert f"inference_address={server.inference_url}" in server.config_path.read_text()
    finally:
        server.stop()

    fresh = TorchServe(run_dir=run_dir, model_store=store, ports=(free_port(), free_port(), free_port()), restore=False)
    try:
        fresh.start(timeout=240)
        assert fresh.restored_from is None
        assert set(served_versions(fresh)) == {"1.0"}
        assert registered_versions(fresh) == (["1.0"], "1.0")
    finally:
        fresh.stop()


@pytest.mark.integration
def test_readiness_with_a_versioned_archive_and_with_all(tmp_path, two_versions_store):
    """``load_models`` naming a versioned archive, then ``all``: the start reads the model's name from the
    manifests (not the file names), is ready only once that model answers, and serves what was named."""
    versioned = start_server(tmp_path / "versioned", two_versions_store, load_models="lizaalert_tagger_2.0.mar")
    try:
        assert versioned.model_names == ["lizaalert_tagger"] and versioned.ready()
        assert set(served_versions(versioned)) == {"2.0"}  # every request answered at once after readiness
        assert registered_versions(versioned) == (["2.0"], "2.0")
    finally:
        versioned.stop()

    every = start_server(tmp_path / "all", two_versions_store, load_models="all")
    try:
        assert every.model_names == ["lizaalert_tagger"] and every.ready()
        versions, default = registered_versions(every)
        assert versions == ["1.0", "2.0"]
        assert set(served_versions(every)) == {default}
    finally:
        every.stop()
