"""Monitoring: Prometheus scrape config and rules, the Grafana dashboard, and a real
Prometheus scraping a real TorchServe.

Unit tests (no server, nothing beyond the venv) check the files' structure and
that every query names only metrics TorchServe exports for us: those
metrics.yaml declares, TorchServe's ts_* frontend counters, Prometheus' own
``up``, and the rules' recorded series.
Integration tests (marked) need system tools: promtool checks the scrape
config, the rules, the rules' unit tests and the dashboard's PromQL, and a
Prometheus on a free loopback port scrapes the session's TorchServe to check
counts end to end. The ``prometheus_tools`` fixture installs the tools when
missing (scripts/install_system_tools.sh: apt-get, as root or with sudo), so
every test that uses it is marked ``integration``.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from conftest import ROOT, make_photo

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "lizaalert_tagger.json"
METRICS_YAML = ROOT / "metrics.yaml"
INSTALL_TOOLS = ROOT / "scripts" / "install_system_tools.sh"
JOB = "lizaalert_tagger"

# TorchServe's frontend counters (declared in metrics.yaml too, but exported by
# the frontend whatever the handler does) and Prometheus' per-target series.
TS_FRONTEND_METRICS = {"ts_inference_requests_total", "ts_inference_latency_microseconds",
                       "ts_queue_latency_microseconds"}
PROMETHEUS_SERIES = {"up"}
# Declared metrics with no series until their event happens (checked live below).
EVENT_ONLY_METRICS = {"Requests5XX"}

PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                   "offset", "bool", "inf", "nan"}
# Grafana variables, replaced by values that make the dashboard's queries plain PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$share_window": "1h", "$job": JOB, "$instance": ".*",
                     "$attribute": "time_of_day"}


# --- helpers ----------------------------------------------------------------


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, keywords, labels or strings)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w:$.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", text):
        name = match.group(1)
        if name.lower() not in PROMQL_KEYWORDS:
            names.add(name)
    return names


def declared_metrics() -> set[str]:
    """Every metric name metrics.yaml declares (frontend ts_metrics and the handler's model_metrics)."""
    config = yaml.safe_load(METRICS_YAML.read_text(encoding="utf-8"))
    return {
        metric["name"]
        for section in ("ts_metrics", "model_metrics")
        for metrics in (config.get(section) or {}).values()
        for metric in metrics
    }


def load_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]


def recorded_metrics() -> set[str]:
    return {rule["record"] for rule in load_rules() if "record" in rule}


def known_metrics() -> set[str]:
    return declared_metrics() | TS_FRONTEND_METRICS | PROMETHEUS_SERIES | recorded_metrics()


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def query_panels(dashboard: dict) -> list[dict]:
    """Panels that show data (rows are only headings); nested row panels included."""
    panels = []
    for panel in dashboard["panels"]:
        panels += panel.get("panels", [])
        if panel["type"] != "row":
            panels.append(panel)
    return panels


def dashboard_exprs(dashboard: dict) -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in query_panels(dashboard) for target in panel["targets"]]


def as_promql(expr: str) -> str:
    """A dashboard query with its Grafana variables filled in."""
    for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def run(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="session")
def prometheus_tools() -> dict[str, str]:
    """Paths of promtool and prometheus, installing the Debian package when they are missing.

    For integration tests only (the unit group needs nothing beyond the venv; see
    test_tests_that_need_system_tools_are_integration)."""
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


# --- files: unit tests need only the venv; the promtool ones are integration --


def test_tests_that_need_system_tools_are_integration():
    """The unit group (-m "not integration") needs nothing beyond the venv: every test of this file that
    asks for promtool/prometheus, directly or through the ``prometheus`` fixture, is marked integration."""
    import inspect

    tool_fixtures = {"prometheus_tools", "prometheus"}
    tests = {name: fn for name, fn in globals().items() if name.startswith("test_") and callable(fn)}
    needing = {name for name, fn in tests.items() if tool_fixtures & set(inspect.signature(fn).parameters)}
    unmarked = sorted(name for name in needing
                      if not any(mark.name == "integration" for mark in getattr(tests[name], "pytestmark", [])))
    assert len(needing) >= 7 and unmarked == []


def test_metric_name_extraction():
    expr = ('sum by (job, attribute) (increase(lizaalert_tag_predictions{attribute!="time_of_day"}[1h]))'
            ' / on (job) group_left lizaalert:tag_photos:1h > 0.3 and up{job="x"} == 0 or vector(0)'
            ' + max_over_time(HandlerTime[$__rate_interval]) * 1e3')
    assert metric_names(expr) == {"lizaalert_tag_predictions", "lizaalert:tag_photos:1h", "up", "HandlerTime"}


@pytest.mark.integration
def test_promtool_checks_the_scrape_config_and_its_rules(prometheus_tools):
    result = run([prometheus_tools["promtool"], "check", "config", str(PROMETHEUS_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout  # rule_files resolved and checked too


@pytest.mark.integration
def test_promtool_checks_the_rules(prometheus_tools):
    result = run([prometheus_tools["promtool"], "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_alert_rules_pass_their_unit_tests(prometheus_tools):
    # Synthetic series: error ratio, no worker, target down, overload, tag share shift.
    result = run([prometheus_tools["promtool"], "test", "rules", str(ALERTS_TEST)], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_scrape_config_targets_the_default_metrics_port():
    from lizaalert_tagger.ops.runtime import read_properties

    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
    targets = [target for static in job["static_configs"] for target in static["targets"]]
    metrics_address = read_properties()["metrics_address"].split("://", 1)[1]
    assert targets == [metrics_address] == ["127.0.0.1:8082"]
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_every_alert_has_a_duration_severity_summary_and_description():
    alerts = [rule for rule in load_rules() if "alert" in rule]
    assert len(alerts) >= 5
    for rule in alerts:
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"].strip() and rule["annotations"]["description"].strip(), rule["alert"]
    names = {rule["alert"] for rule in alerts}
    assert {"LizaAlertTaggerServerErrorRatio", "LizaAlertTaggerDown", "LizaAlertTaggerNoWorkerAnswers",
            "LizaAlertTaggerRequestsRejected", "LizaAlertTaggerMeanLatencyHigh", "LizaAlertTagShareShift"} <= names


def test_rules_reference_only_exported_metrics():
    known = known_metrics()
    for rule in load_rules():
        names = metric_names(rule["expr"])
        assert names, rule
        unknown = names - known
        assert not unknown, f"{rule.get('alert') or rule.get('record')} uses unknown metrics {unknown}"


def test_dashboard_panels_have_titles_and_queries():
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 36 and dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = query_panels(dashboard)
    assert len(panels) >= 6
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel.get("title", "").strip(), panel
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
    titles = " ".join(panel["title"].lower() for panel in panels)
    for topic in ("requests per second", "latency", "refused", "tag shares", "decode", "megapixels"):
        assert topic in titles, topic


def test_dashboard_queries_use_only_exported_metrics():
    known = declared_metrics() | TS_FRONTEND_METRICS | PROMETHEUS_SERIES  # raw metrics: no recording rules needed
    used = set()
    for title, expr in dashboard_exprs(load_dashboard()):
        names = metric_names(as_promql(expr))
        assert names, (title, expr)
        assert not names - known, f"panel {title!r} uses unknown metrics {names - known}"
        used |= names
    handler_metrics = {name for name in declared_metrics() if name.startswith("lizaalert_")}
    assert handler_metrics <= used, f"handler metrics not on the dashboard: {handler_metrics - used}"


@pytest.mark.integration
def test_dashboard_queries_are_valid_promql(prometheus_tools, tmp_path):
    # promtool parses every expression of a rules file: wrap the queries as recording rules.
    rules = [{"record": f"dashboard:query_{i}", "expr": as_promql(expr)}
             for i, (_, expr) in enumerate(dashboard_exprs(load_dashboard()))]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    result = run([prometheus_tools["promtool"], "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


# --- integration: a real Prometheus scraping the session's TorchServe ----------

SCRAPE_SECONDS = 1
WAIT_SECONDS = 60


class Prometheus:
    """A Prometheus server on a free loopback port, with the project's rules."""

    def __init__(self, binary: str, workdir: Path, metrics_target: str) -> None:
        from lizaalert_tagger.ops.runtime import free_port

        self.workdir = workdir
        self.url = f"http://127.0.0.1:{free_port()}"
        config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
        config["global"].update(scrape_interval=f"{SCRAPE_SECONDS}s", evaluation_interval=f"{SCRAPE_SECONDS}s")
        (job,) = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
        job.update(scrape_interval=f"{SCRAPE_SECONDS}s", scrape_timeout=f"{SCRAPE_SECONDS}s")
        job["static_configs"][0]["targets"] = [metrics_target]
        # The shipped rules, with every group evaluated at the test's interval.
        rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
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
def prometheus(prometheus_tools, server, tmp_path_factory):
    target = server.metrics_url.split("://", 1)[1]
    prom = Prometheus(prometheus_tools["prometheus"], tmp_path_factory.mktemp("prometheus"), target)
    try:
        prom.start()
        wait_for(lambda: prom.query(f'up{{job="{JOB}"}} == 1'), f"successful scrape of {target}")
        yield prom
    finally:
        prom.stop()


REQUESTS_QUERY = f'sum(ts_inference_requests_total{{job="{JOB}"}})'
TIME_OF_DAY_QUERY = f'sum(lizaalert_tag_predictions{{job="{JOB}", attribute="time_of_day"}})'
REFUSED_QUERY = f'sum(lizaalert_images_refused{{job="{JOB}", reason="not_an_image"}})'


@pytest.mark.integration
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


@pytest.mark.integration
def test_rules_evaluate_on_real_series(prometheus, server):
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
    assert len(rules) == len(load_rules())
    broken = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert not broken
    for record in ("lizaalert:prediction_requests:rate5m", "lizaalert:handled_requests:rate5m",
                   "lizaalert:http_responses:rate5m", 'lizaalert:tag_share:1h{attribute="time_of_day"}'):
        assert wait_for(lambda: prometheus.query(record), f"series of {record}", timeout=30)
    alerts = prometheus.api("alerts")["alerts"]
    firing = [alert["labels"]["alertname"] for alert in alerts if alert["state"] == "firing"]
    assert "LizaAlertTaggerDown" not in firing and "LizaAlertTaggerNoWorkerAnswers" not in firing


@pytest.mark.integration
def test_dashboard_and_rule_metrics_exist_in_the_scrape(prometheus):
    """Every metric the dashboard and rules name is in Prometheus (5xx-only ones excepted); every panel query runs."""
    scraped = set(prometheus.api("label/__name__/values"))
    wanted = set()
    for _, expr in dashboard_exprs(load_dashboard()):
        wanted |= metric_names(as_promql(expr))
    for rule in load_rules():
        wanted |= metric_names(rule["expr"])
    wanted -= recorded_metrics()
    assert not wanted - scraped - EVENT_ONLY_METRICS, sorted(wanted - scraped)
    for _, expr in dashboard_exprs(load_dashboard()):
        prometheus.query(as_promql(expr))  # fails on a query error
    assert prometheus.query(as_promql(dashboard_exprs(load_dashboard())[0][1])), "no requests per second"
