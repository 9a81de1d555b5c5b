"""deploy/ checked offline, as far as that goes without a container engine or a cluster:
YAML lint, the compose file against the Compose Specification schema, the Kubernetes
manifests against Kubernetes' own schemas (strict: unknown fields refused), the Dockerfiles
with hadolint, and the places where the manifests must agree with finsentry's settings."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from finsentry.config import REPO_ROOT, load_settings
from stream.app import app_id

pytestmark = pytest.mark.unit

DEPLOY = REPO_ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
K8S = DEPLOY / "k8s"
# kustomization.yaml is kustomize's own format, not a Kubernetes resource.
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
DOCKERFILES = sorted((DEPLOY / "docker").glob("Dockerfile*"))
YAMLLINT = (
    "{extends: default, rules: {line-length: {max: 140}, document-start: disable, "
    "truthy: {check-keys: false}}}"
)


def tool(name: str) -> str:
    """A validator from the dev extra: beside this Python first (a venv need not be on PATH)."""
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return path


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"]["name"]: doc
        for path in MANIFESTS
        for doc in documents(path)
        if doc["kind"] == kind
    }


def test_every_yaml_file_passes_yamllint() -> None:
    files = [str(COMPOSE), *map(str, K8S.glob("*.yaml"))]
    result = run(tool("yamllint"), "--strict", "-d", YAMLLINT, *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_matches_the_compose_specification() -> None:
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_manifests_match_the_kubernetes_schemas() -> None:
    result = run(tool("kubernetes-validate"), "--strict", *map(str, MANIFESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    passed = result.stdout.count(" passed for resource ")
    resources = sum(len(documents(p)) for p in MANIFESTS)
    # The KEDA ScaledObject is a custom resource: no schema ships for it (checked below).
    assert passed == resources - 1, result.stdout + result.stderr


def test_dockerfiles_pass_hadolint() -> None:
    assert [p.name for p in DOCKERFILES] == ["Dockerfile", "Dockerfile.cuda"]
    result = run(tool("hadolint"), *map(str, DOCKERFILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_every_service_with_the_probes_it_serves() -> None:
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    assert set(services) == {
        "kafka",
        "postgres",
        "topics",
        "worker",
        "worker-gpu",
        "alerts",
        "dashboard",
        "scheduler",
    }
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    settings = load_settings()
    ports = {
        "worker": settings.worker_web_port,
        "worker-gpu": settings.worker_web_port,
        "alerts": settings.alerts_web_port,
        "dashboard": settings.dashboard_port,
        "scheduler": settings.scheduler_web_port,
    }
    for name, port in ports.items():
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/" in probe, name
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["count"] == 1
    assert "replicas" in services["worker"]["deploy"]


def test_workers_request_a_gpu_and_every_service_is_probed() -> None:
    deployments = by_kind("Deployment")
    assert set(deployments) == {
        "finsentry-worker",
        "finsentry-alerts",
        "finsentry-dashboard",
        "finsentry-scheduler",
    }
    worker = deployments["finsentry-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert worker["resources"]["requests"]["nvidia.com/gpu"] == "1"
    for name in ("finsentry-worker", "finsentry-alerts", "finsentry-dashboard"):
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/health", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready", name
    assert set(by_kind("Service")) >= {"finsentry-dashboard"}
    assert set(by_kind("ConfigMap")) == {"finsentry-config"}
    assert set(by_kind("Secret")) == {"finsentry-secrets"}


def test_keda_scales_the_worker_on_the_lag_of_its_own_consumer_group() -> None:
    (scaled,) = by_kind("ScaledObject").values()
    config = by_kind("ConfigMap")["finsentry-config"]["data"]
    settings = load_settings(kafka_partitions=int(config["FINSENTRY_KAFKA_PARTITIONS"]))
    assert scaled["spec"]["scaleTargetRef"]["name"] in by_kind("Deployment")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == app_id(settings)
    assert trigger["metadata"]["topic"] == settings.topic("posts")
    assert trigger["metadata"]["bootstrapServers"] == config["FINSENTRY_KAFKA_BOOTSTRAP"]
    # More workers than partitions of posts would sit idle.
    assert scaled["spec"]["maxReplicaCount"] == settings.partitions_for("posts")
