"""Monitoring end to end: promtool checks the scrape config, the rules, the rules' unit tests and the
dashboard's PromQL, and a real Prometheus on a free loopback port scrapes the session's TorchServe
to check counts. The files' structure is checked without a server in
tests/unit/deploy/test_monitoring_files.py (the ``monitoring_files`` fixture reads them for both).

The ``prometheus_tools`` fixture installs promtool and prometheus when missing
(scripts/install_system_tools.sh: apt-get, as root or with sudo).
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from conftest import ROOT, make_photo

pytestmark = pytest.mark.integration

INSTALL_TOOLS = ROOT / "scripts" / "install_system_tools.sh"
JOB = "lizaalert_tagger"
# Declared metrics with no series until their event happens (checked live below).
EVENT_ONLY_METRICS = {"Requests5XX"}


def run(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="session")
def prometheus_tools() -> dict[str, str]:
    """Paths of promtool and prometheus, installing the Debian package when they are missing."""
    if not (shutil.which("promtool") and shutil.which("prometheus")):
        result = run(["bash", str(INSTALL_TOOLS), "prometheus"], timeout=900)
        if result.returncode != 0:
            pytest.fail(f"promtool/prometheus missing and {INSTALL_TOOLS.name} could not install them:\n"
                        f"{result.stdout}\n{result.stderr}")
    tools = {name: shutil.which(name) for name in ("promtool", "prometheus")}
    missing = [name for name, path in tools.items() if not path]
    if missing:
        pytest.fail(f"{', '.join(missing)} still not on the PATH after installing the prometheus package")
    return tools


def test_promtool_checks_the_scrape_config_and_its_rules(prometheus_tools, monitoring_files):
    result = run([prometheus_tools["promtool"], "check", "config", str(monitoring_files.prometheus_config)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout  # rule_files resolved and checked too


def test_promtool_checks_the_rules(prometheus_tools, monitoring_files):
    result = run([prometheus_tools["promtool"], "check", "rules", str(monitoring_files.alerts)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests(prometheus_tools, monitoring_files):
    # Synthetic series: error ratio, no worker, target down, overload, tag share shift.
    result = run([prometheus_tools["promtool"], "test", "rules", str(monitoring_files.alerts_test)], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_dashboard_queries_are_valid_promql(prometheus_tools, monitoring_files, tmp_path):
    # promtool parses every expression of a rules file: wrap the queries as recording rules.
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(monitoring_files.dashboard_exprs())]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    result = run([prometheus_tools["promtool"], "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


# --- integration: a real Prometheus scraping the session's TorchServe ----------

SCRAPE_SECONDS = 1
WAIT_SECONDS = 60


class Prometheus:
    """A Prometheus server on a free loopback port, with the project's rules."""

    def __init__(self, binary: str, workdir: Path, metrics_target: str, files) -> None:
        from lizaalert_tagger.ops.torchserve import free_port

        self.workdir = workdir
        self.url = f"http://127.0.0.1:{free_port()}"
        config = yaml.safe_load(files.prometheus_config.read_text(encoding="utf-8"))
        config["global"].update(scrape_interval=f"{SCRAPE_SECONDS}s", evaluation_interval=f"{SCRAPE_SECONDS}s")
        (job,) = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
        job.update(scrape_interval=f"{SCRAPE_SECONDS}s", scrape_timeout=f"{SCRAPE_SECONDS}s")
        job["static_configs"][0]["targets"] = [metrics_target]
        # The shipped rules, with every group evaluated at the test's interval.
        rules = yaml.safe_load(files.alerts.read_text(encoding="utf-8"))
        for group in rules["groups"]:
            group.pop("interval", None)
        (workdir / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
        config["rule_files"] = [str(workdir / "alerts.yml")]
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.log_path = workdir / "prometheus.log"
        self.command = [binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={workdir / 'data'}",
                        f"--web.listen-address={self.url.split('//', 1)[1]}"]
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def api(self, path: str, **params) -> dict | list:
        r = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", f"{path} {params}: {r.status_code} {body}"
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        return self.api("query", query=promql)["result"]

    def scalar(self, promql: str) -> float:
        """The value of a one-series query; 0 when it has no series (a counter not created yet)."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else 0.0


def wait_for(condition, what: str, timeout: float = WAIT_SECONDS, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:.0f} s")
        time.sleep(interval)


@pytest.fixture(scope="module")
def prometheus(prometheus_tools, server, monitoring_files, tmp_path_factory):
    target = server.metrics_url.split("://", 1)[1]
    prom = Prometheus(prometheus_tools["prometheus"], tmp_path_factory.mktemp("prometheus"), target, monitoring_files)
    try:
        prom.start()
        wait_for(lambda: prom.query(f'up{{job="{JOB}"}} == 1'), f"successful scrape of {target}")
        yield prom
    finally:
        prom.stop()


REQUESTS_QUERY = f'sum(ts_inference_requests_total{{job="{JOB}"}})'
TIME_OF_DAY_QUERY = f'sum(lizaalert_tag_predictions{{job="{JOB}", attribute="time_of_day"}})'
REFUSED_QUERY = f'sum(lizaalert_images_refused{{job="{JOB}", reason="not_an_image"}})'


def test_prometheus_counts_our_predictions(prometheus, server):
    """N photos and one non-image: N+1 requests, N time_of_day tags, 1 refusal, as Prometheus sees them."""
    from lizaalert_tagger.client.http import TaggerClient

    queries = (REQUESTS_QUERY, TIME_OF_DAY_QUERY, REFUSED_QUERY)
    # The fixture waited for a scrape after every earlier test's requests: these are current.
    before = [prometheus.scalar(q) for q in queries]
    photos = 5
    client = TaggerClient(server.inference_url, server.management_url, server.key_file)
    for i in range(photos):
        answer = client.predict(make_photo(color=(20 * i, 120, 60)))
        assert answer["attributes"]["time_of_day"]["label"]
    refused = requests.post(f"{server.inference_url}/predictions/lizaalert_tagger", data=b"\x00not a photo" * 8,
                            headers={"Authorization": f"Bearer {server.keys()['inference']}"}, timeout=60)
    assert refused.status_code == 400 and refused.json()["type"] == "not_an_image"

    expected = [before[0] + photos + 1, before[1] + photos, before[2] + 1]

    def caught_up() -> list[float] | None:
        values = [prometheus.scalar(q) for q in queries]
        return values if all(v >= e for v, e in zip(values, expected)) else None

    # Wait until every count has caught up, then demand exact equality (an overshoot fails).
    after = wait_for(caught_up, "scrape with the new counts")
    assert after == expected, dict(zip(queries, zip(before, after)))


def test_rules_evaluate_on_real_series(prometheus, server, monitoring_files):
    """Every shipped rule evaluates without error on TorchServe's real label sets."""
    from lizaalert_tagger.client.http import TaggerClient

    client = TaggerClient(server.inference_url, server.management_url, server.key_file)
    for _ in range(2):  # new samples, so that rate() over the counters has something to see
        client.predict(make_photo())
        time.sleep(SCRAPE_SECONDS)

    def all_evaluated() -> list[dict] | None:
        rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        never = "0001-01-01"  # Prometheus' lastEvaluation before the first evaluation
        return rules if rules and not any(rule["lastEvaluation"].startswith(never) for rule in rules) else None

    rules = wait_for(all_evaluated, "evaluation of every rule")
    assert len(rules) == len(monitoring_files.rules())
    broken = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert not broken
    for record in ("lizaalert:prediction_requests:rate5m", "lizaalert:handled_requests:rate5m",
                   "lizaalert:http_responses:rate5m", 'lizaalert:tag_share:1h{attribute="time_of_day"}'):
        assert wait_for(lambda: prometheus.query(record), f"series of {record}", timeout=30)
    alerts = prometheus.api("alerts")["alerts"]
    firing = [alert["labels"]["alertname"] for alert in alerts if alert["state"] == "firing"]
    assert "LizaAlertTaggerDown" not in firing and "LizaAlertTaggerNoWorkerAnswers" not in firing


def test_dashboard_and_rule_metrics_exist_in_the_scrape(prometheus, monitoring_files):
    """Every metric the dashboard and rules name is in Prometheus (5xx-only ones excepted); every panel query runs."""
    scraped = set(prometheus.api("label/__name__/values"))
    exprs = [expr for _, expr in monitoring_files.dashboard_exprs()]
    wanted = set()
    for expr in exprs + [rule["expr"] for rule in monitoring_files.rules()]:
        wanted |= monitoring_files.metric_names(expr)
    wanted -= monitoring_files.recorded_metrics()
    assert not wanted - scraped - EVENT_ONLY_METRICS, sorted(wanted - scraped)
    for expr in exprs:
        prometheus.query(expr)  # fails on a query error
    assert prometheus.query(exprs[0]), "no requests per second"
