"""Start, watch and stop one TorchServe instance from the project's config.

Used by ``serve.py`` (the README's serve command), the integration tests and
the benchmark, so that they all run TorchServe the same way:

- a run directory of its own: TorchServe writes ``key_file.json`` to its
  working directory, logs to ``$LOG_LOCATION``, and its launcher keeps a pid
  file in the temp directory, so separate run dirs let several instances
  (a user's server, a test's, a bench's) live side by side;
- ``config.properties`` copied there with only ports and paths overridden;
- the key file made owner-only (0600) as soon as it appears;
- the model state survives a restart: TorchServe writes a snapshot of its
  registered models (versions, the default version, workers) to
  ``logs/config/`` of the run dir after start, after every management call
  that changes it and at shutdown; the next start restores the newest one
  (see :func:`model_snapshot_to_restore`), so a version switched to with
  ``tagctl models set-default`` is still the default after a restart. The
  config always comes from ``config.properties`` (``--ts-config``): only the
  ``model_snapshot`` part of the snapshot is used. Editing ``load_models``
  declares a new starting state (the snapshot is then ignored), and
  ``restore=False`` (``lizaalert-serve --fresh``) starts from ``load_models``
  whatever the snapshot says;
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
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from lizaalert_tagger.client.http import ClientError, TaggerClient, read_keys
from lizaalert_tagger.common.paths import CONFIG_PROPERTIES, METRICS_CONFIG, MODEL_STORE, RUN_DIR

CONFIG_PATH = CONFIG_PROPERTIES
METRICS_CONFIG_PATH = METRICS_CONFIG
DEFAULT_MODEL_STORE = MODEL_STORE
DEFAULT_RUN_DIR = RUN_DIR
KEY_FILE_NAME = "key_file.json"
TS_PID_FILE = ".model_server.pid"  # TorchServe's launcher writes it into its TMPDIR
TS_JAVA_MAIN = "org.pytorch.serve.ModelServer"
# TorchServe's snapshots: LOG_LOCATION/config/<yyyyMMddHHmmssSSS>-{startup,snapshot,shutdown}.cfg
SNAPSHOT_DIR_NAME = "config"
SNAPSHOT_FILE = re.compile(r"^(\d{17})-(startup|snapshot|shutdown)\.cfg$")
SNAPSHOTS_KEPT = 20  # older snapshot files are deleted at start (TorchServe never deletes any)


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


def java_properties(text: str) -> dict[str, str]:
    """The entries of a Java properties file as ``Properties.load`` reads them (escapes resolved).

    TorchServe writes its snapshots with ``Properties.store``, which escapes
    ``:``, ``=``, ``#``, ``!`` and backslashes in values (the JSON of
    ``model_snapshot`` is full of colons)."""
    props: dict[str, str] = {}
    logical: list[str] = []
    for raw in text.splitlines():
        line = raw.lstrip() if logical else raw.strip()
        if not logical and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2:  # an odd number of backslashes: the entry goes on on the next line
            logical.append(line[:-1])
            continue
        logical.append(line)
        entry, logical = "".join(logical), []
        i = 0
        while i < len(entry) and entry[i] not in "=: \t\f":
            i += 2 if entry[i] == "\\" else 1
        key, rest = entry[:i], entry[i:].lstrip(" \t\f")
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(" \t\f")
        props[_java_unescape(key)] = _java_unescape(rest)
    return props


def _java_unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            n = text[i + 1]
            if n == "u" and i + 6 <= len(text):
                out.append(chr(int(text[i + 2:i + 6], 16)))
                i += 6
                continue
            out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def java_properties_value(text: str) -> str:
    """``text`` escaped as a Java properties value (``Properties.load`` reads files as Latin-1)."""
    out = []
    for c in text:
        if c == "\\":
            out.append("\\\\")
        elif c in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[c])
        elif ord(c) > 0x7E or ord(c) < 0x20:
            out.extend(f"\\u{unit:04x}" for unit in _utf16_units(c))
        else:
            out.append(c)
    value = "".join(out)
    return "\\" + value if value.startswith(" ") else value


def _utf16_units(c: str) -> list[int]:
    data = c.encode("utf-16-be")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def snapshot_files(log_dir: Path) -> list[Path]:
    """TorchServe's snapshot files under ``log_dir/config``, oldest first (by the time in their names)."""
    folder = Path(log_dir) / SNAPSHOT_DIR_NAME
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_file() and SNAPSHOT_FILE.match(p.name)), key=lambda p: p.name)


def read_snapshot(path: Path) -> tuple[dict, dict[str, str]]:
    """``(model snapshot, properties)`` of one snapshot file; ValueError if it has no readable model snapshot."""
    try:
        props = java_properties(Path(path).read_text(encoding="utf-8"))
        snapshot = json.loads(props["model_snapshot"])
        models = snapshot.get("models") or {}
        if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
            raise ValueError("'models' is not a map of versions")
    except (OSError, KeyError, ValueError, AttributeError) as e:
        raise ValueError(f"{path}: not a TorchServe snapshot with a model_snapshot ({type(e).__name__}: {e})") from None
    snapshot["models"] = models
    return snapshot, props


def _normalized_load_models(value: str) -> str:
    return ",".join(entry.strip() for entry in value.split(",") if entry.strip())


def model_snapshot_to_restore(log_dir: Path, model_store: Path, load_models: str) -> tuple[Path, dict] | None:
    """The newest snapshot of a run dir's TorchServe, if the next start should restore it, else None.

    None when there is no snapshot, or when the snapshot's server started from
    another ``load_models`` than ``load_models`` (editing it in
    config.properties declares a new starting state). An unreadable newest
    file (a crash while TorchServe wrote it) is skipped, with a warning, for
    the one before it. ValueError, naming the way out, when the snapshot names
    an archive that is not in ``model_store`` (TorchServe would refuse to
    start) or a file outside it.
    """
    for path in reversed(snapshot_files(log_dir)):
        try:
            snapshot, props = read_snapshot(path)
            break
        except ValueError as e:
            print(f"warning: skipping {e}", file=sys.stderr)
    else:
        return None
    if _normalized_load_models(props.get("load_models", "")) != _normalized_load_models(load_models):
        return None
    store = Path(model_store)
    for name, versions in snapshot["models"].items():
        for version, state in versions.items():
            mar = str(state.get("marName", ""))
            if not mar or Path(mar).name != mar or mar in (".", "..") or not (store / mar).is_file():
                raise ValueError(
                    f"{path} restores {name} version {version} from {mar!r}, which is not an archive in {store}: "
                    f"put the archive back, or start from config.properties' load_models "
                    f"(lizaalert-serve --fresh, or delete {path.parent})"
                )
    return path, snapshot


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def archive_model_name(path: Path) -> str:
    """The model name in an archive's ``MAR-INF/MANIFEST.json`` (what TorchServe registers it as)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read("MAR-INF/MANIFEST.json"))["model"]["modelName"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a model archive with a manifest ({type(e).__name__}: {e})") from None


def startup_models(load_models: str, model_store: Path) -> list[str]:
    """The model names TorchServe registers at start for a ``load_models`` value.

    ``all``: every ``.mar`` in the store; otherwise comma-separated entries,
    ``file.mar`` (named by its manifest) or ``name=file.mar`` (named ``name``).
    """
    load_models = load_models.strip()
    if not load_models or load_models.lower() == "standalone":
        return []
    if load_models.lower() == "all":
        return sorted({archive_model_name(p) for p in Path(model_store).glob("*.mar")})
    names = []
    for entry in (e.strip() for e in load_models.split(",")):
        if not entry:
            continue
        if "=" in entry:
            names.append(entry.split("=", 1)[0].strip())
        elif entry.endswith(".mar"):
            names.append(archive_model_name(Path(model_store) / entry))
        else:
            names.append(entry)  # a model directory in the store: TorchServe names it after the directory
    return names


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
    restore: bool = True  # restore the model state of the run dir's last snapshot (False: start from load_models)
    process: subprocess.Popen | None = None
    restored_from: Path | None = field(default=None, init=False)  # the snapshot the last start restored, if any
    restored: dict | None = field(default=None, init=False, repr=False)  # its model snapshot

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
        """``{"inference": ..., "management": ..., "api": ...}`` from the server's key file."""
        return dataclasses.asdict(read_keys(self.key_file))

    def client(self, **kwargs) -> TaggerClient:
        """A client of this server (its URLs and key file)."""
        return TaggerClient(self.inference_url, self.management_url, self.key_file, tokens=not self.tokens_off, **kwargs)

    @property
    def snapshot_dir(self) -> Path:
        """Where TorchServe writes its snapshots (``$LOG_LOCATION/config``)."""
        return self.log_dir / SNAPSHOT_DIR_NAME

    @property
    def load_models(self) -> str:
        return self.overrides.get("load_models", self.props.get("load_models", ""))

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
        pid = self.running_pid()
        if pid is not None:  # its key file and snapshots must stay as they are
            raise RuntimeError(f"a TorchServe started from {self.run_dir} is still running (pid {pid}): stop it first "
                               f"(Ctrl-C where it runs, or kill {pid}) or give another run dir")
        (self.run_dir / "tmp").mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.key_file.unlink(missing_ok=True)
        self.restored_from = self.restored = None
        found = model_snapshot_to_restore(self.log_dir, self.model_store, self.load_models) if self.restore else None
        for old in snapshot_files(self.log_dir)[:-SNAPSHOTS_KEPT]:
            old.unlink(missing_ok=True)
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
            str(Path(sys.executable).parent / "torchserve"),
            "--start", "--foreground",  # snapshots on (no --ncs): the model state survives a restart
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

    def ready(self) -> bool:
        """/ping is healthy and every startup model has a READY worker."""
        client = self.client(retries=0, timeout=5)
        return client.healthy() and all(client.model_ready(name) for name in self.model_names)

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Block until :meth:`ready`; fail early if TorchServe exits."""
        names = self.model_names  # a bad archive in load_models fails here, not after the timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"TorchServe exited with code {self.process.returncode}; see {self.log_dir} and {self.run_dir / 'console.log'}")
            if self.key_file.exists() or self.tokens_off:
                if self.key_file.exists():
                    os.chmod(self.key_file, 0o600)
                try:
                    if self.ready():
                        return
                except (ClientError, ValueError, KeyError, OSError):
                    pass  # not listening yet, or the key file is half written
            time.sleep(0.5)
        raise TimeoutError(f"TorchServe was not ready within {timeout:.0f} s (waiting for {', '.join(names) or '/ping'}); see {self.log_dir}")

    @property
    def tokens_off(self) -> bool:
        return self.overrides.get("disable_token_authorization", self.props.get("disable_token_authorization", "false")).lower() == "true"

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

