"""The nginx sidecar (deploy/nginx): the template's promises, read from the files (nginx in front of
a real TorchServe: tests/integration/test_nginx_proxy.py)."""
from __future__ import annotations

import re


def directive_values(text: str, name: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"^\s*{name}\s+([^;]*);", text, re.M)]


# --- the files ------------------------------------------------------------------------------


def test_body_limit_is_torchserves_max_request_size(nginx_template, project_config):
    assert directive_values(nginx_template, "client_max_body_size") == [project_config["max_request_size"]]


def test_connections_to_torchserve_are_kept_alive(nginx_template):
    upstream = re.search(r"upstream tagger_torchserve \{(.*?)\n\}", nginx_template, re.S).group(1)
    assert directive_values(upstream, "server") == ["${TAGGER_TORCHSERVE}"]
    assert int(directive_values(upstream, "keepalive")[0]) > 0
    assert directive_values(nginx_template, "proxy_http_version") == ["1.1"]
    headers = directive_values(nginx_template, "proxy_set_header")
    assert 'Connection ""' in headers, "no 'Connection: close' upstream"
    assert 'Authorization ""' in headers, "the client's token stops at nginx"
    assert set(re.findall(r"proxy_pass (http://[^/;]+)", nginx_template)) == {"http://tagger_torchserve"}


def test_tokens_are_compared_case_sensitively(nginx_template):
    # A map's string keys match case-insensitively: the tokens are compared with `if ... =` instead.
    for variable in ("TAGGER_TOKEN", "TAGGER_TOKEN_NEXT"):
        assert f'if ($tagger_client_token = "${{{variable}}}")' in nginx_template
        assert not re.search(rf'^\s*"[^"]*\$\{{{variable}\}}[^"]*"\s+\S+;', nginx_template, re.M), "no token as a map key"


def test_main_config_runs_unprivileged_under_any_prefix(nginx_dir):
    text = (nginx_dir / "nginx.conf").read_text()
    assert not directive_values(text, "user"), "no user to switch to without root"
    for name in ("pid", "client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path"):
        (value,) = directive_values(text, name)
        assert not value.startswith("/"), f"{name} must be relative to the prefix (-p)"
    assert directive_values(text, "include") == ["conf.d/*.conf"]
