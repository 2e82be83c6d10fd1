"""deploy/kserve: KServe v1beta1 fields, a valid pod, and the same pod as deploy/k8s."""
from __future__ import annotations

import copy
import re
import shutil
import subprocess

import pytest
import yaml

# Fields of serving.kserve.io/v1beta1 PredictorSpec (kserve's python/kserve/kserve/models/
# v1beta1_predictor_spec.py, attribute_map): the kserve SDK itself is not installed, because it
# would replace this project's pinned psutil and pull in pandas, grpc and fastapi.
KSERVE_PREDICTOR_FIELDS = {
    "activeDeadlineSeconds", "affinity", "annotations", "autoScaling", "automountServiceAccountToken", "batcher",
    "canaryTrafficPercent", "containerConcurrency", "containers", "deploymentStrategy", "dnsConfig", "dnsPolicy",
    "enableServiceLinks", "ephemeralContainers", "hostAliases", "hostIPC", "hostNetwork", "hostPID", "hostUsers",
    "hostname", "hostnameOverride", "huggingface", "imagePullSecrets", "initContainers", "labels", "lightgbm",
    "logger", "maxReplicas", "minReplicas", "model", "nodeName", "nodeSelector", "onnx", "os", "overhead", "paddle",
    "pmml", "preemptionPolicy", "priority", "priorityClassName", "pytorch", "readinessGates", "resourceClaims",
    "resources", "restartPolicy", "runtimeClassName", "scaleMetric", "scaleMetricType", "scaleTarget",
    "schedulerName", "schedulingGates", "securityContext", "serviceAccount", "serviceAccountName",
    "setHostnameAsFQDN", "shareProcessNamespace", "sklearn", "storageUris", "subdomain", "tensorflow",
    "terminationGracePeriodSeconds", "timeout", "tolerations", "topologySpreadConstraints", "triton", "volumes",
    "workerSpec", "xgboost",
}
# PredictorSpec fields that are KServe's own, not the pod's.
KSERVE_COMPONENT_FIELDS = {"minReplicas", "maxReplicas", "scaleMetric", "scaleMetricType", "scaleTarget", "annotations",
                           "labels", "canaryTrafficPercent", "containerConcurrency", "timeout", "batcher", "logger",
                           "autoScaling", "deploymentStrategy", "workerSpec", "storageUris", "serviceAccount"}


def test_inference_service_uses_kserve_v1beta1_fields(isvc):
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert set(isvc) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(isvc["spec"]) <= {"predictor", "transformer", "explainer"}
    predictor = isvc["spec"]["predictor"]
    assert set(predictor) <= KSERVE_PREDICTOR_FIELDS, f"not KServe fields: {set(predictor) - KSERVE_PREDICTOR_FIELDS}"
    assert not {"pytorch", "model"} & set(predictor), "a custom container, not KServe's TorchServe runtime"
    assert predictor["scaleMetric"] in ("cpu", "memory", "concurrency", "rps")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"


def test_inference_service_pod_part_is_a_valid_pod(isvc, kubernetes_validate, k8s_versions):
    predictor = isvc["spec"]["predictor"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"},
           "spec": {k: v for k, v in predictor.items() if k not in KSERVE_COMPONENT_FIELDS}}
    for version in k8s_versions:
        kubernetes_validate.validate(pod, version, strict=True)


def test_inference_service_matches_the_deployment(isvc, containers, pod_spec, k8s_dir, load_yaml):
    predictor = isvc["spec"]["predictor"]
    by_name = {c["name"]: c for c in predictor["containers"]}
    assert list(by_name) == ["kserve-container", "transformer-container"]  # KServe's names for collocation
    # KServe's Service targets the transformer-container's first port: nginx's.
    assert by_name["transformer-container"]["ports"][0]["containerPort"] == 9080
    for ours, theirs in (("kserve-container", "torchserve"), ("transformer-container", "nginx")):
        a, b = copy.deepcopy(by_name[ours]), copy.deepcopy(containers[theirs])
        for c in (a, b):
            for key in ("name", "image", "ports"):
                c.pop(key, None)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe in c and "httpGet" in c[probe]:
                    c[probe]["httpGet"].pop("port")
        assert a == b, f"{ours} differs from the Deployment's {theirs}"
    assert by_name["transformer-container"]["image"] == containers["nginx"]["image"]
    assert predictor["volumes"] == pod_spec["volumes"]
    assert predictor["securityContext"] == pod_spec["securityContext"]
    assert by_name["kserve-container"]["image"].rsplit(":", 1)[1] == load_yaml(k8s_dir / "kustomization.yaml")["images"][0]["newTag"]


def test_kserve_kustomization_brings_the_nginx_configmap(root, load_yaml):
    kserve = root / "deploy" / "kserve"
    kustomization = load_yaml(kserve / "kustomization.yaml")
    assert kustomization["resources"] == ["inferenceservice.yaml", "../nginx"]
    config = load_yaml(kserve / kustomization["configurations"][0])
    (reference,) = config["nameReference"]
    assert reference["kind"] == "ConfigMap"
    assert {"kind": "InferenceService", "group": "serving.kserve.io",
            "path": "spec/predictor/volumes/configMap/name"} in reference["fieldSpecs"]


def test_kustomize_writes_the_hashed_configmap_name_into_the_inference_service(root):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed; not a pinned requirement")
    result = subprocess.run([kubectl, "kustomize", str(root / "deploy" / "kserve")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(result.stdout)}
    configmap = docs["ConfigMap"]["metadata"]["name"]
    assert re.fullmatch(r"lizaalert-tagger-nginx-[a-z0-9]{10}", configmap)
    used = {v["configMap"]["name"] for v in docs["InferenceService"]["spec"]["predictor"]["volumes"] if "configMap" in v}
    assert used == {configmap}
