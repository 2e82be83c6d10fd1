"""The one reader of hey's output, hey's command line, and every load command checking for hey first."""
from __future__ import annotations

import json
import shutil

import pytest

from lizaalert_tagger.bench import hey as hey_module
from lizaalert_tagger.bench.hey import HeyError, hey_command, parse_hey, require_hey, run_hey, whole_waves

# hey 0.1.4's own output (Debian's package), trimmed of the histogram: 8 requests, every 4th answered 503.
MIXED = """
Summary:
  Total:\t0.0082 secs
  Slowest:\t0.0038 secs
  Fastest:\t0.0007 secs
  Average:\t0.0020 secs
  Requests/sec:\t979.3559

  Total data:\t16 bytes
  Size/request:\t2 bytes

Latency distribution:
  10% in 0.0009 secs
  25% in 0.0009 secs
  50% in 0.0023 secs
  75% in 0.0030 secs
  0% in 0.0000 secs
  0% in 0.0000 secs
  0% in 0.0000 secs

Status code distribution:
  [200]\t6 responses
  [503]\t2 responses
"""
# ... and with nothing listening: no status at all, only errors.
REFUSED = """
Summary:
  Total:\t0.0008 secs
  Slowest:\t0.0000 secs
  Fastest:\t0.0000 secs
  Average:\t NaN secs
  Requests/sec:\t4818.5456

Latency distribution:

Status code distribution:

Error distribution:
  [4]\tPost "http://127.0.0.1:18998/x": dial tcp 127.0.0.1:18998: connect: connection refused
"""


def test_statuses_latencies_and_failures_are_read():
    result = parse_hey(MIXED)
    assert result.statuses == {200: 6, 503: 2} and result.errors == {}
    assert result.seconds == pytest.approx(0.0082) and result.rps == pytest.approx(979.3559)
    assert result.latency_ms == {"p50": pytest.approx(2.3)}  # too few requests for p95/p99: hey prints 0% lines
    assert result.failed == 2
    assert result.answered_rps == pytest.approx(6 / 0.0082)  # hey's own req/s counts the 503s too
    assert result.summary() == {"rps": result.answered_rps, "p50": result.latency_ms["p50"], "errors": 2}


def test_transport_errors_count_as_failed():
    result = parse_hey(REFUSED)
    assert result.statuses == {} and result.latency_ms == {}
    (message,) = result.errors
    assert "connection refused" in message and result.errors[message] == 4
    assert result.failed == 4 and result.answered_rps == 0


def test_output_without_a_summary_is_a_clear_error():
    with pytest.raises(HeyError, match="no total time: expected its summary, got 'flag provided but not defined"):
        parse_hey("flag provided but not defined: -X\nUsage: hey [options...] <url>")


def test_command_posts_the_file_in_whole_waves_or_for_a_time():
    cmd = hey_command("http://127.0.0.1:1/p", "photo.jpg", 4, "tok", requests=10)
    assert cmd[0] == "hey" and cmd[-1] == "http://127.0.0.1:1/p"
    assert cmd[cmd.index("-n") + 1] == "12" and cmd[cmd.index("-c") + 1] == "4"  # hey sends n // c per client
    assert cmd[cmd.index("-D") + 1] == "photo.jpg" and cmd[cmd.index("-H") + 1] == "Authorization: Bearer tok"
    timed = hey_command("http://127.0.0.1:1/p", "photo.jpg", 4, seconds=2.5)
    assert timed[timed.index("-z") + 1] == "2.5s" and "-n" not in timed and "-H" not in timed
    assert [whole_waves(n, 4) for n in (1, 4, 5, 8)] == [4, 4, 8, 8]


def test_real_hey_against_a_loopback_server(loopback_server, tmp_path):
    """The command line as hey really takes it: the body arrives, every answer is counted."""
    require_hey()  # installed by scripts/install_system_tools.sh hey (make system-tools)
    server = loopback_server(lambda method, path, query, body: (200 if body == b"photo" else 400, json.dumps({}).encode()))
    body = tmp_path / "photo.jpg"
    body.write_bytes(b"photo")
    result = run_hey(f"{server.url}/predictions/x", body, 2, "tok", requests=5)
    assert result.statuses == {200: 6} and result.failed == 0
    assert {(m, p) for m, p, _, _ in server.requests} == {("POST", "/predictions/x")}


@pytest.fixture()
def no_hey(monkeypatch):
    """A PATH without hey (the tools the commands need otherwise stay reachable)."""
    which = shutil.which
    monkeypatch.setattr(hey_module.shutil, "which", lambda name, *a, **k: None if name == "hey" else which(name, *a, **k))


def test_missing_hey_says_how_to_install_it(no_hey):
    with pytest.raises(HeyError, match=r"`hey` is not installed: install it with scripts/install_system_tools.sh hey"):
        require_hey()


def test_bench_checks_for_hey_before_measuring_anything(no_hey, monkeypatch, capsys):
    from lizaalert_tagger.bench import bench

    started = []
    monkeypatch.setattr(bench, "run_bench", lambda plan: started.append(plan))
    monkeypatch.setattr(bench, "inprocess_limit", lambda *a, **k: started.append(a))
    assert bench.main(["--quick"]) == 1
    assert started == []
    err = capsys.readouterr().err.strip()
    assert err.startswith("lizaalert-bench: ") and "apt-get install hey" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("command, argv", [
    ("soak", ["--requests", "4"]),
    ("field_bench", ["--count", "1", "--inference-url", "http://127.0.0.1:9"]),
    ("profile", ["--no-py-spy"]),
])
def test_every_load_command_checks_for_hey_first(no_hey, monkeypatch, capsys, tmp_path, command, argv):
    import importlib

    module = importlib.import_module(f"lizaalert_tagger.bench.{command}")
    for name in ("run_field_bench", "run_profile", "make_photos"):  # soak checks inside run_soak, first thing
        if hasattr(module, name):
            monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("ran without hey"))
    code = module.main(argv + (["--work", str(tmp_path)] if command == "field_bench" else []))
    err = capsys.readouterr().err.strip()
    assert code != 0 and "`hey` is not installed" in err and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
