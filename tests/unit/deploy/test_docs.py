"""The documentation against the repository: the README is a door to docs/, and every link, path and
module the pages name exists (the package is refactored under them), and docs/deploy.md and
docs/scaling.md against the deployment files they describe."""
from __future__ import annotations

import re
from pathlib import Path

# The directories of the repository a page may name a path in (built or run-time ones, such as
# model_store/, run/ and build/, are not checked).
REPO_DIRS = ("deploy", "docs", "examples", "handler", "models", "scripts", "src", "tests")
README_MAX_LINES = 200
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")
REPO_PATH = re.compile(rf"(?<![\w./~$-])((?:{'|'.join(REPO_DIRS)})/[\w./-]*)")
MODULE = re.compile(r"(?<![\w./-])lizaalert_tagger(?:\.\w+)+")
FILE_SUFFIXES = ("mar", "json", "yaml", "yml", "md", "py", "png")  # lizaalert_tagger.mar is a file, not a module
PY_NAME = re.compile(r"`([\w-]+\.py)\b")


def pages(root: Path) -> list[Path]:
    """Every page of the documentation: the README, docs/, BENCHMARKS.md and SECURITY.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md")), root / "BENCHMARKS.md", root / "SECURITY.md"]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, no punctuation, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", FENCE.sub("", page.read_text()), re.M):
        base, n = slug(heading), 0
        while (name := base if n == 0 else f"{base}-{n}") in found:
            n += 1
        found.add(name)
    return found


def test_the_readme_is_a_door(root):
    readme = (root / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES, "README.md grew past a door: move the detail into docs/"
    linked = {target.split("#")[0] for target in LINK.findall(readme)}
    missing = [f"docs/{p.name}" for p in sorted((root / "docs").glob("*.md")) if f"docs/{p.name}" not in linked]
    assert not missing, f"README.md does not link to {missing}"
    for command in ("make serve", "make test", "Python 3.11", "Java 17", "**Served score**"):
        assert command in readme, f"README.md lost {command!r}"


def test_every_relative_link_and_its_anchor_exist(root):
    broken = []
    for page in pages(root):
        for target in LINK.findall(FENCE.sub("", page.read_text())):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.relative_to(root)} links to {target}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{page.relative_to(root)} links to {target}: {linked.name} has no such heading")
    assert not broken, "\n".join(broken)


def test_every_repo_path_module_and_script_named_exists(root):
    src = root / "src"
    scripts = {p.name for d in ("src", "handler", "scripts", "deploy", "tests") for p in (root / d).rglob("*.py")}
    missing = []
    for page in pages(root):
        text, name = page.read_text(), page.relative_to(root)
        for path in REPO_PATH.findall(text):
            if not (root / path.rstrip("./")).exists():
                missing.append(f"{name} names {path}, which does not exist")
        for dotted in MODULE.findall(text):
            if dotted.rsplit(".", 1)[1] in FILE_SUFFIXES:
                continue
            if not _module_or_attribute_exists(src, dotted.split(".")):
                missing.append(f"{name} names {dotted}, which is not a module or one of its names")
        for script in PY_NAME.findall(text):
            if script not in scripts:
                missing.append(f"{name} names {script}, and no file in the repository has that name")
    assert not missing, "\n".join(missing)


def _module_or_attribute_exists(src: Path, parts: list[str]) -> bool:
    """``a.b.c`` is a module or package under ``src``, or ``a.b`` is one and defines or imports ``c``."""
    path = src
    for i, part in enumerate(parts):
        if (path / part).is_dir():
            path = path / part
            continue
        if (path / f"{part}.py").exists():
            path = path / f"{part}.py"
            continue
        if i != len(parts) - 1:
            return False
        module = path / "__init__.py" if path.is_dir() else path
        pattern = rf"^(?:def|class)\s+{part}\b|^{part}\s*[:=]|^\s*(?:from\s+\S+\s+)?import\b.*\b{part}\b"
        return module.is_file() and re.search(pattern, module.read_text(), re.M) is not None
    return True


def test_scaling_doc_keeps_placeholders_for_benchmark_figures(root):
    text = (root / "docs" / "scaling.md").read_text()
    assert re.findall(r"<!-- bench: [^>]+-->", text), "benchmark placeholders are missing"


def test_the_gateway_is_gone(root):
    assert not (root / "deploy" / "gateway").exists()
    for path in [*(root / "deploy").rglob("*.yaml"), root / "Dockerfile", root / ".dockerignore",
                 root / "docs" / "deploy.md", root / "docs" / "scaling.md"]:
        assert "token_gateway" not in path.read_text(), f"{path} still mentions the token gateway"


def test_deploy_doc_promises_what_the_template_and_the_deployment_do(root, nginx_template, containers):
    deploy_md = (root / "docs" / "deploy.md").read_text()
    # The paths and Secret keys the doc promises are the template's and the Deployment's.
    for path in ("/readyz", "/livez", "/ping"):
        assert f"location = {path} " in nginx_template and f"`GET {path}`" in deploy_md
    keys = {e["valueFrom"]["secretKeyRef"]["key"] for e in containers["nginx"]["env"] if "valueFrom" in e}
    assert keys == {"inference-token", "inference-token-next"}
    for key in keys:
        assert f"--from-literal={key}=" in deploy_md
    assert "kubectl -n $NS apply -k deploy/k8s" in deploy_md and "apply -k deploy/k8s" in deploy_md
