"""lizaalert-serve's failures are one line and a non-zero exit, never a traceback: a run dir it
cannot write, no torchserve command, and a management API whose describe is not TorchServe's."""
from __future__ import annotations

import functools
import json
import sys

import pytest

from lizaalert_tagger.ops import serve
from lizaalert_tagger.ops.torchserve import TorchServe


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("lizaalert-serve: "), err
    return err


def test_a_run_dir_that_cannot_be_written(tmp_path, manifest_archive, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    store = manifest_archive(tmp_path / "store" / "lizaalert_tagger.mar").parent
    code = serve.main(["--run-dir", str(blocker / "run"), "--model-store", str(store)])
    err = one_line_error(capsys)
    assert code == 1 and f"cannot use {blocker / 'run'}" in err and "Not a directory" in err


def test_no_torchserve_command(tmp_path, manifest_archive, monkeypatch, capsys):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "elsewhere" / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    store = manifest_archive(tmp_path / "store" / "lizaalert_tagger.mar").parent
    code = serve.main(["--run-dir", str(tmp_path / "run"), "--model-store", str(store)])
    err = one_line_error(capsys)
    assert code == 1 and "the torchserve command is neither next to" in err and "make venv" in err
    assert not (tmp_path / "run").exists(), "nothing is prepared for a server that cannot start"


class IdleLauncher(TorchServe):
    """TorchServe's place taken by a process that only waits: the APIs are a fake server's."""

    def command(self) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(120)"]


def not_torchserve(loopback_server, describes: list):
    """A management API answering /ping as TorchServe does and each describe with the next of ``describes``."""
    def route(method, path, query, body):
        if path == "/ping":
            return 200, json.dumps({"status": "Healthy"}).encode()
        return 200, json.dumps(describes.pop(0) if len(describes) > 1 else describes[0]).encode()

    return loopback_server(route)


READY = [{"modelName": "lizaalert_tagger", "modelVersion": "1.0", "isDefault": True, "workers": [{"status": "READY"}]}]


@pytest.mark.parametrize("describes, says", [
    ([{"modelName": "lizaalert_tagger"}], "not ready within 3 s (waiting for lizaalert_tagger; last: describe lizaalert_tagger "
                                          "answered with \"{'modelName': 'lizaalert_tagger'}\", not TorchServe's list"),
    ([READY, ["not a version"]], "describe lizaalert_tagger at http://127.0.0.1:"),
], ids=["while-waiting-for-readiness", "for-the-banner"])
def test_a_describe_that_is_not_a_list_of_versions(tmp_path, manifest_archive, monkeypatch, capsys, loopback_server,
                                                   describes, says):
    fake = not_torchserve(loopback_server, list(describes))
    port = int(fake.url.rsplit(":", 1)[1])
    monkeypatch.setattr(serve, "TorchServe", functools.partial(
        IdleLauncher, ports=(port, port, port), overrides={"disable_token_authorization": "true"}))
    store = manifest_archive(tmp_path / "store" / "lizaalert_tagger.mar").parent
    code = serve.main(["--run-dir", str(tmp_path / "run"), "--model-store", str(store), "--timeout", "3"])
    err = one_line_error(capsys)
    assert code == 1 and says in err, err
    assert "not TorchServe's list of versions" in err
