"""tagctl, the CLI: tag-folder's Ctrl-C and resume, one-line errors, predict --json as JSON Lines,
and `models register` leaving the batching settings to the archive.

The tests run the CLI in-process against conftest's ``FakeTorchServe`` (a loopback HTTP server)
or a patched ``TaggerClient.predict``; registration against a real TorchServe is
tests/integration/test_tagctl_server.py.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import fake_answer, photo_folder


@pytest.fixture()
def fake(fake_torchserve):
    """conftest's FakeTorchServe (the LIZAALERT_* connection variables unset)."""
    return fake_torchserve


def tagctl(url: str, *args: str) -> int:
    from lizaalert_tagger.client import tagctl as cli

    return cli.main(["--inference-url", url, "--management-url", url, "--token", "t", "--retries", "0", *args])


def csv_names(path: Path, spec) -> list[str]:
    from lizaalert_tagger.common.labels_csv import read_labels

    table = read_labels(path, spec)
    assert not table.problems, table.problems
    return [r.filename for r in table.rows]


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("tagctl: "), err
    return lines[0]


# --- tag-folder: resume, Ctrl-C, bounded in-flight window ------------------------------------


def test_tag_folder_writes_every_photo_sorted_by_path(fake, spec, tmp_path, capsys):
    folder = photo_folder(tmp_path / "photos", 7)
    out = tmp_path / "out.csv"
    assert tagctl(fake.url, "tag-folder", str(folder), "--out", str(out), "--concurrency", "3", "--quiet") == 0
    names = csv_names(out, spec)
    assert names == sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))
    assert "sub/p000.jpg" in names and fake.predictions == 7
    assert "tagged 7 of 7 photos" in capsys.readouterr().out
    assert not list(tmp_path.glob(".out.csv.*")), "the temp file of the atomic write is left behind"


def test_tag_folder_resumes_skipping_the_photos_already_in_the_csv(fake, spec, tmp_path, capsys):
    folder = photo_folder(tmp_path / "photos", 4)
    out = tmp_path / "out.csv"
    assert tagctl(fake.url, "tag-folder", str(folder), "--out", str(out), "--quiet") == 0
    assert fake.predictions == 4
    capsys.readouterr()

    photo_folder(folder, 3, start=4)  # three new photos
    assert tagctl(fake.url, "tag-folder", str(folder), "--out", str(out), "--quiet") == 0
    assert fake.predictions == 4 + 3, "photos already in the CSV were sent again"
    assert sorted(fake.bodies()[4:]) == [b"photo 4", b"photo 5", b"photo 6"]
    out_text = capsys.readouterr().out
    assert f"4 photos already tagged in {out}, skipping them; --restart to tag everything again" in out_text
    names = csv_names(out, spec)
    assert names == sorted(names) and len(names) == 7  # old + new rows, sorted by path

    assert tagctl(fake.url, "tag-folder", str(folder), "--out", str(out), "--quiet") == 0
    assert fake.predictions == 7 and "nothing to tag" in capsys.readouterr().out

    assert tagctl(fake.url, "tag-folder", str(folder), "--out", str(out), "--quiet", "--restart") == 0
    assert fake.predictions == 7 + 7 and len(csv_names(out, spec)) == 7


def test_ctrl_c_during_a_request_writes_the_done_rows_and_the_same_command_resumes(spec, tmp_path, monkeypatch, capsys):
    """KeyboardInterrupt on the 6th request: queued photos are dropped (not 100 requests), the rows
    done are in the CSV, exit 130 with one line saying how to continue; the rerun tags only the rest."""
    from lizaalert_tagger.client.http import TaggerClient

    answer = fake_answer(spec)
    calls = []
    lock = threading.Lock()

    def predict(self, photo, model="lizaalert_tagger", version=None):
        with lock:
            calls.append(photo)
            n = len(calls)
        if n == 6:
            raise KeyboardInterrupt
        return answer

    monkeypatch.setattr(TaggerClient, "predict", predict)
    folder = photo_folder(tmp_path / "photos", 100)
    out = tmp_path / "out.csv"
    args = ("tag-folder", str(folder), "--out", str(out), "--concurrency", "2", "--quiet")
    t0 = time.monotonic()
    code = tagctl("http://127.0.0.1:9", *args)
    assert code == 130
    assert time.monotonic() - t0 < 5
    first = len(calls)
    # 6 + a window of 2 x 2 (a few more only under odd thread scheduling); not the 100 photos
    assert first < 15, f"{first} requests: the photos queued when Ctrl-C came were not dropped"
    names = csv_names(out, spec)
    assert len(names) == first - 1 and names == sorted(names)
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("tagctl: interrupted; tagged ") and "run the same command again" in line

    assert tagctl("http://127.0.0.1:9", *args) == 0  # the same command resumes
    assert len(calls) - first == 100 - len(names)
    assert f"{len(names)} photos already tagged in {out}, skipping them" in capsys.readouterr().out
    assert csv_names(out, spec) == sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))


def test_sigint_stops_within_seconds_while_requests_hang(fake, spec, tmp_path, monkeypatch, capsys):
    """A real SIGINT to the main thread while the server sits on the requests in flight:
    tag-folder waits INTERRUPT_GRACE_S for them, not --timeout, writes what was answered, exits 130."""
    from lizaalert_tagger.client import runner

    monkeypatch.setattr(runner, "INTERRUPT_GRACE_S", 1.0)
    interrupted_at = []

    def before_answer(n, body):
        if n == 4:
            interrupted_at.append(time.monotonic())
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        if n >= 4:
            fake.release.wait(60)  # hang: answered only when the test ends

    fake.before_answer = before_answer
    folder = photo_folder(tmp_path / "photos", 50)
    out = tmp_path / "out.csv"
    code = tagctl(fake.url, "--timeout", "60", "tag-folder", str(folder), "--out", str(out), "--concurrency", "2", "--quiet")
    stopped_after = time.monotonic() - interrupted_at[0]
    assert code == 130
    assert stopped_after < 4, f"took {stopped_after:.1f} s to stop after Ctrl-C"
    assert fake.predictions <= 4 + 2  # nothing sent after Ctrl-C but what was already being sent
    assert len(csv_names(out, spec)) == fake.answered == 3
    assert "interrupted" in one_error_line(capsys.readouterr().err)


def test_at_most_twice_concurrency_photos_are_queued(spec, tmp_path, monkeypatch):
    from lizaalert_tagger.client import runner
    from lizaalert_tagger.client.http import TaggerClient

    answer = fake_answer(spec)
    monkeypatch.setattr(TaggerClient, "predict", lambda self, *a, **k: (time.sleep(0.002), answer)[1])
    state = {"outstanding": 0, "most": 0, "submitted": 0}
    lock = threading.Lock()
    submit = runner.DaemonExecutor.submit

    def counting_submit(self, fn, *args, **kwargs):
        future = submit(self, fn, *args, **kwargs)
        with lock:
            state["submitted"] += 1
            state["outstanding"] += 1
            state["most"] = max(state["most"], state["outstanding"])

        def finished(_):
            with lock:
                state["outstanding"] -= 1

        future.add_done_callback(finished)
        return future

    monkeypatch.setattr(runner.DaemonExecutor, "submit", counting_submit)
    folder = photo_folder(tmp_path / "photos", 60)
    assert tagctl("http://127.0.0.1:9", "tag-folder", str(folder), "--out", str(tmp_path / "o.csv"),
                  "--concurrency", "3", "--quiet") == 0
    assert state["submitted"] == 60
    assert state["most"] <= 2 * 3


# --- one-line errors -----------------------------------------------------------------------------


def _bad_spec(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "case, expected",
    [
        ("url-without-scheme", "expected http://host:port"),
        ("url-from-env", "$LIZAALERT_INFERENCE_URL 'localhost:8080' is not a URL"),
        ("management-url", "--management-url"),
        ("missing-spec", "attribute spec not found"),
        ("spec-not-json", "is not valid JSON"),
        ("spec-invalid", "the spec has no attributes"),
        ("out-folder-missing", "does not exist"),
        ("out-folder-is-a-file", "is a file, not a folder"),  # --out DIR/ is a run folder (test_field.py)
        ("folder-missing", "does not exist"),
        ("existing-out-not-a-labels-csv", "--restart to overwrite it"),
        ("predict-missing-photo", "cannot read: No such file or directory"),
        ("predict-photo-is-a-folder", "cannot read: Is a directory"),
        ("server-down", "cannot reach"),
        ("server-down-tag-folder", "cannot reach"),
        ("usage-missing-out", "the following arguments are required: --out"),
        ("usage-bad-concurrency", "expected a whole number >= 1"),
        ("score-missing-csv", "No such file or directory"),
    ],
)
def test_errors_are_one_line_and_a_non_zero_exit(case, expected, fake, spec, tmp_path, monkeypatch, capsys):
    from lizaalert_tagger.client import tagctl as cli

    folder = photo_folder(tmp_path / "photos", 2)
    out = str(tmp_path / "out.csv")
    down = "http://127.0.0.1:9"  # the discard port: nothing listens
    argv = {
        "url-without-scheme": ["--inference-url", "localhost:8080", "predict", str(folder / "p001.jpg")],
        "url-from-env": ["predict", str(folder / "p001.jpg")],
        "management-url": ["--management-url", "ftp://x", "models", "list"],
        "missing-spec": ["--inference-url", fake.url, "tag-folder", str(folder), "--out", out, "--spec", str(tmp_path / "nope.json")],
        "spec-not-json": ["--inference-url", fake.url, "tag-folder", str(folder), "--out", out, "--spec", str(_bad_spec(tmp_path, "broken.json", "{"))],
        "spec-invalid": ["--inference-url", fake.url, "tag-folder", str(folder), "--out", out,
                         "--spec", str(_bad_spec(tmp_path, "empty.json", '{"attributes": []}'))],
        "out-folder-missing": ["--inference-url", fake.url, "tag-folder", str(folder), "--out", str(tmp_path / "no" / "out.csv")],
        "out-folder-is-a-file": ["--inference-url", fake.url, "tag-folder", str(folder), "--out", f"{folder / 'p001.jpg'}/"],
        "folder-missing": ["--inference-url", fake.url, "tag-folder", str(tmp_path / "nothing"), "--out", out],
        "existing-out-not-a-labels-csv": ["--inference-url", fake.url, "tag-folder", str(folder), "--out", out],
        "predict-missing-photo": ["--inference-url", fake.url, "predict", str(tmp_path / "missing.jpg")],
        "predict-photo-is-a-folder": ["--inference-url", fake.url, "predict", str(folder)],
        "server-down": ["--inference-url", down, "predict", *(str(p) for p in sorted(folder.rglob("*.jpg")))],
        "server-down-tag-folder": ["--inference-url", down, "tag-folder", str(folder), "--out", out, "--quiet"],
        "usage-missing-out": ["tag-folder", str(folder)],
        "usage-bad-concurrency": ["tag-folder", str(folder), "--out", out, "--concurrency", "0"],
        "score-missing-csv": ["score", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")],
    }[case]
    if case == "url-from-env":
        monkeypatch.setenv("LIZAALERT_INFERENCE_URL", "localhost:8080")
    if case == "existing-out-not-a-labels-csv":
        Path(out).write_text("just;some\ntext;here\n", encoding="utf-8")
    t0 = time.monotonic()
    try:
        code = cli.main(["--token", "t", "--retries", "0", *argv])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    assert code not in (0, None)
    line = one_error_line(capsys.readouterr().err)
    assert expected in line, line
    assert time.monotonic() - t0 < 60  # a guard against hangs and retry loops, not a speed test
    if case == "existing-out-not-a-labels-csv":
        assert Path(out).read_text(encoding="utf-8") == "just;some\ntext;here\n"  # not overwritten


def _deny(monkeypatch, folder_to_write: Path, photo: Path) -> None:
    """Make ``folder_to_write`` unwritable and ``photo`` unreadable: chmod, or, as root (whom
    permissions do not stop), the same PermissionError from the calls tagctl makes."""
    if os.geteuid() != 0:
        folder_to_write.chmod(0o500)
        photo.chmod(0o000)
        return
    import tempfile

    real_tempfile, real_read_bytes = tempfile.TemporaryFile, Path.read_bytes

    def temporary_file(*args, **kwargs):
        if Path(kwargs.get("dir") or ".") == folder_to_write:
            raise PermissionError(13, "Permission denied", str(folder_to_write / "tmpXYZ"))
        return real_tempfile(*args, **kwargs)

    def read_bytes(self):
        if self == photo:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)
    monkeypatch.setattr(Path, "read_bytes", read_bytes)


def test_unwritable_out_and_unreadable_photo_are_one_line(fake, spec, tmp_path, monkeypatch, capsys):
    folder = photo_folder(tmp_path / "photos", 3)
    locked = tmp_path / "locked"
    locked.mkdir()
    _deny(monkeypatch, locked, folder / "p001.jpg")
    try:
        code = tagctl(fake.url, "tag-folder", str(folder), "--out", str(locked / "out.csv"), "--quiet")
        assert code == 1
        assert one_error_line(capsys.readouterr().err) == (
            f"tagctl: cannot write --out {locked / 'out.csv'}: Permission denied (folder {locked})")
        assert fake.predictions == 0, "checked before tagging, not after"

        out = tmp_path / "out.csv"
        assert tagctl(fake.url, "tag-folder", str(folder), "--out", str(out), "--quiet") == 1
        assert one_error_line(capsys.readouterr().err) == "tagctl: p001.jpg: cannot read: Permission denied"
        assert csv_names(out, spec) == ["p002.jpg", "sub/p000.jpg"]  # the others are tagged

        assert tagctl(fake.url, "predict", str(folder / "p001.jpg"), str(folder / "p002.jpg")) == 1
        assert one_error_line(capsys.readouterr().err) == f"tagctl: {folder / 'p001.jpg'}: cannot read: Permission denied"
    finally:
        locked.chmod(0o700)
        (folder / "p001.jpg").chmod(0o600)


# --- predict --json --------------------------------------------------------------------------


def test_predict_json_prints_one_compact_utf8_object_per_photo(fake, tmp_path, capsys):
    photos = [tmp_path / "фото 1.jpg", tmp_path / "b.png"]
    for p in photos:
        p.write_bytes(b"photo")
    assert tagctl(fake.url, "predict", "--json", *map(str, photos)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    objects = [json.loads(line) for line in lines]
    assert [o["file"] for o in objects] == [str(p) for p in photos]
    assert all(o["attributes"]["time_of_day"]["label_ru"] == "День" for o in objects)
    assert "День" in lines[0] and "\\u" not in lines[0]  # UTF-8, not \u escapes

    assert tagctl(fake.url, "predict", "--json", str(photos[0])) == 0  # one photo: the same, one line
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["file"] == str(photos[0])


# --- models register -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, sent",
    [
        ([], {}),
        (["--batch-size", "4"], {"batch_size": ["4"]}),
        (["--max-batch-delay", "5"], {"max_batch_delay": ["5"]}),
        (["--workers", "3"], {"initial_workers": ["3"]}),
    ],
)
def test_register_sends_only_the_settings_given(fake, flags, sent):
    """Unset settings are left out, so TorchServe takes them from the archive's model-config.yaml."""
    assert tagctl(fake.url, "models", "register", "x.mar", *flags) == 0
    [(method, path, query, _)] = fake.requests
    assert (method, path) == ("POST", "/models")
    assert query == {"url": ["x.mar"], "synchronous": ["true"], **sent}


# --- one photo's failure is that photo's: time-outs, 5xx, answers of another model ------------------------------


def _failed_csv(run: Path) -> dict[str, str]:
    import csv

    with open(run / "failed.csv", encoding="utf-8", newline="") as f:
        return {row["path"]: row["reason"] for row in csv.DictReader(f, delimiter=";")}


def test_a_timeout_or_a_5xx_fails_only_that_photo_and_the_next_run_retries_it(fake, spec, tmp_path, capsys):
    """A photo the server holds past --timeout and one answered 503 after the retries (500 is not
    retried) are failed photos with their reason in failed.csv; every other photo is tagged, and the
    next run sends only those two again. (A time-out used to stop the whole run.)"""
    folder = photo_folder(tmp_path / "photos", 8)
    run = tmp_path / "run"
    bad = {b"photo 2": "timeout", b"photo 5": "503", b"photo 6": "500"}

    def before_answer(n, body):
        what = bad.get(body)
        if what == "timeout":
            fake.release.wait(4)
        elif what:
            return int(what), json.dumps({"code": int(what), "type": "x", "message": f"status {what}"}).encode()
        return None

    fake.before_answer = before_answer
    args = ("--timeout", "1", "--retries", "1", "tag-folder", str(folder), "--out", f"{run}/", "--quiet", "--concurrency", "2")
    assert tagctl(fake.url, *args) == 1
    out, err = capsys.readouterr()
    assert "tagged 5 of 8 photos" in out and "3 photos failed" in out
    failed = _failed_csv(run)
    assert sorted(failed) == ["p002.jpg", "p005.jpg", "sub/p006.jpg"], failed
    assert "timed out after 1 s" in failed["p002.jpg"]
    assert "HTTP 503" in failed["p005.jpg"] and "HTTP 500" in failed["sub/p006.jpg"]
    assert len(csv_names(run / "labels.csv", spec)) == 5
    assert sum(body == b"photo 5" for body in fake.bodies()) == 2  # the 503 was retried once

    bad.clear()
    sent = len(fake.bodies())
    assert tagctl(fake.url, *args) == 0
    assert sorted(fake.bodies()[sent:]) == [b"photo 2", b"photo 5", b"photo 6"]
    assert _failed_csv(run) == {} and len(csv_names(run / "labels.csv", spec)) == 8


@pytest.mark.parametrize("out", ["labels.csv", "run/"])
def test_an_answer_with_an_unknown_code_is_a_failed_photo_and_the_rest_are_written(out, fake, spec, tmp_path, capsys):
    """One answer says terrain 9 (no such code): that photo fails with the reason, the other four are
    written (the CSV used to be lost with "unexpected ValueError ... a bug in tagctl", on every rerun)."""
    from conftest import fake_answer

    folder = photo_folder(tmp_path / "photos", 5)
    wrong = fake_answer(spec)
    wrong["attributes"]["terrain"]["code"] = 9
    fake.before_answer = lambda n, body: (200, json.dumps(wrong).encode()) if body == b"photo 3" else None
    target = tmp_path / out
    assert tagctl(fake.url, "tag-folder", str(folder), "--out", f"{tmp_path}/{out}", "--quiet") == 1
    printed, err = capsys.readouterr()
    assert "unexpected" not in err and "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("tagctl:")]  # (the fake photos have no EXIF)
    assert line.startswith("tagctl: sub/p003.jpg: ") and "terrain has code 9, expected one of (0, 1, 2)" in line
    labels = target / "labels.csv" if out.endswith("/") else target
    assert csv_names(labels, spec) == ["p001.jpg", "p002.jpg", "p004.jpg", "sub/p000.jpg"]
    if out.endswith("/"):
        assert list(_failed_csv(target)) == ["sub/p003.jpg"]
        assert "terrain has code 9" in _failed_csv(target)["sub/p003.jpg"]


def test_help_shows_no_path_of_the_checkout_or_the_current_folder(capsys, monkeypatch, tmp_path):
    """--help is the same wherever tagctl is installed or run: no absolute default path (a client-only
    install has no checkout)."""
    from conftest import ROOT
    from lizaalert_tagger.client import tagctl as cli

    monkeypatch.chdir(tmp_path)
    for command in ([], ["predict"], ["explain"], ["tag-folder"], ["report"], ["score"], ["token"], ["models"]):
        with pytest.raises(SystemExit) as info:
            cli.main([*command, "--help"])
        assert info.value.code == 0
        text = capsys.readouterr().out
        assert "usage: tagctl" in text
        assert str(ROOT) not in text and str(tmp_path) not in text, (command, text)
