"""The nginx sidecar (deploy/nginx) for real: the template rendered by the real envsubst as the
official image renders it, nginx (the Debian package; non-root when the tests run as root) in front
of a real TorchServe with its own tokens off, everything on 127.0.0.1. (What the files promise,
read from them: tests/unit/deploy/test_nginx.py.)"""
from __future__ import annotations

import http.client
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from conftest import make_photo, start_server
from lizaalert_tagger.client.http import TaggerClient
from lizaalert_tagger.ops.torchserve import free_port

pytestmark = pytest.mark.integration

TOKEN = "tok-current-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"  # 44 chars of the b64token alphabet, like token_urlsafe(32)
TOKEN_NEXT = "tok-next-" + "z9Y8x7W6v5U4t3S2r1Q0p9O8n7M6l5K4"
PREDICT = "/predictions/lizaalert_tagger"
# The official image's 20-envsubst-on-templates.sh: substitute exactly the environment variables
# that exist and whose names match NGINX_ENVSUBST_FILTER, so nginx's own $variables stay.
IMAGE_ENVSUBST = (
    'defined_envs=$(printf \'${%s} \' $(awk "END { for (name in ENVIRON) { print ( name ~ /${NGINX_ENVSUBST_FILTER}/ ) '
    '? name : \\"\\" } }" < /dev/null )); envsubst "$defined_envs" < "$1" > "$2"'
)


@pytest.fixture(scope="module")
def system_tools(root) -> dict[str, str]:
    """nginx and envsubst, installed by scripts/install_system_tools.sh (as `make system-tools` does) when missing."""
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()) or not shutil.which("envsubst"):
        result = subprocess.run(["bash", str(root / "scripts" / "install_system_tools.sh"), "nginx", "gettext-base"],
                                capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            pytest.fail(f"nginx/envsubst missing and not installable (make system-tools): {result.stdout[-1500:]}{result.stderr[-1500:]}")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    envsubst = shutil.which("envsubst")
    if not Path(nginx).exists() or envsubst is None:
        pytest.fail("nginx or envsubst still missing after scripts/install_system_tools.sh nginx gettext-base")
    return {"nginx": nginx, "envsubst": envsubst}


def render(template: Path, out: Path, variables: dict[str, str]) -> str:
    """The template rendered with the real envsubst, as the nginx image's entrypoint does."""
    env = {**os.environ, **variables, "NGINX_ENVSUBST_FILTER": "^TAGGER_"}
    subprocess.run(["sh", "-c", IMAGE_ENVSUBST, "render", str(template), str(out)], env=env, check=True, timeout=60)
    return out.read_text()


@dataclass
class Proxy:
    url: str
    port: int
    process: subprocess.Popen
    folder: Path
    rendered: str

    def workers(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def tagger_server(tmp_path_factory, model_store):
    """A real TorchServe on 127.0.0.1 with its own tokens off, as in the pod."""
    ts = start_server(tmp_path_factory.mktemp("run"), model_store, disable_token_authorization="true")
    yield ts
    ts.stop()


@pytest.fixture(scope="module")
def start_proxy(system_tools, tagger_server, nginx_dir):
    """Start nginx in the foreground with the rendered template; stopped at the end of the module."""
    started: list[Proxy] = []

    def start(**variables: str) -> Proxy:
        port = free_port()
        variables = {"TAGGER_LISTEN": f"127.0.0.1:{port}",
                     "TAGGER_TORCHSERVE": tagger_server.inference_url.removeprefix("http://"),
                     "TAGGER_TOKEN": TOKEN, "TAGGER_TOKEN_NEXT": TOKEN_NEXT, **variables}
        folder = Path(tempfile.mkdtemp(prefix="tagger-nginx-"))  # not under pytest's 0700 tmp: nginx may run as nobody
        (folder / "conf.d").mkdir()
        shutil.copy(nginx_dir / "nginx.conf", folder / "nginx.conf")
        rendered = render(nginx_dir / "tagger.conf.template", folder / "conf.d" / "tagger.conf", variables)
        for name in ("stdout.log", "stderr.log"):  # nginx reopens /dev/stdout: the files must be its own
            (folder / name).touch()
        as_user = {}
        if os.geteuid() == 0:  # run as in the pod, without root: every file it writes is under the prefix
            nobody = pwd.getpwnam("nobody")
            for path in (folder, *folder.rglob("*")):
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
            as_user = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        logs = [open(folder / name, "ab") for name in ("stdout.log", "stderr.log")]
        process = subprocess.Popen([system_tools["nginx"], "-p", f"{folder}/", "-c", str(folder / "nginx.conf"),
                                    "-e", "stderr", "-g", "daemon off;"],
                                   stdout=logs[0], stderr=logs[1], stdin=subprocess.DEVNULL, **as_user)
        for log in logs:
            log.close()
        proxy = Proxy(f"http://127.0.0.1:{port}", port, process, folder, rendered)
        started.append(proxy)
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                pytest.fail(f"nginx exited with {process.returncode}: {(folder / 'stderr.log').read_text()[-3000:]}")
            try:
                if requests.get(f"{proxy.url}/livez", timeout=2).status_code == 200:
                    return proxy
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"nginx did not answer /livez: {(folder / 'stderr.log').read_text()[-3000:]}")
            time.sleep(0.1)

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture(scope="module")
def proxy(start_proxy) -> Proxy:
    return start_proxy()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def raw_request(port: int, head: str, body: bytes = b"") -> int:
    """Send bytes as they are (no client library tidying them up); the answer's status code."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    assert match, f"no HTTP answer: {answer[:200]!r}"
    return int(match.group(1))


def raw_path(port: int, method: str, path: str, token: str | None = TOKEN, body: bytes = b"x") -> int:
    """A request for ``path`` exactly as written (http.client sends it unnormalised)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = bearer(token) if token else {}
        if method == "POST":
            headers["Content-Type"] = "application/octet-stream"
        conn.request(method, path, body=body if method == "POST" else None, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_the_template_renders_like_in_the_image(proxy, nginx_template):
    assert "${" not in proxy.rendered, "every ${TAGGER_...} is substituted"
    assert f'if ($tagger_client_token = "{TOKEN}")' in proxy.rendered
    # nginx's own variables are left alone (the image substitutes only the filtered names).
    for variable in ("$uri", "$request_uri", "$http_authorization", "$tagger_client_token", "$proxy_add_x_forwarded_for"):
        assert variable in nginx_template and variable in proxy.rendered


def test_probes_answer_without_a_token(proxy):
    live = requests.get(f"{proxy.url}/livez", timeout=10)
    assert live.status_code == 200
    ready = requests.get(f"{proxy.url}/readyz", timeout=30)
    assert ready.status_code == 200 and ready.json()["status"] == "Healthy"


def test_requests_without_the_right_token_get_401(proxy):
    photo = make_photo("JPEG")
    for headers in ({}, bearer("wrong"), bearer(TOKEN.swapcase()), bearer(TOKEN + "x"), bearer(TOKEN[:-1]),
                    {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN} {TOKEN}"},
                    {"Authorization": "Bearer "}):
        r = requests.post(f"{proxy.url}{PREDICT}", data=photo, timeout=30,
                          headers={**headers, "Content-Type": "application/octet-stream"})
        assert r.status_code == 401, headers
        assert r.json()["type"] == "Unauthorized" and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert requests.get(f"{proxy.url}/ping", timeout=30).status_code == 401


def test_a_real_prediction_with_either_token(proxy, spec):
    photo = make_photo("JPEG")
    for token in (TOKEN, TOKEN_NEXT):
        r = requests.post(f"{proxy.url}{PREDICT}", data=photo, timeout=60,
                          headers={**bearer(token), "Content-Type": "application/octet-stream"})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["model"]["name"] == "lizaalert_tagger"
        assert set(answer["attributes"]) == set(spec.keys)
    # The project's client through nginx: the Secret's token, TorchServe's API.
    client = TaggerClient(proxy.url, token=TOKEN, retries=0, timeout=60)
    assert client.healthy()
    assert set(client.predict(photo)["attributes"]) == set(spec.keys)


def test_a_streamed_body_reaches_torchserve(proxy):
    photo = make_photo("JPEG")
    r = requests.post(f"{proxy.url}{PREDICT}", data=iter([photo[:1000], photo[1000:]]), timeout=60,
                      headers={**bearer(TOKEN), "Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text


def test_management_and_the_token_api_are_not_reachable(proxy, tagger_server):
    for method, path in (("GET", "/models"), ("GET", "/models/lizaalert_tagger"), ("DELETE", "/models/lizaalert_tagger"),
                         ("POST", "/models?url=lizaalert_tagger.mar"), ("PUT", "/models/lizaalert_tagger?min_worker=0"),
                         ("GET", "/token"), ("GET", "/token?type=inference"), ("GET", "/api-description"),
                         ("OPTIONS", "/"), ("GET", "/metrics"), ("POST", "/models/lizaalert_tagger/invoke"),
                         ("POST", "/invocations?model_name=lizaalert_tagger"), ("POST", "/v1/models/lizaalert_tagger:predict"),
                         ("POST", "/v2/models/lizaalert_tagger/infer"), ("GET", "/v2/health/ready"),
                         ("GET", f"{PREDICT}"), ("DELETE", f"{PREDICT}"), ("POST", "/ping")):
        status = raw_path(proxy.port, method, path)
        assert 400 <= status < 500, f"{method} {path} -> {status}"
    # Nothing of that reached TorchServe's management API: the model is still there, with its workers.
    assert TaggerClient(tagger_server.inference_url, tagger_server.management_url, tokens=False, retries=0).model_ready()


@pytest.mark.parametrize("path", ["/%74oken", "/%2574oken", "//token", "/./token", "/predictions/../token",
                                  "/predictions/%2e%2e/token", "/predictions/lizaalert_tagger/..%2f..%2ftoken",
                                  "/models%2flizaalert_tagger", "/%2e%2e/models", "/predictions/lizaalert_tagger%00",
                                  # normalised, these would be the predictions API: refused all the same
                                  "/predictions%2flizaalert_tagger", "/%70redictions/lizaalert_tagger",
                                  "/predictions//lizaalert_tagger", "/predictions/./lizaalert_tagger",
                                  "/predictions/x/../lizaalert_tagger"])
def test_encoded_and_unnormalised_paths_are_refused(proxy, path):
    """Only canonical paths pass (400 otherwise), so TorchServe gets exactly the path nginx judged;
    their normalised forms (/token, /models, ...) are not served either (404, below)."""
    photo = make_photo("JPEG", size=(64, 48))
    for method in ("GET", "POST"):
        assert raw_path(proxy.port, method, path, body=photo) == 400, f"{method} {path}"


def test_normalised_forms_are_not_served_either(proxy):
    for path in ("/token", "/models", "/models/lizaalert_tagger", "/", "/predictions", "/predictions/", "/predictions/a/b/c"):
        assert raw_path(proxy.port, "GET", path) == 404, path
        assert raw_path(proxy.port, "POST", path) == 404, path


def test_negative_and_oversized_bodies_are_refused(proxy, project_config):
    limit = int(project_config["max_request_size"])
    auth = f"Authorization: Bearer {TOKEN}\nContent-Type: application/octet-stream\n"
    assert raw_request(proxy.port, f"POST {PREDICT} HTTP/1.1\nHost: tagger\n{auth}Content-Length: -1\n") == 400
    assert raw_request(proxy.port, f"POST {PREDICT} HTTP/1.1\nHost: tagger\n{auth}Content-Length: 12x\n") == 400
    assert raw_request(proxy.port, f"POST {PREDICT} HTTP/1.1\nHost: tagger\n{auth}Content-Length: {limit + 1}\n") == 413
    assert raw_request(proxy.port, f"POST {PREDICT} HTTP/1.1\nHost: tagger\n{auth}Content-Length: 10\n"
                                   "Transfer-Encoding: chunked\n") == 400
    # A body that says nothing of its size in advance (chunked) and then goes past the limit.
    chunk = b"x" * 1_000_000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(limit // len(chunk) + 2)) + b"0\r\n\r\n"
    assert raw_request(proxy.port, f"POST {PREDICT} HTTP/1.1\nHost: tagger\n{auth}Transfer-Encoding: chunked\n", body) == 413
    # nginx still serves after all that.
    assert requests.get(f"{proxy.url}/readyz", timeout=30).status_code == 200


def test_upstream_connections_are_reused(proxy, tagger_server):
    ts_port = int(tagger_server.inference_url.rsplit(":", 1)[1])

    def upstream_ports() -> set[int]:
        return {c.laddr.port for worker in proxy.workers() for c in worker.net_connections(kind="tcp")
                if c.raddr and c.raddr.port == ts_port and c.status == psutil.CONN_ESTABLISHED}

    photo = make_photo("JPEG", size=(64, 48))
    headers = {**bearer(TOKEN), "Content-Type": "application/octet-stream"}
    seen = []
    for _ in range(3):
        with requests.Session() as session:  # a new client connection each time: only nginx can keep one open
            assert session.post(f"{proxy.url}{PREDICT}", data=photo, headers=headers, timeout=60).status_code == 200
        seen.append(upstream_ports())
    assert all(seen), "nginx closed its connection to TorchServe after the request"
    assert seen[0] & seen[1] & seen[2], f"nginx opened a new connection each time: {seen}"


def test_an_empty_token_in_the_secret_opens_nothing(start_proxy):
    lone = start_proxy(TAGGER_TOKEN_NEXT="")
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer "}, bearer('""')):
        assert requests.get(f"{lone.url}/ping", headers=headers, timeout=30).status_code == 401, headers
    assert requests.get(f"{lone.url}/ping", headers=bearer(TOKEN), timeout=30).status_code == 200


def test_nginx_runs_without_root(proxy):
    """As in the pod (runAsNonRoot): when the tests run as root, nginx is started as nobody."""
    processes = [psutil.Process(proxy.process.pid), *proxy.workers()]
    assert len(processes) == 2, "a master and its one worker (worker_processes 1)"
    assert all(p.uids().effective != 0 for p in processes)
