"""Model versions: register v2 next to v1, switch the default both ways and unregister,
under a steady stream of requests on the default URL: zero failed requests; and the
default version set through the management API survives a restart (TorchServe's
snapshots, restored by ``runtime.TorchServe``)."""
import json
import os
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
def test_default_version_survives_a_restart(tmp_path, model_store, seeded_weights):
    """set-default 2.0, restart in the same run dir: 2.0 answers the default URL, 1.0 is still registered;
    a start with ``restore=False`` (``lizaalert-serve --fresh``) serves what load_models names (1.0)."""
    from lizaalert_tagger.ops.archive import build_archive
    from lizaalert_tagger.ops.runtime import TorchServe, free_port

    store = tmp_path / "store"
    store.mkdir()
    shutil.copy(model_store / "lizaalert_tagger.mar", store)  # version 1.0, what load_models names
    v2 = build_archive(seeded_weights, "2.0", store=store)
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


# What TorchServe 0.12 writes (Properties.store: ':' and '=' escaped, the JSON pretty-printed
# on one line with escaped newlines), trimmed to the entries that matter here.
SNAPSHOT_TEXT = """#Saving snapshot
#Thu Nov 27 16:50:00 UTC 2025
load_models=lizaalert_tagger.mar
model_store=/srv/store
model_snapshot={\\n  "name"\\: "{name}",\\n  "modelCount"\\: 2,\\n  "created"\\: 1764262200000,\\n  "models"\\: {\\n    "lizaalert_tagger"\\: {\\n      "1.0"\\: {\\n        "defaultVersion"\\: {default_1},\\n        "marName"\\: "lizaalert_tagger.mar",\\n        "minWorkers"\\: 2,\\n        "maxWorkers"\\: 2,\\n        "batchSize"\\: 8,\\n        "maxBatchDelay"\\: 2,\\n        "responseTimeout"\\: 60,\\n        "startupTimeout"\\: 120,\\n        "runtimeType"\\: "python"\\n      },\\n      "2.0"\\: {\\n        "defaultVersion"\\: {default_2},\\n        "marName"\\: "{mar_2}",\\n        "minWorkers"\\: 2,\\n        "maxWorkers"\\: 2,\\n        "batchSize"\\: 8,\\n        "maxBatchDelay"\\: 2,\\n        "responseTimeout"\\: 60,\\n        "startupTimeout"\\: 120,\\n        "runtimeType"\\: "python"\\n      }\\n    }\\n  }\\n}
"""


def write_snapshot(run_dir, stamp: str, kind: str = "snapshot", default: str = "2.0", mar_2: str = "lizaalert_tagger_2.0.mar",
                   load_models: str = "lizaalert_tagger.mar"):
    name = f"{stamp}-{kind}.cfg"
    text = (SNAPSHOT_TEXT.replace("{name}", name).replace("{mar_2}", mar_2)
            .replace("{default_1}", str(default == "1.0").lower()).replace("{default_2}", str(default == "2.0").lower())
            .replace("load_models=lizaalert_tagger.mar", f"load_models={load_models}"))
    path = run_dir / "logs" / "config" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def store(tmp_path):
    """A store with the two archive names a snapshot may restore (contents are not read before the start)."""
    store = tmp_path / "store"
    store.mkdir()
    for name in ("lizaalert_tagger.mar", "lizaalert_tagger_2.0.mar"):
        (store / name).write_bytes(b"not read here")
    return store


def prepared(run_dir, store, **kwargs):
    from lizaalert_tagger.ops.runtime import TorchServe, java_properties

    ts = TorchServe(run_dir=run_dir, model_store=store, ports=(18080, 18081, 18082), **kwargs)
    ts.prepare()
    return ts, java_properties(ts.config_path.read_text(encoding="utf-8"))


def test_the_newest_snapshot_is_restored_and_only_its_model_state(tmp_path, store):
    from lizaalert_tagger.ops.runtime import read_snapshot

    write_snapshot(tmp_path / "run", "20251127160000000", "startup", default="1.0")
    newest = write_snapshot(tmp_path / "run", "20251127165000000", "shutdown", default="2.0")
    write_snapshot(tmp_path / "run", "20251127163000000", "snapshot", default="1.0")
    ts, props = prepared(tmp_path / "run", store)
    assert ts.restored_from == newest.resolve()
    assert ts.model_names == ["lizaalert_tagger"]
    restored = json.loads(props["model_snapshot"])
    assert restored == read_snapshot(newest)[0]
    assert {v: s["defaultVersion"] for v, s in restored["models"]["lizaalert_tagger"].items()} == {"1.0": False, "2.0": True}
    # everything else is config.properties with the run's overrides, not the snapshot's values
    assert props["model_store"] == str(store.resolve()) and props["inference_address"] == "http://127.0.0.1:18080"
    assert props["disable_token_authorization"] == "false" and props["load_models"] == "lizaalert_tagger.mar"


def test_no_restore_when_asked_or_when_load_models_changed(tmp_path, store):
    write_snapshot(tmp_path / "run", "20251127165000000")
    ts, props = prepared(tmp_path / "run", store, restore=False)  # lizaalert-serve --fresh
    assert ts.restored_from is None and "model_snapshot" not in props
    # a snapshot taken by a server that started from another load_models: config.properties was edited
    ts, props = prepared(tmp_path / "run", store, overrides={"load_models": "lizaalert_tagger=lizaalert_tagger_2.0.mar"})
    assert ts.restored_from is None and "model_snapshot" not in props


def test_a_snapshot_naming_a_missing_archive_is_a_clear_error(tmp_path, store):
    write_snapshot(tmp_path / "run", "20251127165000000", mar_2="lizaalert_tagger_3.0.mar")
    with pytest.raises(ValueError, match=r"lizaalert_tagger_3\.0\.mar.*--fresh"):
        prepared(tmp_path / "run", store)
    write_snapshot(tmp_path / "run", "20251127170000000", mar_2="../elsewhere/lizaalert_tagger_2.0.mar")
    with pytest.raises(ValueError, match="not an archive in"):
        prepared(tmp_path / "run", store)


def test_a_half_written_newest_snapshot_is_skipped(tmp_path, store, capsys):
    good = write_snapshot(tmp_path / "run", "20251127165000000", default="2.0")
    broken = write_snapshot(tmp_path / "run", "20251127170000000", "shutdown")
    broken.write_text(broken.read_text()[:400], encoding="utf-8")  # TorchServe died while writing it
    ts, props = prepared(tmp_path / "run", store)
    assert ts.restored_from == good.resolve() and "model_snapshot" in props
    assert broken.name in capsys.readouterr().err


def test_old_snapshots_are_pruned_and_snapshots_are_on(tmp_path, store):
    from lizaalert_tagger.ops.runtime import SNAPSHOTS_KEPT, snapshot_files

    stamps = [f"2025112716{i:02d}00000" for i in range(SNAPSHOTS_KEPT + 5)]
    for stamp in stamps:
        write_snapshot(tmp_path / "run", stamp)
    ts, _ = prepared(tmp_path / "run", store)
    kept = snapshot_files(ts.log_dir)
    assert [p.name.split("-")[0] for p in kept] == stamps[-SNAPSHOTS_KEPT:]
    assert ts.restored_from == kept[-1]
    assert "--ncs" not in ts.command()


def test_a_second_start_from_a_running_servers_run_dir_is_refused_and_leaves_it_alone(tmp_path, store):
    """`make serve` twice: the second start must not delete the first server's key file (its clients
    would be locked out) nor touch its snapshots; it says which PID to stop."""
    import subprocess
    import sys

    from lizaalert_tagger.ops.runtime import KEY_FILE_NAME, TS_JAVA_MAIN, TS_PID_FILE

    run = tmp_path / "run"
    (run / "tmp").mkdir(parents=True)
    key = run / KEY_FILE_NAME
    key.write_text('{"management": {"key": "m"}, "inference": {"key": "i"}, "API": {"key": "a"}}')
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", TS_JAVA_MAIN])
    try:
        (run / "tmp" / TS_PID_FILE).write_text(str(alive.pid))
        with pytest.raises(RuntimeError, match=rf"still running \(pid {alive.pid}\): stop it first"):
            prepared(run, store)
        assert key.exists()
    finally:
        alive.kill()
        alive.wait()
    # the same pid file once that process is gone: a stale file, the start goes on
    ts, _ = prepared(run, store)
    assert ts.running_pid() is None and not key.exists()
    # a live process that is not TorchServe (the PID was reused) does not block either
    (run / "tmp" / TS_PID_FILE).write_text(str(os.getpid()))
    assert prepared(run, store)[0].running_pid() is None
