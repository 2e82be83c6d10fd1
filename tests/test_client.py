"""The HTTP client against a tiny local server: which answers it retries, and one-line errors."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@pytest.fixture()
def answering():
    """A loopback server answering every POST with the status queued in ``statuses`` (then 200); counts requests."""
    state = {"statuses": [], "count": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state["count"] += 1
            status = state["statuses"].pop(0) if state["statuses"] else 200
            body = json.dumps({"code": status, "type": "x", "message": f"status {status}"} if status != 200
                              else {"attributes": {}, "tags": []}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()


def client_for(state):
    from lizaalert_tagger.client import TaggerClient

    # backoff 0 keeps the test fast; the statuses retried are the client's own
    import lizaalert_tagger.client as module

    c = TaggerClient(state["url"], state["url"], token="t")
    for session in c.sessions.values():
        for adapter in session.adapters.values():
            adapter.max_retries.backoff_factor = 0
    assert module.INFERENCE_RETRY_STATUSES == (503, 507)
    return c


def test_a_500_is_not_retried(answering):
    """A deterministic bug in the server must not be sent five more times."""
    from lizaalert_tagger.client import ClientError

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


def test_a_request_that_times_out_says_so(answering):
    """A server that holds the request longer than --timeout: "timed out", not "cannot reach"."""
    import time

    from lizaalert_tagger.client import ClientError, TaggerClient

    answering["statuses"] = []
    release = threading.Event()
    slow = ThreadingHTTPServer(("127.0.0.1", 0), type("Slow", (BaseHTTPRequestHandler,), {
        "do_POST": lambda self: release.wait(10),
        "log_message": lambda self, *a: None,
    }))
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{slow.server_address[1]}"
    try:
        start = time.monotonic()
        with pytest.raises(ClientError, match="timed out after 1 s"):
            TaggerClient(url, url, token="t", timeout=1).predict(b"photo")
        assert time.monotonic() - start < 5
    finally:
        release.set()
        slow.shutdown()
