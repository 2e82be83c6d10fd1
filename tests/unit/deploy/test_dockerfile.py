"""The Dockerfile and .dockerignore, without Docker: stages, pins, COPY sources, the builder's
archive step, the runtime's user and command, hadolint."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

# hadolint rules ignored inline in the Dockerfile, each with its reason (also a comment there).
JUSTIFIED_HADOLINT_IGNORES = {
    "DL3008": "Debian removes a JRE version from the archive when its security update lands; a pin breaks the build",
}


def test_stages_are_deps_builder_runtime(dockerfile):
    froms = [i.args for i in dockerfile.instructions if i.keyword == "FROM"]
    assert [f.split()[-1] for f in froms] == ["deps", "builder", "runtime"]
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", dockerfile.text).group(1)
    assert base.startswith("python:3.11-slim"), base


def test_every_copy_source_exists_and_passes_dockerignore(dockerfile, dockerignore, root):
    sources = [src for ins in dockerfile.instructions if ins.keyword == "COPY" for src in ins.copy_sources()]
    assert sources, "no COPY from the build context found"
    for src in sources:
        path = root / src
        assert path.exists(), f"COPY source {src} does not exist in the repo"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        for f in files:
            rel = f.relative_to(root).as_posix()
            assert not dockerignore.excludes(rel), f"{rel} is copied but .dockerignore leaves it out"


def test_dockerignore_keeps_the_heavy_and_secret_things_out(dockerignore):
    for path in (".venv/bin/python", "model_store/lizaalert_tagger.mar", "run/key_file.json", ".git/HEAD",
                 "build/default/weights.pt", "tests/unit/deploy/test_dockerfile.py", "handler/__pycache__/x.pyc",
                 "src/lizaalert_tagger/__pycache__/client.cpython-311.pyc", "deploy/k8s/deployment.yaml",
                 "deploy/nginx/tagger.conf.template"):
        assert dockerignore.excludes(path), f"{path} would be sent to the builder"


def test_builder_builds_the_archive_from_the_shipped_weights_without_training(dockerfile):
    builder = dockerfile.stage("builder")
    copied = {src.rstrip("/") for ins in builder if ins.keyword == "COPY" for src in ins.copy_sources()}
    # What lizaalert-default-model needs: the package (and its metadata), the handler, the weights.
    assert {"handler", "src", "pyproject.toml", "README.md", "models", "metrics.yaml"} <= copied
    assert not any(src.startswith("scripts") for src in copied), "the scripts/ modules are the package now"
    runs = " && ".join(i.args for i in builder if i.keyword == "RUN")
    assert "lizaalert-default-model" in runs
    default_model_run = next(i.args for i in builder if i.keyword == "RUN" and "lizaalert-default-model" in i.args)
    assert "--train" not in default_model_run and "--untrained" not in default_model_run
    for training in ("lizaalert-train", "train.py", "lizaalert-scenes", "build_default.py"):
        assert training not in runs, f"the builder must not train ({training})"
    # The package is installed before the archive step runs its console script.
    assert re.search(r"pip install .*--no-deps .*\s\.(\s|$)", default_model_run)
    assert dockerfile.env("builder").get("LIZAALERT_HOME") == next(
        i.args for i in builder if i.keyword == "WORKDIR"), "the archive step finds the project in the WORKDIR"
    archive_copy = [i for i in dockerfile.runtime("COPY") if "--from=builder" in i.args and ".mar" in i.args]
    assert archive_copy and "/src/model_store/lizaalert_tagger.mar" in archive_copy[0].args


def test_runtime_installs_the_project_package_without_its_dependencies(dockerfile):
    sources = {src.rstrip("/") for ins in dockerfile.runtime("COPY") for src in ins.copy_sources()}
    assert {"pyproject.toml", "README.md", "src"} <= sources
    install = [i.args for i in dockerfile.runtime("RUN") if "pip install" in i.args]
    assert install and all("--no-deps" in a for a in install), "the runtime venv's packages come from the deps stage only"
    # The health check is a TaggerClient: the client's imports are in the runtime venv.
    deps = dockerfile.pip_pins("deps")
    assert {"requests", "urllib3"} <= set(deps)


def test_dockerfile_pins_match_requirements(dockerfile, requirement_pins, pin_drift):
    assert pin_drift(dockerfile.text, requirement_pins) == []
    pins = dockerfile.pip_pins()
    for name in ("torch", "torchvision", "torchserve", "pyyaml", "pillow", "numpy", "psutil"):
        assert name in dockerfile.pip_pins("deps"), f"{name} is not installed in the runtime venv"
    # The builder (not shipped) installs requirements.txt itself, torch-model-archiver included.
    builder_pip = [i.args for i in dockerfile.stage("builder", "RUN") if "pip install" in i.args]
    assert any("--requirement /tmp/requirements.txt" in a for a in builder_pip)
    assert "torch-model-archiver" in requirement_pins
    assert pins["torch"].endswith("+cpu") and pins["torchvision"].endswith("+cpu")
    for ins in dockerfile.instructions:
        if ins.keyword == "RUN" and "pip install" in ins.args:
            assert "--constraint /tmp/requirements.txt" in ins.args, f"pip install without the constraint: {ins.args[:80]}"
    torch_run = next(i.args for i in dockerfile.instructions if "torch==" in i.args)
    assert "https://download.pytorch.org/whl/cpu" in torch_run
    copies = [i.args.split() for i in dockerfile.instructions if i.keyword == "COPY"]
    assert ["requirements.txt", "/tmp/requirements.txt"] in copies


def test_pin_drift_is_detected(dockerfile, requirement_pins, pin_drift):
    text = dockerfile.text
    drifted = text.replace(f"torch=={requirement_pins['torch']}+cpu", "torch==2.13.0+cpu")
    assert drifted != text
    assert pin_drift(drifted, requirement_pins) == [f"torch==2.13.0+cpu but requirements.txt has {requirement_pins['torch']}"]
    unknown = text.replace("psutil==", "psutilx==")
    assert any("psutilx" in p for p in pin_drift(unknown, requirement_pins))


def test_runtime_runs_torchserve_in_the_foreground_as_a_non_root_user(dockerfile):
    users = dockerfile.runtime("USER")
    assert users and users[-1].args == "10001:10001"
    entrypoint = dockerfile.exec_form(dockerfile.runtime("ENTRYPOINT")[-1].args)
    cmd = dockerfile.exec_form(dockerfile.runtime("CMD")[-1].args)
    assert entrypoint == ["tini", "-g", "--"]
    assert cmd[:2] == ["torchserve", "--foreground"] and "--ncs" in cmd
    config = cmd[cmd.index("--ts-config") + 1]
    log_config = cmd[cmd.index("--log-config") + 1]
    copied_to = {dest for ins in dockerfile.runtime("COPY") for dest in ins.copy_destinations()}
    assert Path(config) in copied_to and Path(log_config) in copied_to
    assert Path("/opt/tagger/pod.properties") in copied_to, "Kubernetes and KServe run the pod profile"
    env = dockerfile.env()
    workdir = dockerfile.runtime("WORKDIR")[-1].args
    assert env["TEMP"].startswith("/home/tagger/") and workdir.startswith("/home/tagger/")
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_the_image_configs_are_generated_from_the_one_config_properties(dockerfile, root):
    assert not (root / "deploy" / "docker" / "config.properties").exists(), "one source: the root config.properties"
    runs = [i.args for i in dockerfile.stage("builder", "RUN") if "lizaalert_tagger.ops.deploy_config" in i.args]
    generated = {m.group(1): m.group(2) for run in runs
                 for m in re.finditer(r"--profile (\w+) --source config\.properties --out (\S+)", run)}
    assert set(generated) == {"container", "pod"}
    copied = [i.words for i in dockerfile.runtime("COPY") if "--from=builder" in i.args]
    for path in generated.values():
        assert any(path in words for words in copied), f"{path} is generated but not copied into the runtime"
    builder_sources = [src for ins in dockerfile.stage("builder", "COPY") for src in ins.copy_sources()]
    assert "config.properties" in builder_sources
    runtime_sources = [src for ins in dockerfile.runtime("COPY") for src in ins.copy_sources()]
    assert not any(src.endswith(".properties") for src in runtime_sources), "configs come from the generator only"


def test_exposed_ports_are_the_container_configs(dockerfile, container_config):
    ports = {int(container_config[k].rsplit(":", 1)[1]) for k in ("inference_address", "management_address", "metrics_address")}
    exposed = {int(p) for i in dockerfile.runtime("EXPOSE") for p in i.args.split()}
    assert exposed == ports == {8080, 8081, 8082}


def test_hadolint_passes(hadolint, dockerfile_path, dockerfile, tmp_path):
    config = tmp_path / "hadolint.yaml"
    config.write_text("{}\n")  # no ignores from any config file: only the inline, justified ones
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "info", "--config", str(config), str(dockerfile_path)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    ignored = {rule for line in dockerfile.text.splitlines()
               if (m := re.match(r"\s*#\s*hadolint\s+ignore=(\S+)", line)) for rule in m.group(1).split(",")}
    assert ignored <= set(JUSTIFIED_HADOLINT_IGNORES), f"unjustified hadolint ignores: {ignored - set(JUSTIFIED_HADOLINT_IGNORES)}"


def test_docs_publish_ports_on_loopback_only(root):
    for path in (root / "Dockerfile", root / "docs" / "deploy.md"):
        published = re.findall(r"(?:\s-p|--publish)[ =](\S*\d+:\d+\S*)", path.read_text())
        assert published, f"no published port in {path.name}"
        for spec in published:
            assert spec.startswith("127.0.0.1:"), f"{path.name} publishes {spec} on every interface"


def test_container_log_config_writes_no_files(root):
    import xml.etree.ElementTree as ElementTree

    tree = ElementTree.parse(root / "deploy" / "docker" / "log4j2.xml")  # Java rejects "--" in comments; so does expat
    appenders = [child.tag for child in tree.getroot().find("Appenders")]
    assert appenders == ["Console"]
