"""Monitoring files without a server: the Prometheus scrape config and rules, the Grafana dashboard.

Every query must name only metrics TorchServe exports for us: those metrics.yaml declares,
TorchServe's ts_* frontend counters, Prometheus' own ``up``, and the rules' recorded series.
promtool and a real Prometheus scraping a real TorchServe are in tests/integration/test_monitoring.py.
"""
from __future__ import annotations

import yaml

# TorchServe's frontend counters (declared in metrics.yaml too, but exported by the frontend
# whatever the handler does) and Prometheus' per-target series.
TS_FRONTEND_METRICS = {"ts_inference_requests_total", "ts_inference_latency_microseconds", "ts_queue_latency_microseconds"}
PROMETHEUS_SERIES = {"up"}


def test_metric_name_extraction(monitoring_files):
    expr = ('sum by (job, attribute) (increase(lizaalert_tag_predictions{attribute!="time_of_day"}[1h]))'
            ' / on (job) group_left lizaalert:tag_photos:1h > 0.3 and up{job="x"} == 0 or vector(0)'
            ' + max_over_time(HandlerTime[$__rate_interval]) * 1e3')
    assert monitoring_files.metric_names(expr) == {"lizaalert_tag_predictions", "lizaalert:tag_photos:1h", "up", "HandlerTime"}


def test_scrape_config_targets_the_default_metrics_port(monitoring_files):
    from lizaalert_tagger.ops.properties import read_properties

    config = yaml.safe_load(monitoring_files.prometheus_config.read_text(encoding="utf-8"))
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == monitoring_files.JOB]
    targets = [target for static in job["static_configs"] for target in static["targets"]]
    metrics_address = read_properties()["metrics_address"].split("://", 1)[1]
    assert targets == [metrics_address] == ["127.0.0.1:8082"]
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_every_alert_has_a_duration_severity_summary_and_description(monitoring_files):
    alerts = [rule for rule in monitoring_files.rules() if "alert" in rule]
    assert len(alerts) >= 5
    for rule in alerts:
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"].strip() and rule["annotations"]["description"].strip(), rule["alert"]
    names = {rule["alert"] for rule in alerts}
    assert {"LizaAlertTaggerServerErrorRatio", "LizaAlertTaggerDown", "LizaAlertTaggerNoWorkerAnswers",
            "LizaAlertTaggerRequestsRejected", "LizaAlertTaggerMeanLatencyHigh", "LizaAlertTagShareShift"} <= names


def test_rules_reference_only_exported_metrics(monitoring_files):
    known = (monitoring_files.declared_metrics() | TS_FRONTEND_METRICS | PROMETHEUS_SERIES
             | monitoring_files.recorded_metrics())
    for rule in monitoring_files.rules():
        names = monitoring_files.metric_names(rule["expr"])
        assert names, rule
        unknown = names - known
        assert not unknown, f"{rule.get('alert') or rule.get('record')} uses unknown metrics {unknown}"


def test_dashboard_panels_have_titles_and_queries(monitoring_files):
    dashboard = monitoring_files.dashboard()
    assert dashboard["schemaVersion"] >= 36 and dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = monitoring_files.panels()
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


def test_dashboard_queries_use_only_exported_metrics(monitoring_files):
    known = monitoring_files.declared_metrics() | TS_FRONTEND_METRICS | PROMETHEUS_SERIES  # raw metrics: no recording rules needed
    used = set()
    for title, expr in monitoring_files.dashboard_exprs():
        names = monitoring_files.metric_names(expr)
        assert names, (title, expr)
        assert not names - known, f"panel {title!r} uses unknown metrics {names - known}"
        used |= names
    handler_metrics = {name for name in monitoring_files.declared_metrics() if name.startswith("lizaalert_")}
    assert handler_metrics <= used, f"handler metrics not on the dashboard: {handler_metrics - used}"
