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

from lizaalert_tagger.client.http import (
    DEFAULT_KEY_FILE,
    ENV_INFERENCE_URL,
    ENV_MANAGEMENT_URL,
    MODEL_NAME,
    ClientError,
    TaggerClient,
)
from lizaalert_tagger.common.labels_csv import LabelsFormatError
from lizaalert_tagger.client.report import RunFilesError
from lizaalert_tagger.common.spec import SpecError

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


def _parse_target(text: str | None) -> dict[str, str]:
    """``car:1,season:winter`` -> ``{"car": "1", "season": "winter"}`` (the server checks keys and values)."""
    target: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, sep, value = item.partition(":")
        if not sep or not key.strip() or not value.strip():
            raise ClientError(f"--target {text!r}: expected attribute:value pairs, e.g. car:1,season:winter")
        target[key.strip()] = value.strip()
    return target


@command("explain")
def cmd_explain(args: argparse.Namespace, client: TaggerClient) -> int:
    """Where the model looked: one PNG per photo in --out, the Grad-CAM maps of the tags it found
    drawn over the photo, with a legend of every tag and its score (drawn here with Pillow from the
    maps the server returns). One line per photo; a photo that fails is one stderr line, exit 1."""
    from lizaalert_tagger.common.overlay import draw_overlay, open_photo

    target = _parse_target(args.target)
    out = Path(args.out)
    _prepare_run_dir(out)
    failed = 0
    used: set[str] = set()
    for photo in args.photos:
        try:
            data = Path(photo).read_bytes()
        except OSError as e:
            print(f"tagctl: {photo}: cannot read: {e.strerror}", file=sys.stderr)
            failed += 1
            continue
        try:
            answer = client.explain(data, args.model, args.version, target=target)
        except ClientError as e:
            if _is_fatal(e) or (e.status == 400 and isinstance(e.body, dict) and e.body.get("type") == "bad_target"):
                raise  # the same for every photo
            print(f"tagctl: {photo}: {_one_line(str(e))}", file=sys.stderr)
            failed += 1
            continue
        name = f"{Path(photo).name}.png"
        number = 1
        while name in used:
            number += 1
            name = f"{Path(photo).name}-{number}.png"
        used.add(name)
        try:
            image = draw_overlay(open_photo(data, args.size), answer)
            image.save(out / name, "PNG")
        except OSError as e:
            raise ClientError(f"cannot write {out / name}: {_error_text(e)}") from None
        except Exception as e:  # noqa: BLE001 - Pillow cannot draw this photo: that photo fails
            print(f"tagctl: {photo}: cannot draw the overlay: {_error_text(e)}", file=sys.stderr)
            failed += 1
            continue
        print(f"{photo}: {format_answer(answer, args.lang)} -> {out / name}", flush=True)
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
    from lizaalert_tagger.common.labels_csv import IMAGE_EXTENSIONS

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
    _check_folder_writable(folder, f"--out {out}")


def _check_folder_writable(folder: Path, what: str) -> None:
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ClientError(f"cannot write {what}: {e.strerror} (folder {folder})") from None


def _out_is_folder(out: str) -> bool:
    """``--out`` names a run folder when it ends with ``/`` or is an existing folder; else the CSV file."""
    return out.endswith(("/", os.sep)) or Path(out).is_dir()


def _prepare_run_dir(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise ClientError(f"--out {run_dir}/ is a file, not a folder; give a folder for the run's files, or a CSV name without /")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ClientError(f"cannot create --out folder {run_dir}: {e.strerror}") from None
    _check_folder_writable(run_dir, f"--out {run_dir}/")


def _write_labels_atomically(out: Path, rows: list[tuple[str, dict[str, int]]], spec) -> None:
    """Write next to ``out``, then rename: an interrupted write never leaves half a CSV."""
    from lizaalert_tagger.common.labels_csv import write_labels

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


# tag-folder writes what is done this often (and at the end), so that a crash or a power cut loses little
CHECKPOINT_S = 30.0


class _RunFolder:
    """The files of ``tag-folder --out RUN_DIR/``: labels.csv (the seed's format), details.csv,
    photos.geojson, failed.csv and run.json, each rewritten atomically (see ``report``)."""

    def __init__(self, run_dir: Path, folder: Path, spec, restart: bool) -> None:
        from lizaalert_tagger.client import report

        self.dir, self.folder, self.spec = run_dir, folder, spec
        self.labels_path = run_dir / report.LABELS_CSV
        self.details_path = run_dir / report.DETAILS_CSV
        self.failed_path = run_dir / report.FAILED_CSV
        self.details: dict[str, Any] = {}  # path -> PhotoRecord
        self.old_failed: dict[str, str] = {}
        self.model = ""
        if restart:
            return
        if self.details_path.exists():
            try:
                self.details, problems = report.read_details(self.details_path, spec)
            except (OSError, ValueError) as e:
                raise ClientError(f"cannot resume from {self.details_path}: {_error_text(e)}; --restart to overwrite it") from None
            if problems:
                print(f"warning: {len(problems)} unusable rows of {self.details_path} will be dropped "
                      f"(e.g. {problems[0]}); their photos are tagged again", file=sys.stderr)
        self.old_failed = report.read_failed(self.failed_path)

    def save(self, labels: dict[str, dict[str, int]], records: dict[str, Any], failed: dict[str, str]) -> None:
        """labels.csv first (the seed's file), then the others; each one whole or not at all."""
        from datetime import datetime, timezone

        from lizaalert_tagger.client import report

        _write_labels_atomically(self.labels_path, sorted(labels.items()), self.spec)
        ordered = [records[name] for name in sorted(records)]
        models = [r.model for r in ordered if r.model]
        self.model = models[-1] if models else self.model
        info = {"folder": str(self.folder.resolve()), "model": self.model, "photos": len(ordered),
                "failed": len(failed), "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:
            report.write_text_atomically(self.details_path, report.details_text(ordered, self.spec))
            report.write_text_atomically(self.dir / report.GEOJSON, report.geojson_text(ordered, self.spec))
            report.write_text_atomically(self.failed_path, report.failed_text(failed))
            report.write_text_atomically(self.dir / report.RUN_JSON, json.dumps(info, ensure_ascii=False, indent=1) + "\n")
        except OSError as e:
            raise ClientError(f"cannot write into {self.dir}: {_error_text(e)}") from None


@command("tag-folder")
def cmd_tag_folder(args: argparse.Namespace, client: TaggerClient) -> int:
    """Tag every photo under a folder (sub-folders included) through the server.

    ``--out FILE.csv``: the seed's CSV. ``--out RUN_DIR/`` (ends with / or is a folder): labels.csv
    (the same CSV), details.csv (scores, tags, EXIF time and GPS), photos.geojson, failed.csv and
    run.json; ``--report`` then writes RUN_DIR/report/index.html.

    Resumable: photos already in --out are skipped (--restart tags them again), and the files are
    rewritten atomically every CHECKPOINT_S and at the end, the old and new rows sorted by path.
    At most 2 x --concurrency photos are queued at a time, so Ctrl-C stops within seconds: queued
    photos are dropped, requests in flight get INTERRUPT_GRACE_S to finish, the rows done are
    written, exit 130.
    """
    import warnings

    with warnings.catch_warnings():
        # Pillow warns (once per place, on stderr) about corrupt EXIF; read_exif reports it per photo instead
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        return _tag_folder(args, client)


def _tag_folder(args: argparse.Namespace, client: TaggerClient) -> int:
    from tqdm import tqdm

    from lizaalert_tagger.common.labels_csv import read_labels
    from lizaalert_tagger.common.spec import load_spec

    spec = load_spec(args.spec)
    folder = Path(args.folder)
    if not folder.is_dir():
        raise ClientError(f"{folder} is not a folder" if folder.exists() else f"folder {folder} does not exist")
    as_dir = _out_is_folder(args.out)
    run: _RunFolder | None = None
    if as_dir:
        run_dir = Path(args.out)
        _prepare_run_dir(run_dir)
        out = run_dir / "labels.csv"
        where = f"{run_dir}/"
    else:
        for flag, wanted in (("--report", args.report), ("--explain", args.explain)):
            if wanted:
                raise ClientError(f"{flag} needs --out RUN_DIR/ (a folder for labels.csv, details.csv and the report), not {args.out}")
        out = Path(args.out)
        _check_writable(out)
        where = str(out)
    photos = list_photos(folder)
    if not photos:
        raise ClientError(f"no photos under {folder} (looked for .jpg, .png, .webp, .bmp, .tif, .gif)")
    names = {p: p.relative_to(folder).as_posix() for p in photos}

    old: dict[str, dict[str, int]] = {}
    if out.exists() and not args.restart:
        try:
            table = read_labels(out, spec)
        except (OSError, ValueError) as e:
            raise ClientError(f"cannot resume from {out}: {_error_text(e)}; --restart to overwrite it") from None
        old = dict(table.pairs())
        if table.problems:
            print(f"warning: {len(table.problems)} unusable rows of {out} will be dropped (e.g. {table.problems[0]}); "
                  "their photos are tagged again", file=sys.stderr)
    done = set(old)
    if as_dir:
        run = _RunFolder(run_dir, folder, spec, args.restart)
        done &= set(run.details)  # in labels.csv but not details.csv (or the reverse): tagged again
    todo = [p for p in photos if names[p] not in done]
    if len(todo) < len(photos):
        skipped = len(photos) - len(todo)
        print(f"{skipped} photos already tagged in {where}, skipping them; --restart to tag everything again")
    if not todo:
        print(f"nothing to tag: all {len(photos)} photos under {folder} are in {where}")
        return _finish(args, client, run, spec, run.details if run is not None else {})

    read_exif = None
    if as_dir:
        from lizaalert_tagger.common.exif import read_exif
        from lizaalert_tagger.client.report import PhotoRecord

    def tag(path: Path):
        data = path.read_bytes()
        answer = client.predict(data, args.model, args.version)
        if read_exif is None:
            return spec.answer_codes(answer)
        return PhotoRecord.from_answer(names[path], answer, spec, read_exif(data))

    results: dict[Path, Any] = {}  # codes, or with --out RUN_DIR/ a PhotoRecord
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

    def save() -> int:
        """Write every file of --out with the old rows and the ones done; returns the row count."""
        rows = dict(old)
        if run is None:
            rows.update((names[p], codes) for p, codes in results.items())
            _write_labels_atomically(out, sorted(rows.items()), spec)
            return len(rows)
        records = dict(run.details)
        records.update((r.path, r) for r in results.values())
        rows.update((name, r.codes) for name, r in records.items())
        attempted = {names[p] for p in (*results, *failures)}
        current = set(names.values())
        failed = {name: reason for name, reason in run.old_failed.items()
                  if name in current and name not in attempted and name not in records}
        failed.update((names[p], reason) for p, reason in failures.items())
        run.save(rows, records, failed)
        return len(records)

    pool = _DaemonExecutor(args.concurrency)
    bar = tqdm(total=len(todo), desc="tag", unit="photo", disable=args.quiet, dynamic_ncols=True)
    checkpoint = time.monotonic() + CHECKPOINT_S
    try:
        try:
            while not (interrupted or fatal):
                while len(pending) < window and (path := next(remaining, None)) is not None:
                    pending[pool.submit(tag, path)] = path
                if not pending:
                    break
                # a timeout, so that the main thread sees Ctrl-C even when the signal went to a worker thread
                done_now, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done_now:
                    collect(future)
                    bar.update(1)
                if failures:
                    bar.set_postfix(failed=len(failures), refresh=False)
                if time.monotonic() >= checkpoint:
                    save()
                    checkpoint = time.monotonic() + CHECKPOINT_S
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

    total_rows = save()

    seconds = time.monotonic() - started
    rate = f"{len(results) / seconds:.1f} photos/s" if seconds > 0 else "-"
    for path in sorted(failures)[:MAX_FAILURES_SHOWN]:
        print(f"tagctl: {names[path]}: {_one_line(failures[path])}", file=sys.stderr)
    if len(failures) > MAX_FAILURES_SHOWN:
        more = f" (all in {run.failed_path})" if run is not None else ""
        print(f"tagctl: ... and {len(failures) - MAX_FAILURES_SHOWN} more photos failed{more}", file=sys.stderr)
    if run is not None:
        _warn_exif(results.values(), run)
    progress = f"tagged {len(results)} of {len(todo)} photos in {seconds:.1f} s ({rate}) -> {where} ({total_rows} rows)"
    again = "run the same command without --restart" if args.restart else "run the same command again"
    if interrupted or fatal:
        left = len(todo) - len(results)
        reason = "interrupted" if interrupted else _error_text(fatal[0]).rstrip(".")
        print(f"tagctl: {reason}; {progress}; {again} to tag the other {left} (photos already in {where} are skipped)",
              file=sys.stderr)
        return 130 if interrupted else 1
    print(progress)
    code = 0
    if failures:
        listed = f", listed in {run.failed_path}" if run is not None else ""
        print(f"{len(failures)} photos failed{listed}; {again} to retry them")
        code = 1
    records = {**run.details, **{r.path: r for r in results.values()}} if run is not None else {}
    return _finish(args, client, run, spec, records) or code


def _finish(args: argparse.Namespace, client: TaggerClient, run: _RunFolder | None, spec, records: dict[str, Any]) -> int:
    """After tagging: --explain's overlays, then --report (which shows them)."""
    code = _explain_found(args, client, run, spec, records) if run is not None and getattr(args, "explain", False) else 0
    return _report_after(args, run, spec) or code


def _explain_found(args: argparse.Namespace, client: TaggerClient, run: _RunFolder, spec, records: dict[str, Any]) -> int:
    """``--explain``: RUN_DIR/explanations/<photo path>.png for every photo with an object found
    that has none yet, from the server's /explanations, drawn as ``tagctl explain`` draws them;
    the report shows it in the photo's larger view. Resumable like the tagging (what exists is
    kept) and bounded the same way (2 x --concurrency requests queued). Returns the exit code."""
    from tqdm import tqdm

    from lizaalert_tagger.common.overlay import draw_overlay, open_photo
    from lizaalert_tagger.client.report import EXPLANATIONS_DIR

    objects = [a.key for a in spec.attributes if a.is_binary]
    base, folder = run.dir / EXPLANATIONS_DIR, run.folder.resolve()
    todo = []
    for name in sorted(records):
        source = (folder / name).resolve()
        if any(records[name].codes.get(key) == 1 for key in objects) and source.is_relative_to(folder) \
                and not (base / f"{name}.png").is_file():
            todo.append(name)
    if not todo:
        return 0

    def explain(name: str) -> None:
        data = (folder / name).read_bytes()
        answer = client.explain(data, args.model, args.version)
        image = draw_overlay(open_photo(data, args.preview_size or args.thumb_size), answer)
        target = base / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            image.save(tmp, "PNG")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    failures: dict[str, str] = {}
    unsupported: ClientError | None = None
    pending: dict[Future, str] = {}
    remaining = iter(todo)
    pool = _DaemonExecutor(args.concurrency)
    bar = tqdm(total=len(todo), desc="explain", unit="photo", disable=args.quiet, dynamic_ncols=True)
    made = 0
    try:
        while unsupported is None:
            while len(pending) < 2 * args.concurrency and (name := next(remaining, None)) is not None:
                pending[pool.submit(explain, name)] = name
            if not pending:
                break
            done_now, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done_now:
                name = pending.pop(future)
                bar.update(1)
                try:
                    future.result()
                    made += 1
                except ClientError as e:
                    if _is_fatal(e) or e.status in (404, 501):  # no server, or no explanations on it
                        unsupported = e
                    else:
                        failures[name] = _error_text(e)
                except Exception as e:  # noqa: BLE001 - this photo's overlay fails, not the run
                    failures[name] = f"{type(e).__name__}: {_error_text(e)}"
    except KeyboardInterrupt:
        print(f"tagctl: interrupted; {made} overlays written to {base}; run the same command again for the other "
              f"{len(todo) - made}", file=sys.stderr)
        return 130
    finally:
        for future in pending:
            future.cancel()
        bar.close()
        pool.shutdown(wait=False)
    if unsupported is not None:
        print(f"tagctl: no explanations from the server ({_one_line(_error_text(unsupported))}); "
              f"{made} overlays written, the report shows none for the other photos", file=sys.stderr)
        return 1
    print(f"explained {made} of {len(todo)} photos with objects -> {base}/")
    for name in sorted(failures)[:MAX_FAILURES_SHOWN]:
        print(f"tagctl: explain {name}: {_one_line(failures[name])}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} explanations failed; run the same command again to retry them", file=sys.stderr)
        return 1
    return 0


def _warn_exif(records, run: _RunFolder) -> None:
    """One stderr line for the photos whose EXIF had unusable fields (details.csv has every warning)."""
    warned = sorted((r.path, r.exif.warnings[0]) for r in records if r.exif.warnings)
    if warned:
        path, first = warned[0]
        print(f"warning: {len(warned)} photos have unusable EXIF fields (e.g. {path}: {_one_line(first)}); "
              f"see the exif_warnings column of {run.details_path}", file=sys.stderr)


def _report_after(args: argparse.Namespace, run: _RunFolder | None, spec) -> int:
    if run is None or not getattr(args, "report", False):
        return 0
    from lizaalert_tagger.client.report import build_report

    summary = build_report(run.dir, spec, run.folder, args.thumb_size, args.preview_size, progress=not args.quiet)
    _print_report(summary)
    return 0


def _print_report(summary) -> None:
    print(f"report: {summary.index} ({summary.photos} photos, {summary.thumbnails_made} new thumbnails)")
    if summary.thumbnails_failed:
        name, reason = sorted(summary.thumbnails_failed.items())[0]
        print(f"warning: {len(summary.thumbnails_failed)} photos have no thumbnail (e.g. {name}: {_one_line(reason)})",
              file=sys.stderr)


@command("report")
def cmd_report(args: argparse.Namespace, client: TaggerClient) -> int:
    """RUN_DIR/report/index.html from RUN_DIR's details.csv: works offline, no server needed."""
    import warnings

    from lizaalert_tagger.client.report import build_report
    from lizaalert_tagger.common.spec import load_spec

    spec = load_spec(args.spec)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ClientError(f"{run_dir} is not a folder" if run_dir.exists() else f"folder {run_dir} does not exist")
    _check_folder_writable(run_dir, f"the report into {run_dir}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        summary = build_report(run_dir, spec, args.photos, args.thumb_size, args.preview_size, args.jobs,
                               progress=not args.quiet)
    _print_report(summary)
    return 0


@command("score")
def cmd_score(args: argparse.Namespace, client: TaggerClient) -> int:
    """Score a predicted CSV against a truth CSV (both in the seed's format)."""
    from lizaalert_tagger.common.labels_csv import read_labels
    from lizaalert_tagger.common.scoring import score_codes
    from lizaalert_tagger.common.spec import load_spec

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


def _report_options(p: argparse.ArgumentParser) -> None:
    from lizaalert_tagger.client.report import PREVIEW_SIZE, THUMB_SIZE

    p.add_argument("--thumb-size", type=positive_int, default=THUMB_SIZE, help="report: thumbnails' long side, px")
    p.add_argument("--preview-size", type=non_negative_int, default=PREVIEW_SIZE,
                   help="report: long side of the photo shown on click, px (0: the thumbnail, a smaller report)")


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

    p = sub.add_parser("explain", help="where the model looked: one overlay PNG per photo", formatter_class=fmt)
    p.add_argument("photos", nargs="+", metavar="PHOTO")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for the overlays (created if missing): DIR/<photo name>.png")
    p.add_argument("--target", metavar="ATTR:VALUE,...",
                   help="explain these values instead of the predicted ones, e.g. car:1 or season:winter")
    p.add_argument("--size", type=positive_int, default=1024, help="long side of the overlay's photo, px")
    p.add_argument("--model", default=MODEL_NAME, help="model name")
    p.add_argument("--version", help="model version (default: the server's default version)")
    p.add_argument("--lang", choices=("en", "ru"), default="en", help="language of the printed tags")

    from lizaalert_tagger.common.spec import DEFAULT_SPEC_PATH

    p = sub.add_parser("tag-folder", help="tag every photo of a folder; write the seed's CSV or a run folder",
                       formatter_class=fmt)
    p.add_argument("folder", type=Path, help="photos, sub-folders included")
    p.add_argument("--out", required=True, metavar="CSV|RUN_DIR/",
                   help="a CSV to write (seed's format: ';', Russian header, codes), or a folder (ends with / or "
                        "exists) for labels.csv (the same CSV), details.csv (scores, tags, EXIF time and GPS), "
                        "photos.geojson and failed.csv; the photos already in it are skipped")
    p.add_argument("--restart", action="store_true", help="tag every photo again and replace --out")
    p.add_argument("--concurrency", type=positive_int, default=8, help="requests in flight")
    p.add_argument("--model", default=MODEL_NAME, help="model name")
    p.add_argument("--version", help="model version (default: the server's default version)")
    p.add_argument("--spec", type=Path, default=DEFAULT_SPEC_PATH, help="attribute spec (for the CSV columns)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--report", action="store_true",
                   help="then write RUN_DIR/report/index.html (as `tagctl report RUN_DIR`; needs --out RUN_DIR/)")
    p.add_argument("--explain", action="store_true",
                   help="then fetch an explanation overlay for every photo with an object found (the server's "
                        "/explanations; 6-9x a prediction each at layer3) into RUN_DIR/explanations/, which the report shows")
    _report_options(p)

    p = sub.add_parser("report", help="an offline HTML report of a run folder (no server needed)", formatter_class=fmt)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the --out folder of tag-folder")
    p.add_argument("--photos", type=Path,
                   help="the photo folder (default: the one tag-folder wrote into RUN_DIR/run.json)")
    p.add_argument("--jobs", type=positive_int, help="threads making thumbnails (default: the CPU count, at most 8)")
    p.add_argument("--spec", type=Path, default=DEFAULT_SPEC_PATH, help="attribute spec (labels)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _report_options(p)

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
        if args.command not in ("score", "report"):  # the commands that do not talk to the server
            check_url(args.inference_url, "--inference-url", ENV_INFERENCE_URL)
            check_url(args.management_url, "--management-url", ENV_MANAGEMENT_URL)
        # one pooled connection per request in flight: tag-folder's --concurrency may exceed the default 32
        client = TaggerClient(args.inference_url, args.management_url, args.key_file, args.token, args.retries, args.timeout,
                              pool_size=max(32, getattr(args, "concurrency", 0)))
        return COMMANDS[args.command](args, client)
    except KeyboardInterrupt:
        print("tagctl: interrupted", file=sys.stderr)
        return 130
    except (ClientError, SpecError, LabelsFormatError, RunFilesError) as e:
        return _fail(str(e))
    except requests.RequestException as e:  # before OSError: requests' errors are OSErrors
        return _fail(f"request failed: {e}")
    except OSError as e:
        return _fail(_error_text(e))
    except Exception as e:  # noqa: BLE001 - a bug still gets one line, not a traceback
        return _fail(f"unexpected {type(e).__name__}: {e} (a bug in tagctl; please report it)")


if __name__ == "__main__":
    sys.exit(main())
