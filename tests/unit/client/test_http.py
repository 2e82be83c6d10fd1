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
