"""deploy/k8s: offline schema validation (kubernetes-validate), the Pod Security "restricted"
rules, probes, resources, stable bootstrap identities, and the init script run for real."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import (
    DEPLOY,
    NodeProcess,
    base_env,
    check_settings,
    find_tool,
    free_port,
    load_yaml_docs,
    yaml_module,
)

K8S = DEPLOY / "k8s"
# Oldest supported (persistentVolumeClaimRetentionPolicy is on by default from 1.27) and newest.
KUBE_VERSIONS = ("1.29.0", None)
SECRET_NAME = "spacepanda-api-token"
ALLOWED_VOLUMES = {"configMap", "emptyDir", "secret", "persistentVolumeClaim", "projected",
                   "downwardAPI", "ephemeral", "csi"}


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    out = []
    for path in manifest_files():
        out.extend(load_yaml_docs(path))
    assert out, "no manifests"
    return out


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("StatefulSet", "Deployment")]


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def node_container(workload: dict[str, Any]) -> dict[str, Any]:
    (node,) = [c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == "node"]
    return node


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


# ---- schemas -----------------------------------------------------------------------------------


def _validate(doc: dict[str, Any], version: str | None) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    from kubernetes_validate.utils import latest_version

    try:
        kv.validate(doc, version or latest_version(), strict=True)
    except kv.ValidationError as exc:
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} against {version}: {exc}")


@pytest.mark.parametrize("version", KUBE_VERSIONS, ids=lambda v: v or "latest")
def test_manifests_match_the_kubernetes_schemas(docs: list[dict[str, Any]],
                                                version: str | None) -> None:
    for doc in docs:
        _validate(doc, version)


def test_kustomization_renders_every_manifest(tmp_path: Path) -> None:
    (kustomization,) = load_yaml_docs(K8S / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]
    kubectl = find_tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not found: `kubectl kustomize` not checked (the file list was)")
    r = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, KUBECONFIG=str(tmp_path / "none")))
    assert r.returncode == 0, r.stderr
    rendered = [d for d in yaml_module().safe_load_all(r.stdout) if d]
    for doc in rendered:
        _validate(doc, None)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == kustomization["namespace"]
    images = {c["image"] for d in workloads(rendered)
              for c in containers(d["spec"]["template"]["spec"])}
    assert images == {f"spacepanda:{kustomization['images'][0]['newTag']}"}


# ---- the bootstrap StatefulSet and its headless Service -----------------------------------------


def test_bootstrap_statefulset_keeps_identities(docs: list[dict[str, Any]]) -> None:
    sts = find(docs, "StatefulSet", "spacepanda-bootstrap")
    svc = find(docs, "Service", sts["spec"]["serviceName"])
    assert svc["spec"]["clusterIP"] == "None", "headless: one DNS name per pod"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert {(p["port"], p["protocol"]) for p in svc["spec"]["ports"]} == {(4001, "TCP"),
                                                                         (4001, "UDP")}
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain", "whenScaled": "Retain"}
    pod = sts["spec"]["template"]["spec"]
    assert claim["metadata"]["name"] not in {v["name"] for v in pod["volumes"]}
    for c in containers(pod):  # the init step and the node see the same data dir
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert mounts[env_of(c)["SPACEPANDA_DATA_DIR"]] == claim["metadata"]["name"], c["name"]
    announce = env_of(node_container(sts))["SPACEPANDA_ANNOUNCE"]
    assert announce == f"/dns4/$(POD_NAME).{svc['metadata']['name']}.$(POD_NAMESPACE).svc/tcp/4001"


def test_peers_deployment_joins_through_the_bootstrap(docs: list[dict[str, Any]]) -> None:
    dep = find(docs, "Deployment", "spacepanda-peer")
    pod = dep["spec"]["template"]["spec"]
    node = node_container(dep)
    refs = [e["configMapRef"] for e in node["envFrom"]]
    assert {"name": "spacepanda-bootstrap"} in refs, "required, not optional"
    mounted = {m["mountPath"]: m["name"] for m in node["volumeMounts"]}
    data = {v["name"]: v for v in pod["volumes"]}[mounted[env_of(node)["SPACEPANDA_DATA_DIR"]]]
    assert "emptyDir" in data
    names = [e["name"] for e in node["env"]]
    assert names.index("POD_IP") < names.index("SPACEPANDA_ANNOUNCE"), "$(POD_IP) defined first"
    assert env_of(node)["SPACEPANDA_ANNOUNCE"] == "/ip4/$(POD_IP)/tcp/4001"


# ---- probes, security, resources, settings -----------------------------------------------------


def test_probes_hit_health_and_ready_on_the_api_port(docs: list[dict[str, Any]]) -> None:
    for w in workloads(docs):
        node = node_container(w)
        api_port = int(env_of(node)["SPACEPANDA_API"].rsplit("/", 1)[1])
        ports = {p["name"]: p for p in node["ports"]}
        assert ports["api"]["containerPort"] == api_port and ports["api"]["protocol"] == "TCP"
        expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz",
                    "readinessProbe": "/readyz"}
        for probe, path in expected.items():
            get = node[probe]["httpGet"]
            assert (get["path"], get["port"]) == (path, "api"), (w["metadata"]["name"], probe)
        assert node["livenessProbe"]["failureThreshold"] >= 3, "no restarts on one slow answer"
        assert "0.0.0.0" in env_of(node)["SPACEPANDA_API"], "kubelet probes hit the pod IP"


def test_pod_security_restricted(docs: list[dict[str, Any]]) -> None:
    ns = find(docs, "Namespace", "spacepanda")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for w in workloads(docs):
        name = w["metadata"]["name"]
        pod = w["spec"]["template"]["spec"]
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] > 0, name
        assert psc["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost"), name
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["enableServiceLinks"] is False, name
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), name
        for v in pod["volumes"]:
            kinds = set(v) - {"name"}
            assert kinds <= ALLOWED_VOLUMES, (name, v)
        for c in containers(pod):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
            assert not sc.get("privileged") and sc.get("runAsUser", 1) != 0
            writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
            assert writable <= {"/data", "/tmp"}, (name, c["name"], writable)


def _bytes(quantity: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G)?", quantity)
    assert m, quantity
    scale = {None: 1, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return float(m.group(1)) * scale[m.group(2)]


def _cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


IDLE_RSS = 60 * 2**20  # measured: an idle node holds ~55 MiB


def test_resources(docs: list[dict[str, Any]]) -> None:
    for w in workloads(docs):
        for c in containers(w["spec"]["template"]["spec"]):
            r = c["resources"]
            where = (w["metadata"]["name"], c["name"])
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(r[section]), where
            assert _bytes(r["requests"]["memory"]) <= _bytes(r["limits"]["memory"]), where
            assert _cores(r["requests"]["cpu"]) <= _cores(r["limits"]["cpu"]), where
            if c["name"] == "node":
                assert _bytes(r["requests"]["memory"]) >= IDLE_RSS, where
                assert _bytes(r["limits"]["memory"]) >= 2 * IDLE_RSS, where


def test_settings_are_real_and_parse(docs: list[dict[str, Any]]) -> None:
    config = find(docs, "ConfigMap", "spacepanda-config")["data"]
    fake = {"POD_NAME": "spacepanda-bootstrap-0", "POD_NAMESPACE": "spacepanda",
            "POD_IP": "192.0.2.10"}  # documentation addresses: parsed, never contacted
    for w in workloads(docs):
        for c in containers(w["spec"]["template"]["spec"]):
            env = {k: re.sub(r"\$\((\w+)\)", lambda m: fake[m.group(1)], v)
                   for k, v in env_of(c).items()}
            check_settings(config | env, f"{w['metadata']['name']}/{c['name']}")


def test_network_policy(docs: list[dict[str, Any]]) -> None:
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for w in workloads(docs):
        assert selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
    rules = policy["spec"]["ingress"]
    p2p = [r for r in rules if "from" not in r]
    assert {(p["port"], p["protocol"]) for r in p2p for p in r["ports"]} == {(4001, "TCP"),
                                                                            (4001, "UDP")}
    api_rules = [r for r in rules if any(p["port"] == 5001 for p in r["ports"])]
    assert api_rules and all(r.get("from") for r in api_rules), "the API is not open to all"


# ---- the API token Secret and the init script ---------------------------------------------------


def _init_script(docs: list[dict[str, Any]]) -> str:
    return str(find(docs, "ConfigMap", "spacepanda-init")["data"]["init.sh"])


def test_api_token_comes_from_the_secret(docs: list[dict[str, Any]]) -> None:
    script = _init_script(docs)
    for w in workloads(docs):
        pod = w["spec"]["template"]["spec"]
        secret_volumes = [v["name"] for v in pod["volumes"]
                          if v.get("secret", {}).get("secretName") == SECRET_NAME]
        assert len(secret_volumes) == 1, w["metadata"]["name"]
        (init,) = pod["initContainers"]
        mounts = {m["name"]: m for m in init["volumeMounts"]}
        token_dir = mounts[secret_volumes[0]]["mountPath"]
        assert mounts[secret_volumes[0]]["readOnly"] is True
        assert f"{token_dir}/api.token" in script
        script_dir = next(m["mountPath"] for m in init["volumeMounts"] if m["name"] == "init")
        assert init["command"] == ["/bin/sh", f"{script_dir}/init.sh"]
        node_mounts = {m["name"] for m in node_container(w)["volumeMounts"]}
        assert secret_volumes[0] not in node_mounts, "the node reads D/api.token, nothing else"


def test_init_script_then_node_accepts_the_secret_token(
    docs: list[dict[str, Any]], tmp_path: Path, node_processes: list[NodeProcess]
) -> None:
    """Run init.sh as the init container would (twice, after fsGroup-style group bits), then a
    node with the manifest's env on loopback, and call its API with the Secret's token."""
    script = _init_script(docs)
    data, secret = tmp_path / "data", tmp_path / "secret"
    secret.mkdir()
    token = "k8s-secret-token-" + "x" * 32
    (secret / "api.token").write_text(token + "\n")
    script = script.replace("/etc/spacepanda/api-token", str(secret))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "spacepanda").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m node "$@"\n')
    (bin_dir / "spacepanda").chmod(0o755)
    env = base_env() | {"SPACEPANDA_DATA_DIR": str(data),
                        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"}
    first = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True,
                           timeout=60)
    assert first.returncode == 0, first.stderr
    peer_id = (data / "peer_id").read_text().strip()
    assert first.stdout.strip() == f"PeerId {peer_id}"
    (data / "identity.key").chmod(0o660)  # what a recursive fsGroup change leaves behind
    again = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 0, again.stderr
    assert (data / "peer_id").read_text().strip() == peer_id, "the identity survives restarts"
    assert (data / "identity.key").stat().st_mode & 0o777 == 0o600
    assert (data / "api.token").stat().st_mode & 0o777 == 0o600
    assert (data / "api.token").read_text().strip() == token

    sts = find(docs, "StatefulSet", "spacepanda-bootstrap")
    config = find(docs, "ConfigMap", "spacepanda-config")["data"]
    node_env = base_env() | config | {
        k: v for k, v in env_of(node_container(sts)).items() if "$(" not in v
    } | {"SPACEPANDA_DATA_DIR": str(data),
         "SPACEPANDA_LISTEN": "/ip4/127.0.0.1/tcp/0",  # loopback here, 0.0.0.0 in a pod
         "SPACEPANDA_API": f"/ip4/127.0.0.1/tcp/{free_port()}"}
    node = NodeProcess([sys.executable, "-m", "node", "run", "--init"], node_env, data,
                       tmp_path / "node.log")
    node_processes.append(node)
    api = node.wait_api()
    from api.client import ApiClient, ApiError, base_url
    from node.core.multiaddr import Multiaddr

    url = base_url(Multiaddr.parse(api))
    assert ApiClient(url, token).node()["peer_id"] == peer_id
    with pytest.raises(ApiError):
        ApiClient(url, "not-the-secret-token-000").node()
    assert node.stop() == 0


def test_no_secret_values_committed() -> None:
    for path in K8S.glob("*.yaml"):
        for doc in load_yaml_docs(path):
            assert doc.get("kind") != "Secret", f"{path.name}: create the Secret out of band"
