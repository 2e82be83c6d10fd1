"""What a TorchServe start restores, without starting one: the newest snapshot of the run dir
(TorchServe's model state: versions, the default version), only its model state, never over an
edited load_models or a missing archive; and a second start on a running server's run dir refused.
(The restart itself, for real: tests/integration/test_versions.py.)"""
import json
import os

import pytest


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
    from lizaalert_tagger.ops.properties import java_properties
    from lizaalert_tagger.ops.torchserve import TorchServe

    ts = TorchServe(run_dir=run_dir, model_store=store, ports=(18080, 18081, 18082), **kwargs)
    ts.prepare()
    return ts, java_properties(ts.config_path.read_text(encoding="utf-8"))


def test_the_newest_snapshot_is_restored_and_only_its_model_state(tmp_path, store):
    from lizaalert_tagger.ops.model_state import read_snapshot

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
    from lizaalert_tagger.ops.model_state import SNAPSHOTS_KEPT, snapshot_files

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

    from lizaalert_tagger.ops.torchserve import KEY_FILE_NAME, TS_JAVA_MAIN, TS_PID_FILE

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
