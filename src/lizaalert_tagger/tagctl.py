#!/usr/bin/env python3
"""tagctl: the command line of the LizaAlert tagger's TorchServe.

Connection settings (flags override environment variables):
  --inference-url   $LIZAALERT_INFERENCE_URL   (default http://127.0.0.1:8080)
  --management-url  $LIZAALERT_MANAGEMENT_URL  (default http://127.0.0.1:8081)
  --key-file        $LIZAALERT_KEY_FILE        (default run/key_file.json, written by `make serve`)
  --token           $LIZAALERT_TOKEN           (a token to use instead of the key file)

Errors are one line on stderr and a non-zero exit code.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import requests

from lizaalert_tagger.client import (
    DEFAULT_KEY_FILE,
    ENV_INFERENCE_URL,
    ENV_MANAGEMENT_URL,
    MODEL_NAME,
    ClientError,
    TaggerClient,
)
from lizaalert_tagger.labels_csv import LabelsFormatError
from lizaalert_tagger.spec import SpecError

COMMANDS: dict[str, Callable[[argparse.Namespace, TaggerClient], int]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn
    return register


def _print_json(body: Any) -> None:
    print(json.dumps(body, ensure_ascii=False, indent=2))


def _one_line(text: str) -> str:
    """Messages may carry a server's multi-line text: errors are one line."""
    return " ".join(str(text).split())


def _error_text(e: BaseException) -> str:
    """One line for a person: ``path: No such file or directory`` rather than ``[Errno 2] ...``."""
    if isinstance(e, OSError) and e.strerror:
        return _one_line(f"{e.filename}: {e.strerror}" if e.filename else e.strerror)
    return _one_line(str(e)) or type(e).__name__


def _is_fatal(e: BaseException) -> bool:
    """The same for every photo (server unreachable, token file missing or refused renewal, a timeout):
    no point sending the other photos. HTTP answers (a bad photo, a busy server) carry a status."""
    return isinstance(e, ClientError) and e.status is None


def format_answer(answer: dict[str, Any], lang: str = "en") -> str:
    """One line per photo: the tags present, in English or Russian."""
    attributes = answer.get("attributes", {})
    if lang == "ru":
        tags = [v["label_ru"] for v in attributes.values() if v.get("code", 0) != 0]
    else:
        tags = list(answer.get("tags", []))
    model = answer.get("model", {})
    return f"{', '.join(tags) if tags else '(nothing)'}   [{model.get('name', '?')} {model.get('version', '?')}]"


@command("predict")
def cmd_predict(args: argparse.Namespace, client: TaggerClient) -> int:
    """One line per photo; ``--json``: JSON Lines, one compact object ``{"file": PHOTO, ...answer}`` per photo.

    A photo that cannot be read or that the server refuses is one ``tagctl: PHOTO: reason`` line
    on stderr (the others are still tagged, the exit code is 1); an error that is the same for
    every photo (server unreachable, token) stops the command.
    """
    failed = 0
    for photo in args.photos:
        try:
            data = Path(photo).read_bytes()
        except OSError as e:
            print(f"tagctl: {photo}: cannot read: {e.strerror}", file=sys.stderr)
            failed += 1
            continue
        try:
            answer = client.predict(data, args.model, args.version)
        except ClientError as e:
            if _is_fatal(e):
                raise
            print(f"tagctl: {photo}: {_one_line(str(e))}", file=sys.stderr)
            failed += 1
            continue
        if args.json:
            print(json.dumps({"file": photo, **answer}, ensure_ascii=False), flush=True)
        else:
            print(f"{photo}: {format_answer(answer, args.lang)}", flush=True)
    return 1 if failed else 0


@command("token")
def cmd_token(args: argparse.Namespace, client: TaggerClient) -> int:
    """Print a working token (renewed if the server refuses the stored one)."""
    if args.renew:
        print(client.renew_token(args.kind))
        return 0
    if args.kind == "inference":
        client.ping()  # renews through the key file or API key if needed
    else:
        client.management("GET", "/models", "list models")
    print(getattr(client.keys, args.kind))
    return 0


@command("models")
def cmd_models(args: argparse.Namespace, client: TaggerClient) -> int:
    action = args.action
    if action == "list":
        body = client.management("GET", "/models", "list models")
    elif action == "describe":
        path = f"/models/{args.name}" + (f"/{args.version}" if args.version else "/all")
        body = client.management("GET", path, f"describe {args.name}")
    elif action == "register":
        # Only what the user gave: TorchServe takes the rest from the archive's model-config.yaml.
        params: dict[str, Any] = {"url": args.mar, "synchronous": "true"}
        for key, value in (("initial_workers", args.workers), ("batch_size", args.batch_size),
                           ("max_batch_delay", args.max_batch_delay)):
            if value is not None:
                params[key] = value
        body = client.management("POST", "/models", f"register {args.mar}", params=params)
    elif action == "set-default":
        body = client.management("PUT", f"/models/{args.name}/{args.version}/set-default", f"set-default {args.name} {args.version}")
    elif action == "scale":
        path = f"/models/{args.name}" + (f"/{args.version}" if args.version else "")
        params = {"min_worker": args.min, "max_worker": args.max, "synchronous": "true"}
        body = client.management("PUT", path, f"scale {args.name}", params=params)
    elif action == "unregister":
        body = client.management("DELETE", f"/models/{args.name}/{args.version}", f"unregister {args.name} {args.version}")
    else:  # argparse prevents this
        raise ClientError(f"unknown models action {action!r}")
    _print_json(body)
    return 0


def list_photos(folder: Path) -> list[Path]:
    from lizaalert_tagger.labels_csv import IMAGE_EXTENSIONS

    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


# After Ctrl-C, requests already sent get this long to finish before tag-folder writes what is done
# (a photo takes well under a second; one that does not make it is tagged again on resume).
INTERRUPT_GRACE_S = 3.0
MAX_FAILURES_SHOWN = 10


class _DaemonExecutor(Executor):
    """A thread pool whose threads are daemons.

    ``ThreadPoolExecutor`` joins its threads at interpreter exit, so after Ctrl-C the process would
    wait for every request in flight (up to --timeout, times the retries). Here the CLI waits
    ``INTERRUPT_GRACE_S`` for them, writes what is done and exits.
    """

    def __init__(self, workers: int) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"tagctl-{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        self._jobs.put((future, fn, args, kwargs))
        return future

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:  # noqa: BLE001 - handed to the caller, KeyboardInterrupt included
                future.set_exception(e)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


def _check_writable(out: Path) -> None:
    """Fail before tagging, not after: --out must be a file name in an existing, writable folder."""
    if out.is_dir():
        raise ClientError(f"--out {out} is a folder; expected the name of the CSV file to write")
    folder = out.parent
    if not folder.is_dir():
        raise ClientError(f"cannot write --out {out}: folder {folder} does not exist")
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ClientError(f"cannot write --out {out}: {e.strerror} (folder {folder})") from None


def _write_labels_atomically(out: Path, rows: list[tuple[str, dict[str, int]]], spec) -> None:
    """Write next to ``out``, then rename: an interrupted write never leaves half a CSV."""
    from lizaalert_tagger.labels_csv import write_labels

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        write_labels(tmp, rows, spec)
        os.replace(tmp, out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ClientError(f"cannot write {out}: {e.strerror}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@command("tag-folder")
def cmd_tag_folder(args: argparse.Namespace, client: TaggerClient) -> int:
    """Tag every photo under a folder through the server; write the seed's CSV.

    Resumable: photos already in --out are skipped (--restart tags them again), and the CSV
    is rewritten atomically with the old and new rows sorted by path. At most 2 x --concurrency
    photos are queued at a time, so Ctrl-C stops within seconds: queued photos are dropped,
    requests in flight get INTERRUPT_GRACE_S to finish, the rows done are written, exit 130.
    """
    from tqdm import tqdm

    from lizaalert_tagger.labels_csv import read_labels
    from lizaalert_tagger.spec import load_spec

    spec = load_spec(args.spec)
    folder = Path(args.folder)
    if not folder.is_dir():
        raise ClientError(f"{folder} is not a folder" if folder.exists() else f"folder {folder} does not exist")
    out = Path(args.out)
    _check_writable(out)
    photos = list_photos(folder)
    if not photos:
        raise ClientError(f"no photos under {folder} (looked for .jpg, .png, .webp, .bmp, .tif, .gif)")
    names = {p: p.relative_to(folder).as_posix() for p in photos}

    old: dict[str, dict[str, int]] = {}
    if out.exists() and not args.restart:
        try:
            old = dict(read_labels(out, spec).pairs())
        except (OSError, ValueError) as e:
            raise ClientError(f"cannot resume from {out}: {_error_text(e)}; --restart to overwrite it") from None
    todo = [p for p in photos if names[p] not in old]
    if len(todo) < len(photos):
        skipped = len(photos) - len(todo)
        print(f"{skipped} photos already tagged in {out}, skipping them; --restart to tag everything again")
    if not todo:
        print(f"nothing to tag: all {len(photos)} photos under {folder} are in {out}")
        return 0

    def tag(path: Path) -> dict[str, int]:
        answer = client.predict(path.read_bytes(), args.model, args.version)
        return spec.answer_codes(answer)

    results: dict[Path, dict[str, int]] = {}
    failures: dict[Path, str] = {}
    fatal: list[BaseException] = []  # the first error that is the same for every photo
    interrupted = False
    pending: dict[Future, Path] = {}  # submitted, not collected: at most `window`
    window = 2 * args.concurrency
    remaining = iter(todo)
    started = time.monotonic()

    def collect(future: Future) -> None:
        nonlocal interrupted
        path = pending[future]
        try:
            results[path] = future.result()
        except KeyboardInterrupt:  # raised inside a request: Ctrl-C all the same
            interrupted = True
        except requests.RequestException as e:  # an OSError too, but not the photo's
            failures[path] = f"request failed: {_error_text(e)}"
        except OSError as e:
            failures[path] = f"cannot read: {e.strerror or e}"
        except (ClientError, ValueError) as e:  # ValueError: not an answer of this spec's model
            if _is_fatal(e):
                fatal.append(e)
            else:
                failures[path] = _error_text(e)
        except Exception as e:  # noqa: BLE001 - one photo's failure, reported with the others
            failures[path] = f"{type(e).__name__}: {_error_text(e)}"
        del pending[future]

    pool = _DaemonExecutor(args.concurrency)
    bar = tqdm(total=len(todo), desc="tag", unit="photo", disable=args.quiet, dynamic_ncols=True)
    try:
        try:
            while not (interrupted or fatal):
                while len(pending) < window and (path := next(remaining, None)) is not None:
                    pending[pool.submit(tag, path)] = path
                if not pending:
                    break
                # a timeout, so that the main thread sees Ctrl-C even when the signal went to a worker thread
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    collect(future)
                    bar.update(1)
                if failures:
                    bar.set_postfix(failed=len(failures), refresh=False)
        except KeyboardInterrupt:
            interrupted = True
        if pending:  # stopped early: drop what is queued, give the requests in flight a moment
            for future in pending:
                future.cancel()
            in_flight = [f for f in pending if not f.cancelled()]
            try:
                wait(in_flight, timeout=INTERRUPT_GRACE_S)
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
                interrupted = True
            for future in [f for f in pending if f.done() and not f.cancelled()]:
                collect(future)
    finally:
        bar.close()
        pool.shutdown(wait=False)

    rows = dict(old)
    rows.update((names[p], codes) for p, codes in results.items())
    _write_labels_atomically(out, sorted(rows.items()), spec)

    seconds = time.monotonic() - started
    rate = f"{len(results) / seconds:.1f} photos/s" if seconds > 0 else "-"
    for path in sorted(failures)[:MAX_FAILURES_SHOWN]:
        print(f"tagctl: {names[path]}: {_one_line(failures[path])}", file=sys.stderr)
    if len(failures) > MAX_FAILURES_SHOWN:
        print(f"tagctl: ... and {len(failures) - MAX_FAILURES_SHOWN} more photos failed", file=sys.stderr)
    progress = f"tagged {len(results)} of {len(todo)} photos in {seconds:.1f} s ({rate}) -> {out} ({len(rows)} rows)"
    again = "run the same command without --restart" if args.restart else "run the same command again"
    if interrupted or fatal:
        left = len(todo) - len(results)
        reason = "interrupted" if interrupted else _error_text(fatal[0]).rstrip(".")
        print(f"tagctl: {reason}; {progress}; {again} to tag the other {left} (photos already in {out} are skipped)",
              file=sys.stderr)
        return 130 if interrupted else 1
    print(progress)
    if failures:
        print(f"{len(failures)} photos failed; {again} to retry them")
        return 1
    return 0


@command("score")
def cmd_score(args: argparse.Namespace, client: TaggerClient) -> int:
    """Score a predicted CSV against a truth CSV (both in the seed's format)."""
    from lizaalert_tagger.labels_csv import read_labels
    from lizaalert_tagger.scoring import score_codes
    from lizaalert_tagger.spec import load_spec

    spec = load_spec(args.spec)
    try:
        predicted, truth = read_labels(args.predicted, spec), read_labels(args.truth, spec)
    except (OSError, ValueError) as e:
        raise ClientError(str(e)) from None
    pred_by_name = {r.filename: r.labels for r in predicted.rows}
    truth_by_name = {r.filename: r.labels for r in truth.rows}
    common = sorted(set(pred_by_name) & set(truth_by_name))
    missing = sorted(set(truth_by_name) - set(pred_by_name))
    if not common:
        raise ClientError(f"no file names in common between {args.predicted} and {args.truth}")
    if missing:
        print(f"warning: {len(missing)} photos of the truth have no prediction (e.g. {missing[0]}); they count as wrong", file=sys.stderr)
    names = common + missing

    def predicted_code(name: str, key: str, binary: bool) -> int:
        if name in pred_by_name:
            return pred_by_name[name][key]
        return 1 - truth_by_name[name][key] if binary else -1  # a missing prediction is always wrong

    score = score_codes(
        {a.key: [truth_by_name[n][a.key] for n in names] for a in spec.attributes},
        {a.key: [predicted_code(n, a.key, a.is_binary) for n in names] for a in spec.attributes},
        spec,
    )
    if args.json:
        _print_json(score.to_dict())
    else:
        print(score.table())
    if args.min_score is not None and score.overall < args.min_score:
        print(f"tagctl: score {score.overall:.4f} is below --min-score {args.min_score}", file=sys.stderr)
        return 1
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line too (subcommands' parsers are of this class as well)."""

    def error(self, message: str):
        self.exit(2, f"tagctl: {_one_line(message)} (see `{self.prog} --help`)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows real defaults; an option whose default is None says in its help what happens without it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or "(default:" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def _number(kind: type, minimum: float, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = _number(int, 1, "a whole number >= 1")
non_negative_int = _number(int, 0, "a whole number >= 0")
positive_float = _number(float, 1e-9, "a number > 0")


def check_url(value: str | None, flag: str, env: str) -> None:
    """A base URL given by ``flag`` or ``$env`` must be ``http(s)://host[:port]``."""
    source = flag if value else f"${env}"
    value = value or os.environ.get(env)
    if not value:
        return  # the client's default
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        ok = False
    if not ok:
        raise ClientError(f"{source} {value!r} is not a URL: expected http://host:port")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tagctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inference-url", help="inference API base URL")
    parser.add_argument("--management-url", help="management API base URL")
    parser.add_argument("--key-file", type=Path, help=f"TorchServe key_file.json (default: {DEFAULT_KEY_FILE})")
    parser.add_argument("--token", help="token to send instead of reading the key file")
    parser.add_argument("--retries", type=non_negative_int, default=5,
                        help="retries on connection errors and 503 (default: %(default)s)")
    parser.add_argument("--timeout", type=positive_float, default=120.0,
                        help="seconds per request (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = _HelpFormatter

    p = sub.add_parser("predict", help="tag photos and print their tags", formatter_class=fmt)
    p.add_argument("photos", nargs="+", metavar="PHOTO")
    p.add_argument("--model", default=MODEL_NAME, help="model name")
    p.add_argument("--version", help="model version (default: the server's default version)")
    p.add_argument("--json", action="store_true", help='print JSON Lines: one {"file": PHOTO, ...full answer} per line')
    p.add_argument("--lang", choices=("en", "ru"), default="en", help="language of the tags")

    from lizaalert_tagger.spec import DEFAULT_SPEC_PATH

    p = sub.add_parser("tag-folder", help="tag every photo of a folder; write the seed's CSV", formatter_class=fmt)
    p.add_argument("folder", type=Path)
    p.add_argument("--out", type=Path, required=True,
                   help="CSV to write (seed's format: ';', Russian header, codes); "
                        "if it exists, the photos in it are skipped")
    p.add_argument("--restart", action="store_true", help="tag every photo again and replace --out")
    p.add_argument("--concurrency", type=positive_int, default=8, help="requests in flight")
    p.add_argument("--model", default=MODEL_NAME, help="model name")
    p.add_argument("--version", help="model version (default: the server's default version)")
    p.add_argument("--spec", type=Path, default=DEFAULT_SPEC_PATH, help="attribute spec (for the CSV columns)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("score", help="score a predicted CSV against a truth CSV", formatter_class=fmt)
    p.add_argument("predicted", type=Path)
    p.add_argument("truth", type=Path)
    p.add_argument("--spec", type=Path, default=DEFAULT_SPEC_PATH, help="attribute spec")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--min-score", type=float, help="exit 1 if the score is below this")

    p = sub.add_parser("token", help="print a working token (for curl)", formatter_class=fmt)
    p.add_argument("--kind", choices=("inference", "management"), default="inference", help="which API the token is for")
    p.add_argument("--renew", action="store_true", help="ask the server for a fresh token with the API key")

    p = sub.add_parser("models", help="manage models and versions (TorchServe management API)", formatter_class=fmt)
    msub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    msub.add_parser("list", help="registered models", formatter_class=fmt)
    q = msub.add_parser("describe", help="versions, workers and status of a model", formatter_class=fmt)
    q.add_argument("name")
    q.add_argument("version", nargs="?", help="one version (default: all)")
    q = msub.add_parser("register", help="register an archive from the server's model store", formatter_class=fmt)
    q.add_argument("mar", help="archive file name in the model store, e.g. lizaalert_tagger_2.0.mar")
    q.add_argument("--workers", type=positive_int,
                   help="initial workers (default: the archive's model-config.yaml minWorkers/maxWorkers, "
                        "which TorchServe prefers to this flag; else the server's default_workers_per_model); "
                        "`models scale` changes them later")
    q.add_argument("--batch-size", type=positive_int,
                   help="batch size (default: the archive's model-config.yaml batchSize)")
    q.add_argument("--max-batch-delay", type=non_negative_int,
                   help="ms to wait for a batch to fill (default: the archive's model-config.yaml maxBatchDelay)")
    q = msub.add_parser("set-default", help="make a version the default one (no restart, no dropped requests)", formatter_class=fmt)
    q.add_argument("name")
    q.add_argument("version")
    q = msub.add_parser("scale", help="set the number of workers", formatter_class=fmt)
    q.add_argument("name")
    q.add_argument("version", nargs="?", help="version (default: the default version)")
    q.add_argument("--min", type=non_negative_int, required=True, help="minimum workers")
    q.add_argument("--max", type=non_negative_int, required=True, help="maximum workers")
    q = msub.add_parser("unregister", help="remove a version (it must not be the default while others exist)", formatter_class=fmt)
    q.add_argument("name")
    q.add_argument("version")
    return parser


def _fail(message: str) -> int:
    print(f"tagctl: {_one_line(message)}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run one command; every error is one ``tagctl: ...`` line on stderr and a non-zero exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command != "score":  # the only command that does not talk to the server
            check_url(args.inference_url, "--inference-url", ENV_INFERENCE_URL)
            check_url(args.management_url, "--management-url", ENV_MANAGEMENT_URL)
        client = TaggerClient(args.inference_url, args.management_url, args.key_file, args.token, args.retries, args.timeout)
        return COMMANDS[args.command](args, client)
    except KeyboardInterrupt:
        print("tagctl: interrupted", file=sys.stderr)
        return 130
    except (ClientError, SpecError, LabelsFormatError) as e:
        return _fail(str(e))
    except requests.RequestException as e:  # before OSError: requests' errors are OSErrors
        return _fail(f"request failed: {e}")
    except OSError as e:
        return _fail(_error_text(e))
    except Exception as e:  # noqa: BLE001 - a bug still gets one line, not a traceback
        return _fail(f"unexpected {type(e).__name__}: {e} (a bug in tagctl; please report it)")


if __name__ == "__main__":
    sys.exit(main())
