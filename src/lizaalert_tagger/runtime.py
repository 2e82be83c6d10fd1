"""Start, watch and stop one TorchServe instance from the project's config.

Used by ``serve.py`` (the README's serve command), the integration tests and
the benchmark, so that they all run TorchServe the same way:

- a run directory of its own: TorchServe writes ``key_file.json`` to its
  working directory, logs to ``$LOG_LOCATION``, and its launcher keeps a pid
  file in the temp directory, so separate run dirs let several instances
  (a user's server, a test's, a bench's) live side by side;
- ``config.properties`` copied there with only ports and paths overridden;
- the key file made owner-only (0600) as soon as it appears;
- readiness = ``/ping`` healthy *and* every model in ``load_models`` has a
  READY worker;
- stop = SIGTERM to the whole process group (launcher, JVM, Python
  workers), then SIGKILL, so nothing is left behind.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from lizaalert_tagger.paths import CONFIG_PROPERTIES, METRICS_CONFIG, MODEL_STORE, RUN_DIR

CONFIG_PATH = CONFIG_PROPERTIES
METRICS_CONFIG_PATH = METRICS_CONFIG
DEFAULT_MODEL_STORE = MODEL_STORE
DEFAULT_RUN_DIR = RUN_DIR
KEY_FILE_NAME = "key_file.json"


def read_properties(path: Path = CONFIG_PATH) -> dict[str, str]:
    """``key=value`` lines of a Java properties file (comments and blanks skipped)."""
    props = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


def write_properties(source: Path, target: Path, overrides: dict[str, str]) -> None:
    """Copy ``source`` to ``target`` replacing (or appending) the given keys, keeping comments."""
    remaining = dict(overrides)
    lines = []
    for line in source.read_text(encoding="utf-8").splitlines():
        key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else None
        if key in remaining:
            lines.append(f"{key}={remaining.pop(key)}")
        else:
            lines.append(line)
    lines += [f"{k}={v}" for k, v in remaining.items()]
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_key_file(path: Path) -> dict[str, str]:
    """``{"inference": ..., "management": ..., "api": ...}`` from TorchServe's key file."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return {
        "inference": raw["inference"]["key"],
        "management": raw["management"]["key"],
        "api": raw["API"]["key"],
    }


@dataclass
class TorchServe:
    """One TorchServe instance in its own run directory."""

    run_dir: Path = DEFAULT_RUN_DIR
    model_store: Path = DEFAULT_MODEL_STORE
    config: Path = CONFIG_PATH
    host: str = "127.0.0.1"
    ports: tuple[int, int, int] | None = None  # inference, management, metrics; None: the config's
    grpc_ports: tuple[int, int] | None = None  # None: the config's, or free ones when ``ports`` is given
    overrides: dict[str, str] = field(default_factory=dict)
    quiet: bool = True  # send TorchServe's console output to run_dir/console.log
    process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir).resolve()
        self.model_store = Path(self.model_store).resolve()
        props = read_properties(self.config)
        if self.ports is None:
            self.ports = tuple(
                int(props[k].rsplit(":", 1)[1])
                for k in ("inference_address", "management_address", "metrics_address")
            )
            if self.grpc_ports is None:
                self.grpc_ports = (int(props["grpc_inference_port"]), int(props["grpc_management_port"]))
        elif self.grpc_ports is None:  # gRPC cannot be disabled: give it free ports too
            self.grpc_ports = (free_port(), free_port())
        self.props = props

    @property
    def inference_url(self) -> str:
        return f"http://{self.host}:{self.ports[0]}"

    @property
    def management_url(self) -> str:
        return f"http://{self.host}:{self.ports[1]}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.ports[2]}"

    @property
    def key_file(self) -> Path:
        return self.run_dir / KEY_FILE_NAME

    @property
    def config_path(self) -> Path:
        return self.run_dir / "config.properties"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    def keys(self) -> dict[str, str]:
        return read_key_file(self.key_file)

    def prepare(self) -> None:
        (self.run_dir / "tmp").mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.key_file.unlink(missing_ok=True)
        overrides = {
            "inference_address": self.inference_url,
            "management_address": self.management_url,
            "metrics_address": self.metrics_url,
            "grpc_inference_port": str(self.grpc_ports[0]),
            "grpc_management_port": str(self.grpc_ports[1]),
            "model_store": str(self.model_store),
            "metrics_config": str(METRICS_CONFIG_PATH),
            **self.overrides,
        }
        write_properties(self.config, self.config_path, overrides)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        tmp = str(self.run_dir / "tmp")
        env.update(TEMP=tmp, TMPDIR=tmp, LOG_LOCATION=str(self.log_dir), METRICS_LOCATION=str(self.log_dir))
        # The Python workers must import the venv's packages, whatever PATH says.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def command(self) -> list[str]:
        return [
            str(Path(sys.executable).parent / "torchserve"),
            "--start", "--foreground", "--ncs",
            "--ts-config", str(self.config_path),
            "--model-store", str(self.model_store),
        ]

    def start(self, timeout: float = 180.0, wait: bool = True) -> "TorchServe":
        self.prepare()
        out = open(self.run_dir / "console.log", "ab") if self.quiet else None
        # Owner-only permissions for everything TorchServe writes, the key file first.
        old_umask = os.umask(0o077)
        try:
            self.process = subprocess.Popen(
                self.command(), cwd=self.run_dir, env=self.env(),
                stdout=out, stderr=subprocess.STDOUT if out else None,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            os.umask(old_umask)
            if out:
                out.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def _inference_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys()['inference']}"}

    def _management_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys()['management']}"}

    def models_ready(self) -> bool:
        names = [m.strip()[:-4] for m in self.props.get("load_models", "").split(",") if m.strip().endswith(".mar")]
        for name in names:
            r = requests.get(f"{self.management_url}/models/{name}", headers=self._management_headers(), timeout=5)
            if r.status_code != 200:
                return False
            workers = [w for version in r.json() for w in version.get("workers", [])]
            if not any(w.get("status") == "READY" for w in workers):
                return False
        return True

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Block until /ping is healthy and the configured models have a READY worker."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"TorchServe exited with code {self.process.returncode}; see {self.log_dir} and {self.run_dir / 'console.log'}")
            if self.key_file.exists():
                os.chmod(self.key_file, 0o600)
                try:
                    ping = requests.get(f"{self.inference_url}/ping", headers=self._inference_headers(), timeout=5)
                    if ping.status_code == 200 and self.models_ready():
                        return
                except (requests.RequestException, ValueError, KeyError):
                    pass  # not listening yet, or the key file is half written
            time.sleep(0.5)
        raise TimeoutError(f"TorchServe was not ready within {timeout:.0f} s; see {self.log_dir}")

    def worker_pids(self) -> list[int]:
        """PIDs of the Python model workers (children of the JVM)."""
        import psutil

        if self.process is None:
            return []
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [p.pid for p in children if "model_service_worker" in " ".join(p.cmdline())]

    def stop(self, timeout: float = 30.0) -> None:
        """Terminate launcher, JVM and workers (the whole process group)."""
        if self.process is None:
            return
        pgid = self.process.pid
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    break
                self.process.poll()
                time.sleep(0.2)
            else:
                continue
            break
        self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> "TorchServe":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

