"""``tagctl tag-folder``: every photo under a folder through the server, into a CSV or a run folder.

``--out FILE.csv``: the seed's CSV. ``--out RUN_DIR/`` (ends with / or is a folder): labels.csv
(the same CSV), details.csv (scores, tags, EXIF time and GPS), photos.geojson, failed.csv and
run.json (:mod:`lizaalert_tagger.client.run_folder`); ``explain`` then adds an overlay per photo
with an object found, and ``report`` writes RUN_DIR/report/index.html.

Resumable: photos already in --out are skipped (``restart`` tags them again), and the files are
rewritten atomically every ``CHECKPOINT_S`` and at the end, the old and new rows sorted by path.
Photos go through the one bounded loop (:func:`lizaalert_tagger.client.runner.run_bounded`):
Ctrl-C writes the rows done and exits 130; a photo that fails (unreadable, refused, a time-out, a
5xx after retries, an answer that is not this model's) is listed with its reason and tried again
by the next run; only an error that dooms every photo stops the run.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lizaalert_tagger.client.commands import check_folder_writable, prepare_run_dir
from lizaalert_tagger.client.http import MODEL_NAME, ClientError, TaggerClient
from lizaalert_tagger.client.report import PREVIEW_SIZE, THUMB_SIZE
from lizaalert_tagger.client.run_folder import (
    DETAILS_CSV,
    EXPLANATIONS_DIR,
    LABELS_CSV,
    PhotoRecord,
    RunFilesError,
    RunFolder,
    explanation_path,
    safe_relative,
    write_atomically,
    write_labels_atomically,
)
from lizaalert_tagger.client.runner import Outcome, Progress, dooms_every_photo, error_text, one_line, run_bounded
from lizaalert_tagger.client.upload import Upload
from lizaalert_tagger.common.formats import is_photo_name
from lizaalert_tagger.common.spec import AttributeSpec

# tag-folder writes what is done this often (and at the end), so that a crash or a power cut loses little
CHECKPOINT_S = 30.0
MAX_FAILURES_SHOWN = 10


@dataclass
class TagFolderJob:
    """What ``tagctl tag-folder`` was asked to do (the CLI converts its flags to this)."""

    folder: Path
    out: str  # a CSV file, or a run folder when it ends with / or is a folder
    spec: AttributeSpec
    restart: bool = False
    concurrency: int = 8
    model: str = MODEL_NAME
    version: str | None = None
    quiet: bool = False
    explain: bool = False
    report: bool = False
    thumb_size: int = THUMB_SIZE
    preview_size: int = PREVIEW_SIZE
    upload: Upload = Upload()  # a reduced copy of a large photo; EXIF and overlays come from the original

    @property
    def out_is_folder(self) -> bool:
        return self.out.endswith(("/", os.sep)) or Path(self.out).is_dir()


def list_photos(folder: Path) -> list[Path]:
    """The photos under ``folder`` (sub-folders included, by extension), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_photo_name(p))


def _check_writable(out: Path) -> None:
    """Fail before tagging, not after: --out must be a file name in an existing, writable folder."""
    if out.is_dir():
        raise ClientError(f"--out {out} is a folder; expected the name of the CSV file to write")
    folder = out.parent
    if not folder.is_dir():
        raise ClientError(f"cannot write --out {out}: folder {folder} does not exist")
    check_folder_writable(folder, f"--out {out}")


def _open_output(job: TagFolderJob) -> tuple[Path, RunFolder | None, str]:
    """The CSV to write, the run folder (``--out RUN_DIR/``) and how to name --out in messages."""
    folder = Path(job.folder)
    if not folder.is_dir():
        raise ClientError(f"{folder} is not a folder" if folder.exists() else f"folder {folder} does not exist")
    if not job.out_is_folder:
        for flag, wanted in (("--report", job.report), ("--explain", job.explain)):
            if wanted:
                raise ClientError(f"{flag} needs --out RUN_DIR/ (a folder for labels.csv, details.csv and the report), not {job.out}")
        out = Path(job.out)
        _check_writable(out)
        return out, None, str(out)
    run_dir = Path(job.out)
    prepare_run_dir(run_dir)
    try:
        run = RunFolder(run_dir, folder, job.spec, job.restart)
    except (OSError, RunFilesError) as e:
        raise ClientError(f"cannot resume from {run_dir / DETAILS_CSV}: {error_text(e)}; --restart to overwrite it") from None
    if run.problems:
        print(f"warning: {len(run.problems)} unusable rows of {run.details_path} will be dropped "
              f"(e.g. {run.problems[0]}); their photos are tagged again", file=sys.stderr)
    return run_dir / LABELS_CSV, run, f"{run_dir}/"


def _old_rows(out: Path, spec: AttributeSpec, restart: bool) -> dict[str, dict[str, int]]:
    """The rows of an earlier run's CSV, to keep and to skip their photos."""
    from lizaalert_tagger.common.labels_csv import read_labels

    if restart or not out.exists():
        return {}
    try:
        table = read_labels(out, spec)
    except (OSError, ValueError) as e:
        raise ClientError(f"cannot resume from {out}: {error_text(e)}; --restart to overwrite it") from None
    if table.problems:
        print(f"warning: {len(table.problems)} unusable rows of {out} will be dropped (e.g. {table.problems[0]}); "
              "their photos are tagged again", file=sys.stderr)
    return dict(table.pairs())


class _Tagging:
    """One tag-folder run's state: the rows of earlier runs, what this run tagged and what failed."""

    def __init__(self, job: TagFolderJob, out: Path, run: RunFolder | None, names: dict[Path, str]) -> None:
        self.job, self.out, self.run, self.names = job, out, run, names
        self.old = _old_rows(out, job.spec, job.restart)
        self.results: dict[Path, Any] = {}  # codes, or with --out RUN_DIR/ a PhotoRecord
        self.failures: dict[Path, str] = {}

    def already_done(self) -> set[str]:
        done = set(self.old)
        if self.run is not None:
            done &= set(self.run.details)  # in labels.csv but not details.csv (or the reverse): tagged again
        return done

    def tag(self, client: TaggerClient, path: Path):
        """One photo: its codes, or its record with EXIF; ``ValueError`` for an answer of another model."""
        from lizaalert_tagger.common.exif import read_exif

        data = path.read_bytes()
        answer = client.predict(self.job.upload.body(data), self.job.model, self.job.version)
        if self.run is None:
            return self.job.spec.answer_codes(answer)
        return PhotoRecord.from_answer(self.names[path], answer, self.job.spec, read_exif(data))

    def records(self) -> dict[str, PhotoRecord]:
        if self.run is None:
            return {}
        return {**self.run.details, **{r.path: r for r in self.results.values()}}

    def save(self) -> int:
        """Write every file of --out with the old rows and the ones done; returns the row count."""
        rows = dict(self.old)
        try:
            if self.run is None:
                rows.update((self.names[p], codes) for p, codes in self.results.items())
                write_labels_atomically(self.out, rows, self.job.spec)
                return len(rows)
            records = self.records()
            rows.update((name, r.codes) for name, r in records.items())
            attempted = {self.names[p] for p in (*self.results, *self.failures)}
            current = set(self.names.values())
            failed = {name: reason for name, reason in self.run.old_failed.items()
                      if name in current and name not in attempted and name not in records}
            failed.update((self.names[p], reason) for p, reason in self.failures.items())
            self.run.save(rows, records, failed)
            return len(records)
        except OSError as e:
            where = self.out if self.run is None else f"into {self.run.dir}"
            raise ClientError(f"cannot write {where}: {e.strerror or error_text(e)}") from None


def tag_folder(job: TagFolderJob, client: TaggerClient) -> int:
    """Tag the folder's photos not yet in --out, then ``explain`` and ``report``; the exit code."""
    import warnings

    with warnings.catch_warnings():
        # Pillow warns (once per place, on stderr) about corrupt EXIF; read_exif reports it per photo instead
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        return _tag_folder(job, client)


def _tag_folder(job: TagFolderJob, client: TaggerClient) -> int:
    out, run, where = _open_output(job)
    folder = Path(job.folder)
    photos = list_photos(folder)
    if not photos:
        raise ClientError(f"no photos under {folder} (looked for .jpg, .png, .webp, .bmp, .tif, .gif)")
    state = _Tagging(job, out, run, {p: p.relative_to(folder).as_posix() for p in photos})
    done = state.already_done()
    todo = [p for p in photos if state.names[p] not in done]
    if len(todo) < len(photos):
        print(f"{len(photos) - len(todo)} photos already tagged in {where}, skipping them; --restart to tag everything again")
    if not todo:
        print(f"nothing to tag: all {len(photos)} photos under {folder} are in {where}")
        return _after_tagging(job, client, run, state.records())

    started = time.monotonic()
    outcome = run_bounded(
        todo, lambda path: state.tag(client, path), state.results.__setitem__, job.concurrency,
        on_failure=state.failures.__setitem__,
        progress=Progress(None if job.quiet else "tag", len(todo)),
        checkpoint=state.save, checkpoint_s=CHECKPOINT_S,
    )
    total_rows = state.save()
    code = _print_summary(job, state, outcome, len(todo), total_rows, time.monotonic() - started, where)
    if outcome.stopped:
        return code
    return _after_tagging(job, client, run, state.records()) or code


def _print_summary(job: TagFolderJob, state: _Tagging, outcome: Outcome, todo: int, total_rows: int,
                   seconds: float, where: str) -> int:
    """The failures, the EXIF warnings and one line of what was done; the exit code of the tagging."""
    run = state.run
    for path in sorted(state.failures)[:MAX_FAILURES_SHOWN]:
        print(f"tagctl: {state.names[path]}: {one_line(state.failures[path])}", file=sys.stderr)
    if len(state.failures) > MAX_FAILURES_SHOWN:
        more = f" (all in {run.failed_path})" if run is not None else ""
        print(f"tagctl: ... and {len(state.failures) - MAX_FAILURES_SHOWN} more photos failed{more}", file=sys.stderr)
    if run is not None:
        _warn_exif(state.results.values(), run)
    rate = f"{len(state.results) / seconds:.1f} photos/s" if seconds > 0 else "-"
    progress = f"tagged {len(state.results)} of {todo} photos in {seconds:.1f} s ({rate}) -> {where} ({total_rows} rows)"
    again = "run the same command without --restart" if job.restart else "run the same command again"
    if outcome.stopped:
        left = todo - len(state.results)
        reason = "interrupted" if outcome.interrupted else error_text(outcome.fatal).rstrip(".")
        print(f"tagctl: {reason}; {progress}; {again} to tag the other {left} (photos already in {where} are skipped)",
              file=sys.stderr)
        return 130 if outcome.interrupted else 1
    print(progress)
    if state.failures:
        listed = f", listed in {run.failed_path}" if run is not None else ""
        print(f"{len(state.failures)} photos failed{listed}; {again} to retry them")
        return 1
    return 0


def _warn_exif(records, run: RunFolder) -> None:
    """One stderr line for the photos whose EXIF had unusable fields (details.csv has every warning)."""
    warned = sorted((r.path, r.exif.warnings[0]) for r in records if r.exif.warnings)
    if warned:
        path, first = warned[0]
        print(f"warning: {len(warned)} photos have unusable EXIF fields (e.g. {path}: {one_line(first)}); "
              f"see the exif_warnings column of {run.details_path}", file=sys.stderr)


# --- after tagging: --explain, --report -------------------------------------------------------------------


def _after_tagging(job: TagFolderJob, client: TaggerClient, run: RunFolder | None, records: dict[str, PhotoRecord]) -> int:
    """--explain's overlays, then --report (which shows them)."""
    if run is None:
        return 0
    code = explain_found(job, client, run, records) if job.explain else 0
    if job.report:
        from lizaalert_tagger.client.commands import print_report_summary
        from lizaalert_tagger.client.report import build_report

        print_report_summary(build_report(run.dir, job.spec, run.folder, job.thumb_size, job.preview_size,
                                          progress=not job.quiet))
    return code


def _explainable(run: RunFolder, records: dict[str, PhotoRecord], spec: AttributeSpec) -> list[str]:
    """Photos with an object found and no overlay yet, whose paths stay inside the photo folder and
    RUN_DIR/explanations/ (:func:`safe_relative`: a crafted details.csv row cannot point elsewhere)."""
    folder = run.folder.resolve()
    todo = []
    for name in sorted(records):
        relative, target = safe_relative(name), explanation_path(run.dir, name)
        if relative is None or target is None or not records[name].objects(spec) or target.is_file():
            continue
        if folder.joinpath(*relative.parts).resolve().is_relative_to(folder):
            todo.append(name)
    return todo


def explain_found(job: TagFolderJob, client: TaggerClient, run: RunFolder, records: dict[str, PhotoRecord]) -> int:
    """``--explain``: RUN_DIR/explanations/<photo path>.png for every photo with an object found that has
    none yet, from the server's /explanations, drawn as ``tagctl explain`` draws them. Resumable like
    the tagging (what exists is kept) and bounded the same way. Returns the exit code."""
    from lizaalert_tagger.common.overlay import draw_overlay, open_photo

    todo = _explainable(run, records, job.spec)
    if not todo:
        return 0
    folder, base = run.folder.resolve(), run.dir / EXPLANATIONS_DIR

    def explain(name: str) -> None:
        data = folder.joinpath(*safe_relative(name).parts).read_bytes()
        answer = client.explain(job.upload.body(data), job.model, job.version)
        image = draw_overlay(open_photo(data, job.preview_size or job.thumb_size), answer)
        target = explanation_path(run.dir, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, lambda tmp: image.save(tmp, "PNG"))

    def unsupported(e: BaseException) -> bool:  # no server, or no explanations on it
        return dooms_every_photo(e) or (isinstance(e, ClientError) and e.status == 501)

    outcome = run_bounded(todo, explain, lambda name, _: None, job.concurrency, is_fatal=unsupported,
                          progress=Progress(None if job.quiet else "explain", len(todo)))
    made = outcome.done
    if outcome.interrupted:
        print(f"tagctl: interrupted; {made} overlays written to {base}; run the same command again for the other "
              f"{len(todo) - made}", file=sys.stderr)
        return 130
    if outcome.fatal is not None:
        print(f"tagctl: no explanations from the server ({one_line(error_text(outcome.fatal))}); "
              f"{made} overlays written, the report shows none for the other photos", file=sys.stderr)
        return 1
    print(f"explained {made} of {len(todo)} photos with objects -> {base}/")
    for name in sorted(outcome.failures)[:MAX_FAILURES_SHOWN]:
        print(f"tagctl: explain {name}: {one_line(outcome.failures[name])}", file=sys.stderr)
    if outcome.failures:
        print(f"{len(outcome.failures)} explanations failed; run the same command again to retry them", file=sys.stderr)
        return 1
    return 0
