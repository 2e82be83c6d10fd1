"""The HTTP client against a tiny local server: which answers it retries, and one-line errors."""
import json
import threading

import pytest


@pytest.fixture()
def answering(loopback_server):
    """A loopback server answering every request with the status queued in ``statuses`` (then 200); counts requests."""
    state = {"statuses": [], "count": 0}

    def route(method, path, query, body):
        state["count"] += 1
        status = state["statuses"].pop(0) if state["statuses"] else 200
        answer = {"code": status, "type": "x", "message": f"status {status}"} if status != 200 else {"attributes": {}, "tags": []}
        return status, json.dumps(answer).encode()

    state["url"] = loopback_server(route).url
    return state


def client_for(state):
    from lizaalert_tagger.client.http import TaggerClient

    # backoff 0 keeps the test fast; the statuses retried are the client's own
    import lizaalert_tagger.client.http as module

    c = TaggerClient(state["url"], state["url"], token="t")
    for session in c.sessions.values():
        for adapter in session.adapters.values():
            adapter.max_retries.backoff_factor = 0
    assert module.INFERENCE_RETRY_STATUSES == (503, 507)
    return c


def test_a_500_is_not_retried(answering):
    """A deterministic bug in the server must not be sent five more times."""
    from lizaalert_tagger.client.http import ClientError

    answering["statuses"] = [500]
    with pytest.raises(ClientError, match="HTTP 500") as info:
        client_for(answering).predict(b"photo")
    assert answering["count"] == 1 and info.value.status == 500
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("status", [503, 507])
def test_back_pressure_and_a_dead_worker_are_retried(answering, status):
    answering["statuses"] = [status, status]
    assert client_for(answering).predict(b"photo") == {"attributes": {}, "tags": []}
    assert answering["count"] == 3


def test_a_request_that_times_out_says_so(loopback_server):
    """A server that holds the request longer than --timeout: "timed out", not "cannot reach"."""
    import time

    from lizaalert_tagger.client.http import ClientError, TaggerClient

    release = threading.Event()

    def hold(method, path, query, body):
        release.wait(10)
        return 200, b"{}"

    url = loopback_server(hold).url
    try:
        start = time.monotonic()
        with pytest.raises(ClientError, match="timed out after 1 s"):
            TaggerClient(url, url, token="t", timeout=1).predict(b"photo")
        assert time.monotonic() - start < 5
    finally:
        release.set()


# --- tokens: both kinds expire at once ------------------------------------------------------------------


class TokenServer:
    """TorchServe's tokens as the client sees them (on conftest's LoopbackServer): a key file with an
    inference, a management and an API key; a refused token is HTTP 400 ``InvalidKeyException``;
    ``GET /token?type=KIND`` with the API key makes a new token of that kind and writes it into the key
    file (TorchServe 0.12 answers it with an empty body). ``expire()`` refuses the current tokens of both
    kinds at once. An inference refusal is held until a management renewal has been answered: the race
    of the two kinds."""

    REFUSED = json.dumps({"code": 400, "type": "InvalidKeyException",
                          "message": "Token Authorization failed. Token either incorrect, expired, or not provided correctly"}).encode()

    def __init__(self, loopback_server, key_file) -> None:
        self.key_file = key_file
        self.tokens = {"inference": "inference-1", "management": "management-1"}
        self.expired: set[str] = set()
        self.renewals: list[str] = []
        self.lock = threading.Lock()
        self.management_renewed = threading.Event()
        self._write_key_file()
        self.server = loopback_server(self._route, after=self._after)
        self.url = self.server.url

    def _write_key_file(self) -> None:
        keys = {kind: {"key": token, "expiration time": "later"} for kind, token in self.tokens.items()}
        self.key_file.write_text(json.dumps({**keys, "API": {"key": "api-key"}}), encoding="utf-8")

    def expire(self) -> None:
        with self.lock:
            self.expired = {"inference", "management"}

    def _route(self, method: str, path: str, query: dict, body: bytes) -> tuple[int, bytes]:
        token = (self.server.local.headers.get("Authorization") or "").removeprefix("Bearer ") or None
        if path == "/token":
            kind = query.get("type", [""])[0]
            if token != "api-key" or kind not in self.tokens:
                return 400, self.REFUSED
            with self.lock:
                self.renewals.append(kind)
                self.tokens[kind] = f"{kind}-{len(self.renewals) + 1}"
                self.expired.discard(kind)
                self._write_key_file()
            return 200, b""
        kind = "inference" if path.startswith("/predictions/") else "management"
        with self.lock:
            valid = token == self.tokens[kind] and kind not in self.expired
        if valid:
            return 200, (b'{"tags": []}' if kind == "inference" else b'{"models": []}')
        if kind == "inference":
            self.management_renewed.wait(10)
        return 400, self.REFUSED

    def _after(self, method: str, path: str, query: dict, body: bytes) -> None:
        if path == "/token" and "management" in self.renewals:
            self.management_renewed.set()


def test_both_token_kinds_expiring_at_once_are_renewed_once_each(tmp_path, loopback_server):
    """The inference and management tokens expire together; threads of both kinds meet the refusals at
    once, and the inference refusals arrive while the management token is being renewed. Each kind is
    renewed exactly once and every call succeeds (a counter shared by the kinds made the inference
    threads take the management renewal for their own and fail with "still refuses")."""
    from concurrent.futures import ThreadPoolExecutor

    from lizaalert_tagger.client.http import TaggerClient

    server = TokenServer(loopback_server, tmp_path / "key_file.json")
    client = TaggerClient(server.url, server.url, server.key_file, retries=0, timeout=30)
    assert client.predict(b"photo") == {"tags": []}  # the tokens work before they expire
    assert client.management("GET", "/models", "list") == {"models": []}
    server.expire()
    barrier = threading.Barrier(12)

    def call(i: int):
        barrier.wait(timeout=30)
        if i % 2:
            return client.predict(b"photo")
        return client.management("GET", "/models", "list")

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(call, range(12)))
    assert answers == [{"models": []}, {"tags": []}] * 6
    assert sorted(server.renewals) == ["inference", "management"]
    assert client.keys.inference == server.tokens["inference"] and client.keys.management == server.tokens["management"]


@pytest.mark.parametrize("case, fatal", [("timeout", False), ("http-500", False), ("refused", True), ("bad-token", True)])
def test_only_errors_that_doom_every_request_are_fatal(case, fatal, loopback_server):
    """A time-out or an HTTP error is one request's failure (``fatal`` False: tag-folder lists that photo);
    a server that cannot be reached or a refused --token is the same for every request (``fatal``)."""
    from lizaalert_tagger.client.http import ClientError, TaggerClient

    release = threading.Event()

    def route(method, path, query, body):
        if case == "timeout":
            release.wait(10)
        if case == "bad-token":
            return 400, TokenServer.REFUSED
        return 500, b'{"code": 500, "type": "InternalServerException", "message": "boom"}'

    url = "http://127.0.0.1:9" if case == "refused" else loopback_server(route).url
    try:
        with pytest.raises(ClientError) as info:
            TaggerClient(url, url, token="t", retries=0, timeout=1).predict(b"photo")
    finally:
        release.set()
    assert info.value.fatal is fatal, str(info.value)
    assert "\n" not in str(info.value)


def test_explain_sends_the_target_as_the_servers_field(loopback_server):
    """tagctl explain --target all / season / car:1 reaches the server as the multipart field it parses."""
    from lizaalert_tagger.client.commands import parse_target
    from lizaalert_tagger.client.http import ClientError, TaggerClient

    seen = []

    def route(method, path, query, body):
        seen.append((path, body))
        return 200, json.dumps({"attributes": {}, "tags": []}).encode()

    client = TaggerClient(loopback_server(route).url, "http://127.0.0.1:9", token="t")
    for given, sent in (("all", b"all"), (" season , car:1 ", b"season,car:1"), ("all,car:0", b"all,car:0")):
        client.explain(b"photo", target=parse_target(given))
        assert seen[-1][0] == "/explanations/lizaalert_tagger"
        assert b'name="target"\r\n\r\n' + sent + b"\r\n" in seen[-1][1], seen[-1][1][:300]
    client.explain(b"photo", target={"car": 1})
    assert b'name="target"\r\n\r\ncar:1\r\n' in seen[-1][1]
    client.explain(b"photo")  # no options: the raw photo
    assert seen[-1][1] == b"photo"
    for bad in ("car:", ":1", "car:1,:"):
        with pytest.raises(ClientError, match="attribute:value"):
            parse_target(bad)
    assert parse_target(None) == parse_target(" , ") == ""


def test_predict_instances_sends_kserve_json_and_checks_the_count(loopback_server):
    import base64

    from lizaalert_tagger.client.http import ClientError, TaggerClient

    state = {"answers": 2}

    def route(method, path, query, body):
        photos = [base64.b64decode(item["b64"]) for item in json.loads(body)["instances"]]
        state["photos"] = photos
        return 200, json.dumps({"predictions": [{"n": i} for i in range(state["answers"])]}).encode()

    client = TaggerClient(loopback_server(route).url, "http://127.0.0.1:9", token="t")
    assert client.predict_instances([b"a", b"bb"]) == [{"n": 0}, {"n": 1}]
    assert state["photos"] == [b"a", b"bb"]
    state["answers"] = 1
    with pytest.raises(ClientError, match="expected .*2 answers"):
        client.predict_instances([b"a", b"bb"])
