"""HTTP client of the tagger's TorchServe: tokens, retries, one-line errors.

- Tokens: read from TorchServe's ``key_file.json`` (or given directly). When the
  server says a token is wrong or stale (TorchServe answers HTTP 400 with
  ``InvalidKeyException``), the client re-reads the key file (the server may
  have restarted) and, if that does not help, renews the token with the
  ``API`` key (``GET /token?type=...`` on the management port) and retries
  once. A server that runs for days therefore never locks its clients out.
- Retries: urllib3's ``Retry`` on connection errors, on 503 (TorchServe's
  "queue full" / "no worker yet") and, for inference only, on 507 (TorchServe's
  answer when the worker serving the request died), with exponential backoff.
  Inference is idempotent, so POSTs to /predictions are retried; management
  calls that change state (POST) are retried only when the connection failed.
- Errors: :class:`ClientError` carries one line saying what went wrong and
  what to do; the CLI prints it instead of a traceback. ``fatal`` marks the
  errors that would be the same for every request (no server at the URL, a
  token that cannot be had): a time-out or an HTTP error is one request's.
"""
from __future__ import annotations

import base64
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ProtocolError, ReadTimeoutError
from urllib3.util.retry import Retry

from lizaalert_tagger.common.paths import RUN_DIR

DEFAULT_INFERENCE_URL = "http://127.0.0.1:8080"
DEFAULT_MANAGEMENT_URL = "http://127.0.0.1:8081"
DEFAULT_KEY_FILE = RUN_DIR / "key_file.json"
MODEL_NAME = "lizaalert_tagger"

ENV_INFERENCE_URL = "LIZAALERT_INFERENCE_URL"
ENV_MANAGEMENT_URL = "LIZAALERT_MANAGEMENT_URL"
ENV_KEY_FILE = "LIZAALERT_KEY_FILE"
ENV_TOKEN = "LIZAALERT_TOKEN"


class ClientError(Exception):
    """A failure explained in one line for a person.

    ``status``: the HTTP status, if the server answered; ``fatal``: the same for every request
    (the server cannot be reached, the token is refused and cannot be renewed), so a command that
    sends many stops instead of failing each one.
    """

    def __init__(self, message: str, status: int | None = None, body: Any = None, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.fatal = fatal


INFERENCE_RETRY_STATUSES = (503, 507)
MANAGEMENT_RETRY_STATUSES = (503,)


def make_retry(
    total: int = 5,
    backoff: float = 0.25,
    statuses: tuple[int, ...] = INFERENCE_RETRY_STATUSES,
    methods: frozenset[str] = frozenset({"GET", "POST", "PUT", "DELETE"}),
) -> Retry:
    """Retries on connection errors and ``statuses`` with backoff 0.25, 0.5, 1, 2 s, ...

    ``methods`` are the HTTP methods retried after one of ``statuses``
    (connection errors before a request was sent are retried for every method).
    """
    return Retry(
        total=total,
        connect=total,
        read=0,  # a request that reached a worker is not silently repeated on a read error
        status=total,
        status_forcelist=statuses,
        allowed_methods=methods,
        backoff_factor=backoff,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


@dataclass
class Keys:
    inference: str | None = None
    management: str | None = None
    api: str | None = None


def read_keys(key_file: Path) -> Keys:
    try:
        raw = json.loads(Path(key_file).read_text(encoding="utf-8"))
        return Keys(raw["inference"]["key"], raw["management"]["key"], raw["API"]["key"])
    except FileNotFoundError:
        raise ClientError(
            f"token file {key_file} not found: is the server running (make serve)? "
            f"Point --key-file/${ENV_KEY_FILE} at its key_file.json, or pass --token/${ENV_TOKEN}.", fatal=True
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ClientError(f"token file {key_file} is unreadable or not TorchServe's key file ({e})", fatal=True) from None


def _is_token_error(response: requests.Response) -> bool:
    if response.status_code not in (400, 401, 403):
        return False
    try:
        return "Token Authorization failed" in response.text or response.json().get("type") == "InvalidKeyException"
    except ValueError:
        return False


def instances_body(photos: list[bytes]) -> bytes:
    """The KServe-style JSON body of several photos: ``{"instances": [{"b64": ...}, ...]}``."""
    return json.dumps({"instances": [{"b64": base64.b64encode(photo).decode("ascii")} for photo in photos]}).encode("ascii")


class TaggerClient:
    """Talks to one TorchServe: inference and management APIs."""

    def __init__(
        self,
        inference_url: str | None = None,
        management_url: str | None = None,
        key_file: str | Path | None = None,
        token: str | None = None,
        retries: int = 5,
        timeout: float = 120.0,
        pool_size: int = 32,
        tokens: bool = True,
    ) -> None:
        """``tokens=False``: the server runs with ``disable_token_authorization=true`` (behind a proxy
        that checks tokens itself): no key file is read and no Authorization header is sent."""
        self.inference_url = (inference_url or os.environ.get(ENV_INFERENCE_URL) or DEFAULT_INFERENCE_URL).rstrip("/")
        self.management_url = (management_url or os.environ.get(ENV_MANAGEMENT_URL) or DEFAULT_MANAGEMENT_URL).rstrip("/")
        self.key_file = Path(key_file or os.environ.get(ENV_KEY_FILE) or DEFAULT_KEY_FILE)
        self.fixed_token = token or os.environ.get(ENV_TOKEN)
        self.timeout = timeout
        self.tokens = tokens
        self._keys: Keys | None = None
        self._renew_lock = threading.Lock()
        # per token kind, bumped whenever that kind's token changes: the two kinds expire together, and a
        # renewal of one must not make a request refused with the other believe its token was renewed
        self._generation = {"inference": 0, "management": 0}
        self.sessions = {
            "inference": self._session(make_retry(retries), pool_size),
            "management": self._session(
                make_retry(retries, statuses=MANAGEMENT_RETRY_STATUSES, methods=frozenset({"GET", "PUT", "DELETE"})), 4
            ),
        }

    @staticmethod
    def _session(retry: Retry, pool_size: int) -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=pool_size)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    # --- tokens -----------------------------------------------------------

    @property
    def keys(self) -> Keys:
        if not self.tokens:
            return Keys()
        if self.fixed_token:
            return Keys(self.fixed_token, self.fixed_token, None)
        if self._keys is None:
            self._keys = read_keys(self.key_file)
        return self._keys

    def renew_token(self, kind: str) -> str:
        """Renew the ``inference`` or ``management`` token now (``tagctl token --renew``)."""
        with self._renew_lock:
            token = self._renew(kind)
            self._generation[kind] += 1
            return token

    def _renew(self, kind: str) -> str:
        """Ask TorchServe for a fresh ``inference`` or ``management`` token with the API key.

        TorchServe 0.12 answers ``GET /token?type=KIND`` with an empty body and
        writes the new token into its key file, so renewal needs the key file.
        """
        api = self.keys.api
        if not api:
            raise ClientError(f"the {kind} token was refused and there is no API key to renew it: get a fresh token from the server's key_file.json", fatal=True)
        r = self._send("management", "GET", f"{self.management_url}/token", {"type": kind}, headers={"Authorization": f"Bearer {api}"})
        if r.status_code != 200:
            raise ClientError(f"renewing the {kind} token failed (HTTP {r.status_code}): {r.text.strip()[:200]}", r.status_code, fatal=True)
        self._keys = None
        return getattr(self.keys, kind)

    def _send(self, api: str, method: str, url: str, params=None, **kwargs) -> requests.Response:
        """One HTTP call (urllib3 retries included); a failure without an answer becomes a ClientError,
        fatal when the server cannot be reached at all, one request's when it timed out or dropped it."""
        timed_out = f"{method} {url} timed out after {self.timeout:.0f} s: the server is overloaded or a worker hung"
        try:
            return self.sessions[api].request(method, url, params=params, timeout=self.timeout, **kwargs)
        except requests.exceptions.ConnectionError as e:
            reason = e.args[0] if e.args else None
            reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the last error
            # with read=0 retries, urllib3 reports a read timeout as a ConnectionError around ReadTimeoutError
            if isinstance(reason, ReadTimeoutError):
                raise ClientError(timed_out) from None
            if isinstance(reason, ProtocolError):  # connected, then dropped: this request's failure
                raise ClientError(f"{method} {url}: the server closed the connection without an answer ({reason})") from None
            raise ClientError(f"cannot reach {url.split('/', 3)[:3][-1]}: is TorchServe running (make serve)? "
                              "Check the URL (--inference-url/--management-url).", fatal=True) from None
        except requests.exceptions.Timeout:
            raise ClientError(timed_out) from None
        except requests.exceptions.RetryError as e:
            raise ClientError(f"{method} {url} still failing after retries: {e}") from None

    def request(self, api: str, method: str, path: str, **kwargs) -> requests.Response:
        """One call with the right token; a refused token is refreshed once (key file, then API key)."""
        base = self.inference_url if api == "inference" else self.management_url
        url = f"{base}{path}"
        params = kwargs.pop("params", None)
        headers = dict(kwargs.pop("headers", {}) or {})

        def send(token: str | None) -> requests.Response:
            if token:
                headers["Authorization"] = f"Bearer {token}"
            return self._send(api, method, url, params, headers=headers, **kwargs)

        generation = self._generation[api]
        response = send(getattr(self.keys, api))
        if not _is_token_error(response):
            return response
        if self.fixed_token:
            raise ClientError(f"the server refused the {api} token given by --token/${ENV_TOKEN}: it is wrong or expired",
                              response.status_code, fatal=True)
        response = send(self._fresh_token(api, generation))
        if _is_token_error(response):
            raise ClientError(f"the server still refuses the renewed {api} token; check that {self.key_file} belongs to this server",
                              response.status_code, fatal=True)
        return response

    def _fresh_token(self, api: str, refused_generation: int) -> str:
        """A token to retry with after the server refused the one of ``refused_generation``.

        Single-flight: many threads refused at once (an expired token under load)
        renew once. The first re-reads the key file (the server may have restarted)
        and, if that holds the same token, renews it with the API key; the others
        wait for the lock and take the result, since each renewal would invalidate
        the token of the renewal before it.
        """
        with self._renew_lock:
            if self._generation[api] != refused_generation:  # another thread already renewed this kind
                return getattr(self.keys, api)
            old = getattr(self.keys, api)
            self._keys = None
            token = getattr(self.keys, api)
            if token == old:
                token = self._renew(api)
            self._generation[api] += 1
            return token

    # --- inference --------------------------------------------------------

    def predict(self, photo: bytes, model: str = MODEL_NAME, version: str | None = None) -> dict[str, Any]:
        path = f"/predictions/{model}" + (f"/{version}" if version else "")
        r = self.request("inference", "POST", path, data=photo, headers={"Content-Type": "application/octet-stream"})
        return self._json_or_raise(r, f"predict on {model}" + (f" version {version}" if version else ""))

    def predict_instances(self, photos: list[bytes], model: str = MODEL_NAME, version: str | None = None) -> list[dict[str, Any]]:
        """Several photos in one KServe-style request (``{"instances": [{"b64": ...}, ...]}``), their answers in order."""
        path = f"/predictions/{model}" + (f"/{version}" if version else "")
        r = self.request("inference", "POST", path, data=instances_body(photos), headers={"Content-Type": "application/json"})
        answer = self._json_or_raise(r, f"predict {len(photos)} instances on {model}")
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        if not isinstance(predictions, list) or len(predictions) != len(photos):
            raise ClientError(f"predict {len(photos)} instances on {model}: expected {{\"predictions\": [{len(photos)} "
                              f"answers]}}, got {str(answer)[:200]}")
        return predictions

    def explain(self, photo: bytes, model: str = MODEL_NAME, version: str | None = None,
                target: str | dict[str, int | str] | None = None, overlay: bool = False) -> dict[str, Any]:
        """The prediction plus Grad-CAM maps (``POST /explanations/<model>``): by default of the objects
        the answer found.

        ``target``: what else to explain, as the server's field (``"all"``, ``"season"``,
        ``"car:1,season:winter"``) or a mapping of values to explain instead of the answered ones
        (``{"car": 1}``); ``overlay``: the server also returns the photo with the maps drawn over it
        (base64 PNG in ``"overlay"``). With options the photo travels as a multipart form (field
        ``data``) with the options as form fields: TorchServe 0.12 does not pass query parameters of
        /explanations to the handler (measured: ``?target=car:1`` was ignored); without options, as
        the raw body.
        """
        path = f"/explanations/{model}" + (f"/{version}" if version else "")
        fields: dict[str, str] = {}
        if isinstance(target, dict):
            target = ",".join(f"{key}:{value}" for key, value in target.items())
        if target:
            fields["target"] = target
        if overlay:
            fields["overlay"] = "true"
        if fields:
            r = self.request("inference", "POST", path, files={"data": ("photo", photo, "application/octet-stream")}, data=fields)
        else:
            r = self.request("inference", "POST", path, data=photo, headers={"Content-Type": "application/octet-stream"})
        return self._json_or_raise(r, f"explain on {model}" + (f" version {version}" if version else ""))

    def ping(self) -> dict[str, Any]:
        return self._json_or_raise(self.request("inference", "GET", "/ping"), "ping")

    def healthy(self) -> bool:
        """``/ping`` answers 200 with status Healthy (False while the server is unreachable or starting)."""
        try:
            return self.ping().get("status") == "Healthy"
        except ClientError:
            return False

    def model_ready(self, model: str = MODEL_NAME) -> bool:
        """The default version of ``model`` has at least one READY worker.

        False while the server is unreachable, the model is not registered yet, or
        its workers are still starting: the one readiness check of the project
        (``runtime``, the container's health check and the probes use it).
        """
        try:
            described = self.management("GET", f"/models/{model}", f"describe {model}")
        except ClientError:
            return False
        if not isinstance(described, list) or not all(isinstance(v, dict) for v in described):
            raise ClientError(f"describe {model} answered with {str(described)[:120]!r}, not TorchServe's list of "
                              f"versions: is {self.management_url} TorchServe's management API?")
        return any(w.get("status") == "READY" for version in described for w in version.get("workers", []))

    # --- management -------------------------------------------------------

    def management(self, method: str, path: str, what: str, **kwargs) -> Any:
        return self._json_or_raise(self.request("management", method, path, **kwargs), what)

    @staticmethod
    def _json_or_raise(r: requests.Response, what: str) -> Any:
        try:
            body = r.json()
        except ValueError:
            body = r.text
        if r.status_code >= 400:
            message = body.get("message") if isinstance(body, dict) else str(body).strip()
            hint = {
                404: " (see `tagctl models list`)" if "not found" in str(message).lower() else "",
                413: " (the photo is larger than the server's max_request_size)",
                503: " (the server is busy or has no ready worker; retried, still busy: try later or scale up)",
                507: " (the worker died while serving it; retried, still failing: see the server's model_log.log)",
            }.get(r.status_code, "")
            raise ClientError(f"{what} failed: HTTP {r.status_code}: {message}{hint}", r.status_code, body)
        return body
