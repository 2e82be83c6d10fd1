#!/usr/bin/env python3
"""Token gateway: one set of tokens, kept in a Kubernetes Secret, for every replica.

Why it exists: TorchServe 0.12 makes up its tokens when it starts (random,
``TokenAuthorization.init``) and offers no way to set them: no config key, no
environment variable, no flag, and a ``key_file.json`` that exists before the
start is overwritten, not read (docs/scaling.md has the evidence). Behind a
Service, requests land on any replica, each with tokens of its own, so no
client could hold "the" token.

What it does: it runs in the same pod as TorchServe (a second container of the
same image) and listens on the pod's inference and management ports. A request
passes only with a token from the Secret, which is mounted as files (one per
API) and read again on every request: rotating the Secret needs no restart,
and a file may hold several tokens, one per line, so clients can move to a new
token before the old one is removed. The request then goes to TorchServe on
the pod's loopback with the pod's own token from TorchServe's key_file.json
(an emptyDir both containers mount). When TorchServe refuses that token
(expired after ``token_expiration_min``, or TorchServe restarted with new
keys), the gateway reads the key file again, renews the token with the API key
if the file has not changed, and retries once.

Probes need no token: ``GET /gateway/healthz`` on the inference port answers
200 when TorchServe answers /ping and the model has a READY worker (readiness),
``GET /gateway/livez`` when the gateway itself runs (liveness); both say
nothing about the model beyond that.

TorchServe's own token check stays on; the gateway adds a check in front of it.
Not supported: chunked request bodies (411; clients send Content-Length, as
curl --data-binary and requests do), streaming responses (buffered), gRPC, and
TorchServe's token API (``/token``; 403: the pod keys are the gateway's).

Standard library only. Example (what deploy/k8s/deployment.yaml runs):

    python token_gateway.py --key-file /home/tagger/run/key_file.json \\
        --inference-token-file /var/run/secrets/tagger/inference-token \\
        --management-token-file /var/run/secrets/tagger/management-token
"""
from __future__ import annotations

import argparse
import hmac
import http.client
import json
import logging
import re
import signal
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger("token_gateway")

# TorchServe's own pattern for the header (TokenAuthorization.bearerTokenHeaderPattern).
BEARER = re.compile(r"^Bearer\s+(\S+)$")
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "expect", "host", "content-length", "authorization",
})
DEFAULT_MAX_BODY = 36_000_000  # config.properties' max_request_size
READY_PATH = "/gateway/healthz"  # readiness: TorchServe answers and the model has a READY worker
LIVE_PATH = "/gateway/livez"  # liveness: the gateway itself answers


def read_tokens(path: Path) -> list[str]:
    """The tokens a client may use: one per line, blank lines and # comments skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        log.error("cannot read token file %s (%s): refusing every request", path, e)
        return []
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def is_token_refusal(status: int, body: bytes) -> bool:
    """TorchServe's answer to a wrong or expired token (HTTP 400, InvalidKeyException)."""
    return status in (400, 401, 403) and (b"InvalidKeyException" in body or b"Token Authorization failed" in body)


class PodKeys:
    """The pod's own TorchServe tokens, from its key file, renewed with the API key when refused."""

    def __init__(self, key_file: Path, management_upstream: str, timeout: float = 10.0) -> None:
        self.key_file = Path(key_file)
        self.management_upstream = management_upstream
        self.timeout = timeout
        self._keys: dict[str, str] | None = None
        self._lock = threading.Lock()

    def _read(self) -> dict[str, str]:
        raw = json.loads(self.key_file.read_text(encoding="utf-8"))
        return {"inference": raw["inference"]["key"], "management": raw["management"]["key"], "api": raw["API"]["key"]}

    def get(self, kind: str) -> str:
        keys = self._keys
        if keys is None:
            with self._lock:
                self._keys = keys = self._read()
        return keys[kind]

    def refresh(self, kind: str, refused: str) -> str:
        """A token TorchServe refused: take a newer one from the file, or renew it (once)."""
        with self._lock:
            self._keys = self._read()
            if self._keys[kind] != refused:
                return self._keys[kind]  # TorchServe restarted, or another thread renewed it
            status, _, _, body = forward(self.management_upstream, "GET", f"/token?type={kind}", None,
                                         {}, self._keys["api"], self.timeout)
            if status != 200:
                raise RuntimeError(f"renewing the {kind} token failed: HTTP {status}: {body[:200]!r}")
            self._keys = self._read()
            log.info("renewed TorchServe's %s token", kind)
            return self._keys[kind]


def forward(upstream: str, method: str, path: str, body: bytes | None, headers: dict[str, str],
            token: str, timeout: float) -> tuple[int, str, list[tuple[str, str]], bytes]:
    """One request to TorchServe; the whole answer (status, reason, headers, body)."""
    parts = urlsplit(upstream)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={**headers, "Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        return response.status, response.reason, response.getheaders(), response.read()
    finally:
        conn.close()


@dataclass
class Route:
    """One listener: which API it fronts and which Secret file holds its tokens."""

    api: str  # "inference" or "management": also the kind of TorchServe token used upstream
    upstream: str
    token_file: Path
    blocked_prefixes: tuple[str, ...] = field(default=())


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], route: Route, keys: PodKeys, *, management_upstream: str,
                 model: str = "lizaalert_tagger", max_body: int = DEFAULT_MAX_BODY, timeout: float = 120.0) -> None:
        self.route, self.keys, self.max_body, self.upstream_timeout = route, keys, max_body, timeout
        self.management_upstream, self.model = management_upstream, model
        super().__init__(address, GatewayHandler)


class GatewayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive with clients; every answer has a Content-Length
    server: GatewayServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002  (TorchServe logs every access already)
        pass

    def _answer(self, status: int, payload: dict | bytes, headers: list[tuple[str, str]] = ()) -> None:
        body = payload if isinstance(payload, bytes) else (json.dumps(payload, ensure_ascii=False) + "\n").encode()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, kind: str, message: str, headers: list[tuple[str, str]] = ()) -> None:
        self._answer(status, {"code": status, "type": kind, "message": message},
                     [("Content-Type", "application/json"), *headers])

    def _client_token_ok(self) -> bool:
        match = BEARER.match(self.headers.get("Authorization", ""))
        if not match:
            return False
        offered = match.group(1).encode()
        # compare_digest against every accepted token: no early exit that timing could reveal.
        results = [hmac.compare_digest(offered, token.encode()) for token in read_tokens(self.server.route.token_file)]
        return any(results)

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering 411/413/400 already."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._error(411, "LengthRequired", "send the body with a Content-Length (chunked bodies are not supported)")
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._error(400, "BadRequest", "Content-Length is not a number")
            return None
        if length > self.server.max_body:
            # The unread body would be taken for the next request: close the connection.
            self._error(413, "RequestTooLarge", f"body of {length} bytes is over the limit of {self.server.max_body}",
                        [("Connection", "close")])
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _upstream(self, upstream: str, api: str, method: str, path: str, body: bytes | None,
                  headers: dict[str, str], timeout: float) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """Forward with the pod's ``api`` token; a refused token is refreshed once."""
        keys = self.server.keys
        token = keys.get(api)
        answer = forward(upstream, method, path, body, headers, token, timeout)
        if is_token_refusal(answer[0], answer[3]):
            answer = forward(upstream, method, path, body, headers, keys.refresh(api, token), timeout)
        return answer

    def _ready(self) -> None:
        """200 when TorchServe answers /ping and the model has a READY worker, else 503."""
        server = self.server
        try:
            status, _, _, body = self._upstream(server.route.upstream, "inference", "GET", "/ping", None, {}, 3.0)
            if status != 200:
                raise RuntimeError(f"/ping: HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
            status, _, _, body = self._upstream(server.management_upstream, "management", "GET",
                                                f"/models/{server.model}", None, {}, 3.0)
            if status != 200:
                raise RuntimeError(f"describe {server.model}: HTTP {status}")
            ready = [w for v in json.loads(body) for w in v.get("workers", []) if w.get("status") == "READY"]
            if not ready:
                raise RuntimeError(f"model {server.model} has no READY worker yet")
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, http.client.HTTPException) as e:
            self._error(503, "Unhealthy", str(e))
            return
        self._answer(200, {"status": "Healthy", "model": server.model, "readyWorkers": len(ready)},
                     [("Content-Type", "application/json")])

    def _proxy(self) -> None:
        route = self.server.route
        if route.api == "inference" and self.command == "GET" and self.path in (READY_PATH, LIVE_PATH):
            if self.path == LIVE_PATH:
                self._answer(200, {"status": "alive"}, [("Content-Type", "application/json")])
            else:
                self._ready()
            return
        if not self._client_token_ok():
            log.warning("%s %s from %s: missing or wrong token", self.command, self.path.split("?")[0], self.client_address[0])
            self._error(401, "InvalidKeyException",
                        "Token Authorization failed: send 'Authorization: Bearer <token>' with a token from the Secret",
                        [("WWW-Authenticate", "Bearer")])
            return
        if any(self.path.startswith(prefix) for prefix in route.blocked_prefixes):
            self._error(403, "Forbidden", "TorchServe's token API is not available through the gateway: "
                        "clients use the tokens from the Secret, the gateway renews the pod's own")
            return
        body = self._read_body()
        if body is None:
            return
        dropped = HOP_BY_HOP | {h.strip().lower() for h in self.headers.get("Connection", "").split(",")}
        headers = {name: value for name, value in self.headers.items() if name.lower() not in dropped}
        headers["X-Forwarded-For"] = self.client_address[0]
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        else:
            body = None  # no body and no Content-Length on a GET or DELETE
        try:
            answer = self._upstream(route.upstream, route.api, self.command, self.path, body, headers,
                                    self.server.upstream_timeout)
        except (OSError, ValueError, KeyError, RuntimeError, http.client.HTTPException) as e:
            log.error("%s %s: TorchServe unreachable or its key file unusable: %s", self.command, self.path, e)
            self._error(503, "ServiceUnavailable", "TorchServe is not ready in this pod; retry", [("Retry-After", "1")])
            return
        status, reason, upstream_headers, data = answer
        kept = [(n, v) for n, v in upstream_headers if n.lower() not in HOP_BY_HOP]
        self.send_response(status, reason)
        for name, value in kept:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _proxy


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "0.0.0.0", int(port)


def build_servers(args: argparse.Namespace) -> list[GatewayServer]:
    keys = PodKeys(args.key_file, args.management_upstream)
    routes = [
        (args.inference_listen, Route("inference", args.inference_upstream, args.inference_token_file)),
        (args.management_listen, Route("management", args.management_upstream, args.management_token_file, ("/token",))),
    ]
    return [GatewayServer(parse_address(listen), route, keys, management_upstream=args.management_upstream,
                          model=args.model, max_body=args.max_body, timeout=args.timeout)
            for listen, route in routes]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--key-file", type=Path, default=Path("/home/tagger/run/key_file.json"), help="TorchServe's key file (default: %(default)s)")
    parser.add_argument("--inference-listen", default="0.0.0.0:9080", help="default: %(default)s")
    parser.add_argument("--management-listen", default="0.0.0.0:9081", help="default: %(default)s")
    parser.add_argument("--inference-upstream", default="http://127.0.0.1:8080", help="default: %(default)s")
    parser.add_argument("--management-upstream", default="http://127.0.0.1:8081", help="default: %(default)s")
    parser.add_argument("--inference-token-file", type=Path, default=Path("/var/run/secrets/tagger/inference-token"), help="default: %(default)s")
    parser.add_argument("--management-token-file", type=Path, default=Path("/var/run/secrets/tagger/management-token"), help="default: %(default)s")
    parser.add_argument("--model", default="lizaalert_tagger", help=f"model that must have a READY worker for {READY_PATH} (default: %(default)s)")
    parser.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, help="largest request body in bytes (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for TorchServe's answer (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for path in (args.inference_token_file, args.management_token_file):
        if not read_tokens(path):
            print(f"token_gateway.py: no token in {path}: mount the Secret there (docs/deploy.md)", file=sys.stderr)
            return 2
    servers = build_servers(args)
    threads = [threading.Thread(target=s.serve_forever, name=f"gateway-{s.route.api}", daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    for s in servers:
        log.info("%s: %s:%d -> %s", s.route.api, *s.server_address[:2], s.route.upstream)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for s in servers:
        s.shutdown()
        s.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
