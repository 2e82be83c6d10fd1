"""deploy/docker/healthcheck.py: a thin program over TaggerClient (healthy + model_ready), run by
the image's HEALTHCHECK and the pods' startup probes; here against a fake TorchServe on loopback."""
from __future__ import annotations

import ast
import contextlib
import io
import json
import re
from pathlib import Path


def run(healthcheck, fake, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = healthcheck.main(["--inference-url", fake.inference_url, "--management-url", fake.management_url,
                                 "--timeout", "5", *args])
    return code, out.getvalue().strip()


def test_healthcheck_healthy_when_a_worker_is_ready(healthcheck, fake_ts):
    assert run(healthcheck, fake_ts, "--key-file", str(fake_ts.key_file)) == (0, "healthy: lizaalert_tagger has a READY worker")
    sent = {r["path"]: r["headers"].get("Authorization") for r in fake_ts.requests}
    assert sent == {"/ping": "Bearer inf-1", "/models/lizaalert_tagger": "Bearer mgmt-1"}


def test_healthcheck_unhealthy_without_a_ready_worker(healthcheck, fake_ts):
    fake_ts.workers = ["UNLOADING", "STARTING"]
    code, out = run(healthcheck, fake_ts, "--key-file", str(fake_ts.key_file))
    assert code == 1 and out.startswith("unhealthy:") and "no READY worker" in out


def test_healthcheck_unhealthy_before_the_key_file_exists(healthcheck, fake_ts, tmp_path):
    code, out = run(healthcheck, fake_ts, "--key-file", str(tmp_path / "missing.json"))
    assert code == 1 and "has not started" in out
    assert fake_ts.requests == []


def test_healthcheck_unhealthy_while_torchserve_is_down(healthcheck):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = healthcheck.main(["--tokens-off", "--inference-url", "http://127.0.0.1:9", "--management-url",
                                 "http://127.0.0.1:9", "--timeout", "2"])
    assert code == 1 and "does not answer /ping" in out.getvalue()


def test_healthcheck_renews_an_expired_token(healthcheck, fake_ts):
    fake_ts.expire("inference")
    fake_ts.expire("management")
    assert run(healthcheck, fake_ts, "--key-file", str(fake_ts.key_file))[0] == 0
    assert fake_ts.renewals == 2
    assert json.loads(fake_ts.key_file.read_text())["inference"]["key"] == fake_ts.keys["inference"]


def test_healthcheck_with_tokens_off_sends_no_token_and_reads_no_key_file(healthcheck, fake_ts):
    fake_ts.tokens_off = True
    fake_ts.key_file.unlink()  # TorchServe writes none with disable_token_authorization=true
    assert run(healthcheck, fake_ts, "--tokens-off") == (0, "healthy: lizaalert_tagger has a READY worker")
    assert fake_ts.requests and all("Authorization" not in r["headers"] for r in fake_ts.requests)


def test_healthcheck_is_a_thin_program_over_the_client(root):
    """No key-file reading, token renewal or HTTP of its own: TaggerClient's healthy() and model_ready()."""
    tree = ast.parse((root / "deploy" / "docker" / "healthcheck.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "lizaalert_tagger.client.http" in imported
    assert not imported & {"json", "urllib", "urllib.request", "http.client", "requests", "urllib3"}, imported
    names = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    names |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert {"TaggerClient", "healthy", "model_ready"} <= names
    assert not names & {"read_keys", "renew_token", "read_text", "open", "get", "post"}, names & {"read_keys", "renew_token"}
    strings = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    assert not any("/token" in s or "/models/" in s for s in strings[1:]), "no API paths of its own"


def test_healthcheck_runs_the_script_in_exec_form(dockerfile, healthcheck, container_config):
    check = dockerfile.runtime("HEALTHCHECK")[-1].args
    command = dockerfile.exec_form(check.split("CMD", 1)[1].strip())
    assert command == ["python", "/opt/tagger/healthcheck.py"]
    assert "--start-period=" in check
    # /ping and the model's describe, each within the script's timeout, fit Docker's.
    assert int(re.search(r"--timeout=(\d+)s", check).group(1)) >= 2 * healthcheck.DEFAULT_TIMEOUT
    # The script's defaults point at the image's layout.
    assert str(healthcheck.DEFAULT_KEY_FILE.parent) == dockerfile.runtime("WORKDIR")[-1].args
    assert healthcheck.DEFAULT_INFERENCE_URL.rsplit(":", 1)[1] == container_config["inference_address"].rsplit(":", 1)[1]
    assert healthcheck.DEFAULT_MANAGEMENT_URL.rsplit(":", 1)[1] == container_config["management_address"].rsplit(":", 1)[1]
    copied_to = {dest for ins in dockerfile.runtime("COPY") for dest in ins.copy_destinations()}
    assert Path("/opt/tagger/healthcheck.py") in copied_to
