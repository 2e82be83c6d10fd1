"""deploy/k8s: strict schema validation, and that the pieces agree with each other, with the
image and with the nginx sidecar's template (deploy/nginx)."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

NGINX_IMAGE = re.compile(r"^nginx:\d+\.\d+\.\d+-alpine$")  # the official image, pinned to a release


def container_ports(spec: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for c in spec["containers"] for p in c.get("ports", []) if "name" in p}


def template_variables(template: str) -> set[str]:
    return set(re.findall(r"\$\{(TAGGER_\w+)\}", template))


def test_every_manifest_validates_strictly(kubernetes_validate, k8s_dir, k8s_core_files, k8s_versions, load_yaml):
    for name in k8s_core_files:
        for version in k8s_versions:
            kubernetes_validate.validate(load_yaml(k8s_dir / name), version, strict=True)


def test_validation_catches_a_misspelt_field(kubernetes_validate, k8s_dir, k8s_versions, load_yaml):
    broken = load_yaml(k8s_dir / "deployment.yaml")
    nginx = next(c for c in broken["spec"]["template"]["spec"]["containers"] if c["name"] == "nginx")
    nginx["readinesProbe"] = nginx.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, k8s_versions[-1], strict=True)


def test_selectors_and_targets_agree(manifests):
    deployment = manifests["deployment.yaml"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [
        deployment["spec"]["selector"]["matchLabels"],
        manifests["service.yaml"]["spec"]["selector"],
        manifests["pdb.yaml"]["spec"]["selector"]["matchLabels"],
        manifests["networkpolicy.yaml"]["spec"]["podSelector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= pod_labels.items()
    target = manifests["hpa.yaml"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert manifests["hpa.yaml"]["spec"]["minReplicas"] >= 2
    assert manifests["pdb.yaml"]["spec"]["maxUnavailable"] < manifests["hpa.yaml"]["spec"]["minReplicas"]


def test_service_reaches_nginx_not_torchserve(manifests, pod_spec, containers, pod_config):
    ports = container_ports(pod_spec)
    service_ports = {p["name"]: p for p in manifests["service.yaml"]["spec"]["ports"]}
    assert {n: p["port"] for n, p in service_ports.items()} == {"inference": 8080, "metrics": 8082}
    assert service_ports["inference"]["targetPort"] == "http" and ports["http"] == 9080
    assert "http" in {p["name"] for p in containers["nginx"]["ports"]}
    assert service_ports["metrics"]["targetPort"] == "metrics" and ports["metrics"] == 8082
    assert "metrics" in {p["name"] for p in containers["torchserve"]["ports"]}
    # TorchServe's own APIs are on the pod's loopback: no port of the pod, no port of the Service.
    for key in ("inference_address", "management_address"):
        assert pod_config[key].startswith("http://127.0.0.1:")
        assert int(pod_config[key].rsplit(":", 1)[1]) not in ports.values()
    assert pod_config["metrics_address"] == f"http://0.0.0.0:{ports['metrics']}"


def test_network_policy_admits_clients_to_nginx_and_prometheus_to_metrics(manifests, pod_spec):
    rules = manifests["networkpolicy.yaml"]["spec"]["ingress"]
    by_port = {p["port"]: rule for rule in rules for p in rule["ports"]}
    assert set(by_port) == {"http", "metrics"}
    assert set(by_port) <= set(container_ports(pod_spec))
    assert "from" not in by_port["http"]  # any client; the token decides
    sources = by_port["metrics"]["from"]
    assert {"kubernetes.io/metadata.name": "monitoring"} in [s.get("namespaceSelector", {}).get("matchLabels") for s in sources]
    assert all("ipBlock" not in s for s in sources)


def test_pod_matches_the_image(pod_spec, containers, dockerfile):
    user, group = (int(x) for x in dockerfile.runtime("USER")[-1].args.split(":"))
    assert (pod_spec["securityContext"]["runAsUser"], pod_spec["securityContext"]["runAsGroup"]) == (user, group)
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    torchserve = containers["torchserve"]
    assert "command" not in torchserve, "tini stays the ENTRYPOINT"
    cmd = dockerfile.exec_form(dockerfile.runtime("CMD")[-1].args)
    pod_cmd = [*cmd]
    pod_cmd[cmd.index("--ts-config") + 1] = "/opt/tagger/pod.properties"
    assert torchserve["args"] == pod_cmd, "the image's CMD with the pod's config"
    mounts = {m["mountPath"] for m in torchserve["volumeMounts"]}
    assert dockerfile.runtime("WORKDIR")[-1].args in mounts and dockerfile.env()["TEMP"] in mounts
    assert torchserve["image"].split(":")[0] == "lizaalert-tagger"
    assert NGINX_IMAGE.match(containers["nginx"]["image"]), containers["nginx"]["image"]
    assert set(containers) == {"torchserve", "nginx"}
    for container in pod_spec["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]


def test_resources_follow_the_sizing(containers):
    resources = containers["torchserve"]["resources"]
    assert resources["requests"] == {"cpu": "2", "memory": "3Gi"}
    assert resources["limits"] == {"memory": "4Gi"}, "memory limit only: no CPU quota"
    assert "cpu" not in containers["nginx"]["resources"].get("limits", {})


def test_nginx_gets_the_template_the_secret_and_writable_directories(pod_spec, containers, pod_config, nginx_template,
                                                                     nginx_dir, load_yaml):
    nginx = containers["nginx"]
    env = {e["name"]: e for e in nginx["env"]}
    # The image's envsubst replaces only these: every variable of the template, and nothing else.
    assert env["NGINX_ENVSUBST_FILTER"]["value"] == "^TAGGER_"
    tagger_env = {name for name in env if name.startswith("TAGGER_")}
    assert tagger_env == template_variables(nginx_template) == {"TAGGER_LISTEN", "TAGGER_TORCHSERVE", "TAGGER_TOKEN", "TAGGER_TOKEN_NEXT"}
    secrets = {name: env[name]["valueFrom"]["secretKeyRef"] for name in ("TAGGER_TOKEN", "TAGGER_TOKEN_NEXT")}
    assert {s["name"] for s in secrets.values()} == {"lizaalert-tagger-tokens"}
    assert [secrets["TAGGER_TOKEN"]["key"], secrets["TAGGER_TOKEN_NEXT"]["key"]] == ["inference-token", "inference-token-next"]
    assert not any(s.get("optional") for s in secrets.values()), "a missing token must stop the pod, not open it"
    # nginx listens on the declared port and forwards to TorchServe's inference API on the loopback.
    assert env["TAGGER_LISTEN"]["value"] == str(container_ports(pod_spec)["http"])
    assert "http://" + env["TAGGER_TORCHSERVE"]["value"] == pod_config["inference_address"]
    # Files: the template and nginx.conf from the ConfigMap that deploy/nginx generates, the rest in emptyDirs.
    mounts = {m["mountPath"]: m for m in nginx["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    generator = load_yaml(nginx_dir / "kustomization.yaml")["configMapGenerator"]
    assert [g["name"] for g in generator] == ["lizaalert-tagger-nginx"]
    assert set(generator[0]["files"]) == {"nginx.conf", "tagger.conf.template"}
    for name in generator[0]["files"]:
        assert (nginx_dir / name).is_file()
    templates = volumes[mounts["/etc/nginx/templates"]["name"]]["configMap"]
    assert templates["name"] == "lizaalert-tagger-nginx"
    assert [i["path"] for i in templates["items"]] == ["tagger.conf.template"]
    main = mounts["/etc/nginx/nginx.conf"]
    assert main["subPath"] == "nginx.conf" and volumes[main["name"]]["configMap"]["name"] == "lizaalert-tagger-nginx"
    for path in ("/etc/nginx/conf.d", "/tmp"):
        assert "emptyDir" in volumes[mounts[path]["name"]], f"nginx writes {path}"
    args = nginx["args"]
    assert args[0] == "nginx" and args[args.index("-p") + 1] == "/tmp/" and "daemon off;" in args[args.index("-g") + 1]


def test_probes_need_no_token(pod_spec, containers, nginx_template, healthcheck, pod_config):
    ports = container_ports(pod_spec)
    probes = [(c["name"], kind, c[kind]) for c in pod_spec["containers"]
              for kind in ("startupProbe", "readinessProbe", "livenessProbe") if kind in c]
    assert {(name, kind) for name, kind, _ in probes} >= {
        ("torchserve", "startupProbe"), ("torchserve", "livenessProbe"), ("nginx", "readinessProbe"), ("nginx", "livenessProbe")}
    for name, kind, probe in probes:
        if "httpGet" in probe:
            port = probe["httpGet"]["port"]
            assert port in ports, f"{name} {kind} uses an undeclared port {port}"
    nginx = containers["nginx"]
    for kind, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        assert nginx[kind]["httpGet"] == {"path": path, "port": "http"}
        block = re.search(r"location = " + re.escape(path) + r" \{(.*?)\n    \}", nginx_template, re.S).group(1)
        assert "tagger_authorized" not in block, f"{path} is a probe: no token"
    assert "proxy_pass http://tagger_torchserve/ping;" in re.search(r"location = /readyz \{(.*?)\n    \}", nginx_template, re.S).group(1)
    # Started = the project's readiness check, against TorchServe's loopback ports with tokens off.
    startup = containers["torchserve"]["startupProbe"]["exec"]["command"]
    assert startup == ["python", "/opt/tagger/healthcheck.py", "--tokens-off"]
    assert healthcheck.DEFAULT_INFERENCE_URL == pod_config["inference_address"]
    assert healthcheck.DEFAULT_MANAGEMENT_URL == pod_config["management_address"]
    assert containers["torchserve"]["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}


def test_kustomization_lists_the_core_manifests_the_nginx_config_and_the_image(k8s_dir, k8s_core_files, load_yaml):
    kustomization = load_yaml(k8s_dir / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted([*k8s_core_files, "../nginx"])
    on_disk = {p.name for p in k8s_dir.glob("*.yaml")} - {"kustomization.yaml", "servicemonitor.yaml"}
    assert on_disk == set(k8s_core_files)
    assert [i["name"] for i in kustomization["images"]] == ["lizaalert-tagger"]


def test_kustomize_writes_the_hashed_configmap_name_into_the_deployment(k8s_dir):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed; not a pinned requirement")
    result = subprocess.run([kubectl, "kustomize", str(k8s_dir)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(result.stdout)}
    configmap = docs["ConfigMap"]["metadata"]["name"]
    assert re.fullmatch(r"lizaalert-tagger-nginx-[a-z0-9]{10}", configmap)
    used = {v["configMap"]["name"] for v in docs["Deployment"]["spec"]["template"]["spec"]["volumes"] if "configMap" in v}
    assert used == {configmap}
    assert docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"].startswith("registry.example.org/")


def test_service_monitor_scrapes_the_services_metrics_port(manifests, k8s_dir, root, load_yaml):
    # A CRD (monitoring.coreos.com): kubernetes-validate has no schema for it, so check its structure here.
    monitor = load_yaml(k8s_dir / "servicemonitor.yaml")
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    assert set(monitor["spec"]) == {"jobLabel", "selector", "endpoints"}
    service = manifests["service.yaml"]
    # The alert rules select the job name of the project's scrape config; the operator takes it from jobLabel.
    scrape = load_yaml(root / "deploy" / "prometheus" / "prometheus.yml")
    job_names = {job["job_name"] for job in scrape["scrape_configs"]}
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] in job_names
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    metrics_port = next(p for p in service["spec"]["ports"] if p["name"] == "metrics")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
    assert endpoint["port"] == metrics_port["name"] and endpoint["path"] == "/metrics"
    annotations = manifests["deployment.yaml"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(metrics_port["port"])

