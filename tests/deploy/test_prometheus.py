"""deploy/prometheus.yml: promtool when present, token-from-file only, targets that match the
systemd unit and the Kubernetes manifests, and a real node scraped the way Prometheus does."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import (
    DEPLOY,
    NodeProcess,
    base_env,
    find_tool,
    load_yaml_docs,
    yaml_module,
)

PROMETHEUS = DEPLOY / "prometheus.yml"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    (doc,) = load_yaml_docs(PROMETHEUS)
    return doc


def _jobs(config: dict[str, Any]) -> list[dict[str, Any]]:
    jobs = [j for j in config["scrape_configs"] if j["job_name"].startswith("spacepanda")]
    assert jobs, "no spacepanda jobs"
    return jobs


def _promtool_has_kubernetes_sd(promtool: str, tmp_path: Path) -> bool:
    probe = tmp_path / "k8s-sd.yml"
    probe.write_text("scrape_configs:\n  - job_name: x\n    kubernetes_sd_configs:\n"
                     "      - role: pod\n")
    r = subprocess.run([promtool, "check", "config", str(probe)], capture_output=True,
                       text=True, timeout=60)
    return "kubernetes_sd_configs not found" not in r.stdout + r.stderr


def test_promtool_accepts_the_config(config: dict[str, Any], tmp_path: Path) -> None:
    promtool = find_tool("promtool")
    if promtool is None:
        pytest.skip("promtool not found (Debian prometheus ships it)")
    doc = dict(config)
    jobs = []
    for i, job in enumerate(config["scrape_configs"]):  # promtool insists the files exist
        job = dict(job)
        token = tmp_path / f"token-{i}"
        token.write_text("t" * 43 + "\n")
        job["authorization"] = dict(job["authorization"], credentials_file=str(token))
        jobs.append(job)
    if not _promtool_has_kubernetes_sd(promtool, tmp_path):
        # Debian's build drops Kubernetes discovery; the static jobs are still checked here and
        # the Kubernetes job by test_jobs_match_the_manifests.
        jobs = [j for j in jobs if "kubernetes_sd_configs" not in j]
    doc["scrape_configs"] = jobs
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml_module().safe_dump(doc))
    r = subprocess.run([promtool, "check", "config", str(checked)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_token_only_from_a_file(config: dict[str, Any]) -> None:
    for job in _jobs(config):
        auth = job["authorization"]
        assert auth.get("type", "Bearer") == "Bearer", job["job_name"]
        assert auth["credentials_file"].startswith("/"), job["job_name"]
        assert "credentials" not in auth, f"{job['job_name']}: inline token"
        assert not {"bearer_token", "bearer_token_file", "basic_auth"} & set(job)
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert job.get("scheme", "http") == "http"


def test_jobs_match_the_manifests(config: dict[str, Any]) -> None:
    unit = (DEPLOY / "spacepanda@.service").read_text()
    assert "port + 1000" in unit, "the API port rule these targets rely on"
    static = [j for j in _jobs(config) if "static_configs" in j]
    assert static
    for job in static:
        for group in job["static_configs"]:
            instance = int(re.fullmatch(r"spacepanda@(\d+)", group["labels"]["unit"]).group(1))
            assert group["targets"] == [f"127.0.0.1:{instance + 1000}"], job["job_name"]

    (k8s_job,) = [j for j in _jobs(config) if "kubernetes_sd_configs" in j]
    (kustomization,) = load_yaml_docs(DEPLOY / "k8s" / "kustomization.yaml")
    (sd,) = k8s_job["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    assert sd["namespaces"]["names"] == [kustomization["namespace"]]
    keep = {r["source_labels"][0]: r["regex"] for r in k8s_job["relabel_configs"]
            if r.get("action") == "keep"}
    workloads = [d for f in ("bootstrap.yaml", "peers.yaml")
                 for d in load_yaml_docs(DEPLOY / "k8s" / f) if d["kind"] in
                 ("StatefulSet", "Deployment")]
    assert len(workloads) == 2
    for w in workloads:
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == keep[
            "__meta_kubernetes_pod_label_app_kubernetes_io_name"]
        port_names = {p["name"] for c in w["spec"]["template"]["spec"]["containers"]
                      for p in c.get("ports", [])}
        assert keep["__meta_kubernetes_pod_container_port_name"] in port_names
    token_path = k8s_job["authorization"]["credentials_file"]
    assert token_path.endswith("/spacepanda-api-token/api.token"), token_path
    init = next(d for d in load_yaml_docs(DEPLOY / "k8s" / "config.yaml")
                if d["metadata"]["name"] == "spacepanda-init")
    assert "/api-token/api.token" in init["data"]["init.sh"], "same Secret key as the pods"


def test_scrape_with_the_token_file(tmp_path: Path, node_processes: list[NodeProcess]) -> None:
    data = tmp_path / "d"
    env = base_env() | {"SPACEPANDA_LISTEN": "/ip4/127.0.0.1/tcp/0",
                        "SPACEPANDA_API": "/ip4/127.0.0.1/tcp/0"}
    node = NodeProcess([sys.executable, "-m", "node", "run", "--init", "--data-dir", str(data)],
                       env, data, tmp_path / "node.log")
    node_processes.append(node)
    api = node.wait_api()
    host, port = re.fullmatch(r"/ip4/([\d.]+)/tcp/(\d+)", api).groups()
    credentials_file = tmp_path / "spacepanda.token"
    credentials_file.write_bytes((data / "api.token").read_bytes())
    url = f"http://{host}:{port}/metrics"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    # Prometheus trims whitespace from credentials_file, as the node's token file ends in \n.
    request = urllib.request.Request(
        url, headers={"Authorization": "Bearer " + credentials_file.read_text().strip()})
    with opener.open(request, timeout=10) as response:
        assert response.status == 200
        body = response.read().decode()
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE" in body
    with pytest.raises(urllib.error.HTTPError) as denied:
        opener.open(url, timeout=10)
    assert denied.value.code == 401
    denied.value.close()
    assert node.stop() == 0
