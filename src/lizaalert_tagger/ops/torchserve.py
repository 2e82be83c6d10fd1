"""Start, watch and stop one TorchServe instance from the project's config.

Used by ``lizaalert-serve``, the integration tests and the benchmarks, so that they all run
TorchServe the same way:

- a run directory of its own: TorchServe writes ``key_file.json`` to its
  working directory, logs to ``$LOG_LOCATION``, and its launcher keeps a pid
  file in the temp directory, so separate run dirs let several instances
  (a user's server, a test's, a bench's) live side by side;
- ``config.properties`` copied there with only ports and paths overridden;
- the key file made owner-only (0600) as soon as it appears;
- the model state survives a restart: the next start restores the run dir's
  newest snapshot (:mod:`lizaalert_tagger.ops.model_state`), so a version
  switched to with ``tagctl models set-default`` is still the default after a
  restart. Editing ``load_models`` declares a new starting state (the snapshot
  is then ignored), and ``restore=False`` (``lizaalert-serve --fresh``) starts
  from ``load_models`` whatever the snapshot says;
- readiness = ``/ping`` healthy *and* every model that ``load_models`` names
  (or that the restored snapshot registers) has a READY worker (names read
  from the archives' manifests, as TorchServe reads them; ``load_models=all``
  means every archive of the store), checked with the client's one readiness
  check (``TaggerClient.model_ready``);
- stop = SIGTERM to the whole process group (launcher, JVM, Python
  workers), then SIGKILL, so nothing is left behind.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from lizaalert_tagger.client.http import ClientError, TaggerClient, read_keys
from lizaalert_tagger.common.paths import CONFIG_PROPERTIES, METRICS_CONFIG, MODEL_STORE, RUN_DIR
from lizaalert_tagger.ops.model_state import model_snapshot_to_restore, prune_snapshots, startup_models
from lizaalert_tagger.ops.properties import java_properties_value, read_properties, write_properties

KEY_FILE_NAME = "key_file.json"
TS_PID_FILE = ".model_server.pid"  # TorchServe's launcher writes it into its TMPDIR
TS_JAVA_MAIN = "org.pytorch.serve.ModelServer"
API_ADDRESS_KEYS = ("inference_address", "management_address", "metrics_address")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchserve_executable() -> str:
    """The ``torchserve`` launcher of this Python's environment, else the one on PATH."""
    beside = Path(sys.executable).parent / "torchserve"
    found = str(beside) if beside.is_file() else shutil.which("torchserve")
    if found is None:
        raise FileNotFoundError(f"the torchserve command is neither next to {sys.executable} nor on PATH: "
                                "install the project's requirements (make venv)")
    return found


@dataclass
class TorchServe:
    """One TorchServe instance in its own run directory."""

    run_dir: Path = RUN_DIR
    model_store: Path = MODEL_STORE
    config: Path = CONFIG_PROPERTIES
    host: str = "127.0.0.1"
    ports: tuple[int, int, int] | None = None  # inference, management, metrics; None: the config's
    grpc_ports: tuple[int, int] | None = None  # None: the config's, or free ones when ``ports`` is given
    overrides: dict[str, str] = field(default_factory=dict)
    quiet: bool = True  # send TorchServe's console output to run_dir/console.log
    restore: bool = True  # restore the model state of the run dir's last snapshot (False: start from load_models)
    process: subprocess.Popen | None = None
    restored_from: Path | None = field(default=None, init=False)  # the snapshot the last start restored, if any
    restored: dict | None = field(default=None, init=False, repr=False)  # its model snapshot

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir).resolve()
        self.model_store = Path(self.model_store).resolve()
        props = read_properties(self.config)
        if self.ports is None:
            self.ports = tuple(int(props[key].rsplit(":", 1)[1]) for key in API_ADDRESS_KEYS)
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

    @property
    def load_models(self) -> str:
        return self.overrides.get("load_models", self.props.get("load_models", ""))

    @property
    def tokens_off(self) -> bool:
        value = self.overrides.get("disable_token_authorization", self.props.get("disable_token_authorization", "false"))
        return value.lower() == "true"

    def keys(self) -> dict[str, str]:
        """``{"inference": ..., "management": ..., "api": ...}`` from the server's key file."""
        return dataclasses.asdict(read_keys(self.key_file))

    def client(self, **kwargs) -> TaggerClient:
        """A client of this server (its URLs and key file)."""
        return TaggerClient(self.inference_url, self.management_url, self.key_file, tokens=not self.tokens_off, **kwargs)

    @property
    def model_names(self) -> list[str]:
        """The models this server registers at start: those of the restored snapshot, or else
        those of ``load_models`` (named by the archives' manifests)."""
        if self.restored is not None:
            return sorted(self.restored["models"])
        return startup_models(self.load_models, self.model_store)

    def running_pid(self) -> int | None:
        """The PID of a TorchServe already started from this run dir (its pid file in ``run_dir/tmp``,
        the TMPDIR it runs with), or None."""
        import psutil

        try:
            pid = int((self.run_dir / "tmp" / TS_PID_FILE).read_text().split()[0])
            alive = TS_JAVA_MAIN in " ".join(psutil.Process(pid).cmdline())
        except (OSError, ValueError, IndexError, psutil.Error):
            return None
        return pid if alive else None

    def prepare(self) -> None:
        """The run dir made ready for a start: a fresh config, no old key file, the snapshot to restore chosen."""
        pid = self.running_pid()
        if pid is not None:  # its key file and snapshots must stay as they are
            raise RuntimeError(f"a TorchServe started from {self.run_dir} is still running (pid {pid}): stop it first "
                               f"(Ctrl-C where it runs, or kill {pid}) or give another run dir")
        (self.run_dir / "tmp").mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.key_file.unlink(missing_ok=True)
        self.restored_from = self.restored = None
        found = model_snapshot_to_restore(self.log_dir, self.model_store, self.load_models) if self.restore else None
        prune_snapshots(self.log_dir)
        overrides = {
            "inference_address": self.inference_url,
            "management_address": self.management_url,
            "metrics_address": self.metrics_url,
            "grpc_inference_port": str(self.grpc_ports[0]),
            "grpc_management_port": str(self.grpc_ports[1]),
            "model_store": str(self.model_store),
            "metrics_config": str(METRICS_CONFIG),
            **self.overrides,
        }
        if found is not None:
            # TorchServe restores a model_snapshot instead of loading load_models; the rest of the
            # config (addresses, tokens, limits) stays what config.properties and the overrides say.
            self.restored_from, self.restored = found
            overrides["model_snapshot"] = java_properties_value(json.dumps(self.restored, separators=(",", ":")))
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
            torchserve_executable(),
            "--start", "--foreground",  # snapshots on (no --ncs): the model state survives a restart
            "--ts-config", str(self.config_path),
            "--model-store", str(self.model_store),
        ]

    def start(self, timeout: float = 180.0, wait: bool = True) -> "TorchServe":
        """Start TorchServe (FileNotFoundError without a ``torchserve`` command, OSError where the
        run dir cannot be written) and, with ``wait``, block until :meth:`ready`."""
        command = self.command()
        self.prepare()
        out = open(self.run_dir / "console.log", "ab") if self.quiet else None
        # Owner-only permissions for everything TorchServe writes, the key file first.
        old_umask = os.umask(0o077)
        try:
            self.process = subprocess.Popen(
                command, cwd=self.run_dir, env=self.env(),
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

    def ready(self) -> bool:
        """/ping is healthy and every startup model has a READY worker."""
        client = self.client(retries=0, timeout=5)
        return client.healthy() and all(client.model_ready(name) for name in self.model_names)

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Block until :meth:`ready`; fail early if TorchServe exits. The time-out names the last
        reason the server was not ready (a describe that is not TorchServe's, a refused token)."""
        names = self.model_names  # a bad archive in load_models fails here, not after the timeout
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"TorchServe exited with code {self.process.returncode}; "
                                   f"see {self.log_dir} and {self.run_dir / 'console.log'}")
            if self.key_file.exists() or self.tokens_off:
                try:
                    if self.key_file.exists():
                        os.chmod(self.key_file, 0o600)
                    if self.ready():
                        return
                except ClientError as e:  # not listening yet, the key file half written, an answer not TorchServe's
                    last = f"; last: {e}"
                except OSError:  # the key file replaced under us, a connection dropped mid-answer (requests' errors)
                    pass
            time.sleep(0.5)
        raise TimeoutError(f"TorchServe was not ready within {timeout:.0f} s "
                           f"(waiting for {', '.join(names) or '/ping'}{last}); see {self.log_dir}")

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
        """Terminate launcher, JVM and workers (the whole process group): SIGTERM, then SIGKILL."""
        if self.process is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            if _signal_group_and_wait(self.process, sig, wait):
                break
        self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> "TorchServe":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group_and_wait(process: subprocess.Popen, sig: int, wait: float) -> bool:
    """Send ``sig`` to ``process``'s group; True once the group is gone (within ``wait`` seconds)."""
    pgid = process.pid
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        process.poll()
        time.sleep(0.2)
    return False
