"""The one bounded submit/collect loop of the client: photos go to the server a few at a time.

``predict``, ``explain``, ``tag-folder`` and its ``--explain`` all send one request per photo
through :func:`run_bounded`:

- at most ``2 x concurrency`` photos are submitted and not yet collected, so memory stays flat
  on a folder of any size and Ctrl-C stops within seconds: queued photos are dropped, the
  requests in flight get ``INTERRUPT_GRACE_S`` to finish and are collected;
- a photo's failure (unreadable, refused by the server, a time-out, a 5xx after retries, an
  answer that is not this model's) is recorded with its reason and the others go on;
- an error that dooms every photo (:func:`dooms_every_photo`: no server at the URL, connection
  refused after retries, a token that cannot be had, a model the server does not have) stops
  the loop: no point sending the other photos.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import requests

from lizaalert_tagger.client.http import ClientError

Item = TypeVar("Item", bound=Hashable)
Result = TypeVar("Result")

# After Ctrl-C, requests already sent get this long to finish before the command writes what is done
# (a photo takes well under a second; one that does not make it is sent again on resume).
INTERRUPT_GRACE_S = 3.0
# How often the collecting thread wakes up without an answer: it must see Ctrl-C even when the
# signal went to a worker thread, and call ``checkpoint`` on time.
POLL_S = 0.5


def one_line(text: str) -> str:
    """Messages may carry a server's multi-line text: errors are one line."""
    return " ".join(str(text).split())


def error_text(e: BaseException) -> str:
    """One line for a person: ``path: No such file or directory`` rather than ``[Errno 2] ...``."""
    if isinstance(e, OSError) and e.strerror:
        return one_line(f"{e.filename}: {e.strerror}" if e.filename else e.strerror)
    return one_line(str(e)) or type(e).__name__


def dooms_every_photo(e: BaseException) -> bool:
    """The same for every photo: the server cannot be reached or refuses the token (``fatal``), or it
    does not have the model asked for (404). A time-out, a 5xx or a refused photo is that photo's."""
    return isinstance(e, ClientError) and (e.fatal or e.status == 404)


def failure_reason(e: BaseException) -> str:
    """Why one photo failed, in one line (what ``failed.csv`` and stderr say)."""
    if isinstance(e, requests.RequestException):  # an OSError too, but not the photo's
        return f"request failed: {error_text(e)}"
    if isinstance(e, OSError):  # reading the photo
        return f"cannot read: {e.strerror or e}"
    if isinstance(e, (ClientError, ValueError)):  # ValueError: an answer that is not this spec's model's
        return error_text(e)
    return f"{type(e).__name__}: {error_text(e)}"


class DaemonExecutor(Executor):
    """A thread pool whose threads are daemons.

    ``ThreadPoolExecutor`` joins its threads at interpreter exit, so after Ctrl-C the process would
    wait for every request in flight (up to --timeout, times the retries). Here the command waits
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


@dataclass
class Outcome(Generic[Item]):
    """What a bounded run did: photos done, failures with their reason, why it stopped early."""

    done: int = 0
    failures: dict[Any, str] = field(default_factory=dict)
    fatal: BaseException | None = None  # the first error that dooms every photo
    interrupted: bool = False

    @property
    def stopped(self) -> bool:
        return self.interrupted or self.fatal is not None


@dataclass
class Progress:
    """A tqdm bar over the photos (``label`` is its description); ``None`` label: no bar."""

    label: str | None = None
    total: int = 0

    def bar(self):
        from tqdm import tqdm

        return tqdm(total=self.total, desc=self.label or "", unit="photo", disable=self.label is None, dynamic_ncols=True)


def run_bounded(
    items: Iterable[Item],
    work: Callable[[Item], Result],
    on_done: Callable[[Item, Result], None],
    concurrency: int,
    *,
    on_failure: Callable[[Item, str], None] | None = None,
    is_fatal: Callable[[BaseException], bool] = dooms_every_photo,
    progress: Progress | None = None,
    checkpoint: Callable[[], None] | None = None,
    checkpoint_s: float = 30.0,
) -> Outcome[Item]:
    """``work(item)`` for every item on ``concurrency`` threads, at most ``2 x concurrency`` outstanding.

    ``on_done(item, result)`` and ``on_failure(item, reason)`` run on the calling thread as answers are
    collected; ``checkpoint()`` every ``checkpoint_s`` seconds. Stops at the first error for which
    ``is_fatal`` is true, or at Ctrl-C (``KeyboardInterrupt`` here or inside ``work``); the requests
    then in flight get ``INTERRUPT_GRACE_S`` and are collected too.
    """
    outcome: Outcome[Item] = Outcome()
    pending: dict[Future, Item] = {}
    remaining = iter(items)
    pool = DaemonExecutor(concurrency)
    bar = (progress or Progress()).bar()

    def collect(future: Future) -> None:
        item = pending.pop(future)
        bar.update(1)
        try:
            result = future.result()
        except KeyboardInterrupt:  # raised inside a request: Ctrl-C all the same
            outcome.interrupted = True
            return
        except Exception as e:  # noqa: BLE001 - one photo's failure, unless it dooms them all
            if is_fatal(e):
                outcome.fatal = outcome.fatal or e
                return
            outcome.failures[item] = failure_reason(e)
            bar.set_postfix(failed=len(outcome.failures), refresh=False)
            if on_failure is not None:
                on_failure(item, outcome.failures[item])
            return
        outcome.done += 1
        on_done(item, result)

    next_checkpoint = time.monotonic() + checkpoint_s
    try:
        try:
            while not outcome.stopped:
                while len(pending) < 2 * concurrency and (item := next(remaining, None)) is not None:
                    pending[pool.submit(work, item)] = item
                if not pending:
                    break
                done_now, _ = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                for future in sorted(done_now, key=list(pending).index):  # in submission order
                    collect(future)
                if checkpoint is not None and time.monotonic() >= next_checkpoint:
                    checkpoint()
                    next_checkpoint = time.monotonic() + checkpoint_s
        except KeyboardInterrupt:
            outcome.interrupted = True
        _finish_in_flight(pending, collect, outcome)
    finally:
        for future in pending:
            future.cancel()
        bar.close()
        pool.shutdown(wait=False)
    return outcome


def _finish_in_flight(pending: dict[Future, Any], collect: Callable[[Future], None], outcome: Outcome) -> None:
    """Stopped early: drop what is queued, give the requests in flight a moment, collect what they answer."""
    if not pending:
        return
    for future in list(pending):
        future.cancel()
    in_flight = [f for f in pending if not f.cancelled()]
    try:
        wait(in_flight, timeout=INTERRUPT_GRACE_S)
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
        outcome.interrupted = True
    for future in [f for f in pending if f.done() and not f.cancelled()]:
        collect(future)
