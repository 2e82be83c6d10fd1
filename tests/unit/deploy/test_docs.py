"""docs/deploy.md and docs/scaling.md against the deployment files they describe."""
from __future__ import annotations

import re


def test_scaling_doc_keeps_placeholders_for_benchmark_figures(root):
    text = (root / "docs" / "scaling.md").read_text()
    assert re.findall(r"<!-- bench: [^>]+-->", text), "benchmark placeholders are missing"


def test_the_gateway_is_gone(root):
    assert not (root / "deploy" / "gateway").exists()
    for path in [*(root / "deploy").rglob("*.yaml"), root / "Dockerfile", root / ".dockerignore",
                 root / "docs" / "deploy.md", root / "docs" / "scaling.md"]:
        assert "token_gateway" not in path.read_text(), f"{path} still mentions the token gateway"


def test_docs_name_the_files_and_paths_that_exist(root, nginx_template, containers):
    deploy_md = (root / "docs" / "deploy.md").read_text()
    for path in re.findall(r"`((?:deploy|src|models|tests)/[\w./-]+)`", deploy_md):
        assert (root / path.rstrip("/")).exists(), f"docs/deploy.md names {path}, which does not exist"
    # The paths and Secret keys the doc promises are the template's and the Deployment's.
    for path in ("/readyz", "/livez", "/ping"):
        assert f"location = {path} " in nginx_template and f"`GET {path}`" in deploy_md
    keys = {e["valueFrom"]["secretKeyRef"]["key"] for e in containers["nginx"]["env"] if "valueFrom" in e}
    assert keys == {"inference-token", "inference-token-next"}
    for key in keys:
        assert f"--from-literal={key}=" in deploy_md
    assert "kubectl -n $NS apply -k deploy/kserve" in deploy_md and "apply -k deploy/k8s" in deploy_md
