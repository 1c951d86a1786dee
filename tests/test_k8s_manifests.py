"""The Kubernetes manifests in deploy/k8s, validated offline against the Kubernetes JSON schemas.

`kubernetes-validate` ships the schemas inside the package (no cluster, no network), so strict
validation — unknown fields rejected — runs in the normal test suite. Beyond the schema, the tests
check what the schema cannot: the settings names exist, the grace period covers the drain, the probes
hit the health routes, and the store URI is a majority-write replica set.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pymongo import uri_parser

from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
# Oldest Kubernetes still in wide use here and the newest the validator ships.
VERSIONS = ("1.30.0", "1.37.0")
Doc = dict[str, Any]


def load_all() -> dict[str, Doc]:
    docs: dict[str, Doc] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[
                    f"{doc['kind']}/{doc['metadata']['name'] if 'metadata' in doc else path.name}"
                ] = doc
    return docs


@pytest.fixture(scope="module")
def docs() -> dict[str, Doc]:
    return load_all()


@pytest.fixture(scope="module")
def deployment(docs: dict[str, Doc]) -> Doc:
    return docs["Deployment/multistream"]


@pytest.fixture(scope="module")
def container(deployment: Doc) -> Doc:
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    return server


def kubernetes_resources(docs: dict[str, Doc]) -> list[Doc]:
    return [d for d in docs.values() if not d["apiVersion"].startswith("kustomize.config.k8s.io")]


def test_every_kind_is_present(docs: dict[str, Doc]) -> None:
    kinds = {d["kind"] for d in docs.values()}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "Namespace"} <= kinds


@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_pass_strict_schema_validation(docs: dict[str, Doc], version: str) -> None:
    for doc in kubernetes_resources(docs):
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(
    "breakage",
    [
        "misspelt_probe_field",
        "port_as_word",
        "unknown_top_level_field",
        "missing_selector",
    ],
)
def test_validator_catches_a_broken_deployment(deployment: Doc, breakage: str) -> None:
    broken = copy.deepcopy(deployment)
    server = broken["spec"]["template"]["spec"]["containers"][0]
    if breakage == "misspelt_probe_field":
        server["livenessProbe"]["httpGett"] = server["livenessProbe"].pop("httpGet")
    elif breakage == "port_as_word":
        server["ports"][0]["containerPort"] = "eighty"
    elif breakage == "unknown_top_level_field":
        broken["spec"]["replica"] = 3
    else:
        del broken["spec"]["selector"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_kustomization_lists_resources_but_never_the_secret_template() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    for name in listed:
        assert (K8S / name).exists(), name
    assert "secret.example.yaml" not in listed
    assert "deployment.yaml" in listed and "configmap.yaml" in listed


def settings_env_names() -> set[str]:
    return set(
        re.findall(r'"(MULTISTREAM_[A-Z_]+)"', (ROOT / "server" / "settings.py").read_text())
    )


def test_every_setting_name_is_one_the_server_reads(docs: dict[str, Doc], container: Doc) -> None:
    known = settings_env_names()
    assert "MULTISTREAM_DRAIN_DEADLINE" in known
    names = set(docs["ConfigMap/multistream-config"]["data"])
    names |= set(docs["Secret/multistream-secrets"]["stringData"])
    names |= {e["name"] for e in container["env"] if e["name"].startswith("MULTISTREAM_")}
    unknown = names - known
    assert not unknown, f"not read by server/settings.py: {sorted(unknown)}"


def pod_env(docs: dict[str, Doc], container: Doc) -> dict[str, str]:
    """The environment one pod gets, with downward-API values filled in as Kubernetes would."""
    env: dict[str, str] = {}
    env.update(docs["ConfigMap/multistream-config"]["data"])
    env.update(docs["Secret/multistream-secrets"]["stringData"])
    downward = {"spec.nodeName": "node-a", "status.hostIP": "10.0.0.7", "metadata.name": "ms-abc"}
    for item in container["env"]:
        if "valueFrom" in item:
            env[item["name"]] = downward[item["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], item["value"])
    return env


def test_pod_environment_builds_valid_settings(docs: dict[str, Doc], container: Doc) -> None:
    settings = Settings.from_env(pod_env(docs, container))
    assert settings.host == "0.0.0.0"
    assert settings.ice_hosts == ("10.0.0.7",)
    assert settings.instance_id == "ms-abc"
    assert settings.public_url == "https://node-a.media.example.com"
    assert settings.udp_ports is not None
    assert settings.allowed_origins and all(
        o.startswith("https://") for o in settings.allowed_origins
    )
    assert settings.log_json and not settings.debug
    assert settings.token_secret and settings.pix_webhook_secret


def test_store_is_a_majority_write_replica_set(docs: dict[str, Doc]) -> None:
    uri = docs["Secret/multistream-secrets"]["stringData"]["MULTISTREAM_STORE"]
    parsed = uri_parser.parse_uri(uri)
    assert parsed["options"]["replicaSet"] == "rs0"
    assert parsed["options"]["w"] == "majority"
    assert parsed["options"]["readConcernLevel"] == "majority"
    assert len(parsed["nodelist"]) >= 3
    assert parsed["database"] == "multistream"


def test_grace_period_covers_the_drain(
    docs: dict[str, Doc], deployment: Doc, container: Doc
) -> None:
    spec = deployment["spec"]["template"]["spec"]
    drain = int(docs["ConfigMap/multistream-config"]["data"]["MULTISTREAM_DRAIN_DEADLINE"])
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = int(command[1])
    # After the deadline the server still closes peer connections and finalises recordings.
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + drain + 15


def test_probes_hit_the_health_routes(container: Doc) -> None:
    port_names = {p["name"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in port_names
    assert container["args"] == ["serve", "--host", "0.0.0.0"]


def test_runs_unprivileged_as_the_image_user(deployment: Doc, container: Doc) -> None:
    pod = deployment["spec"]["template"]["spec"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    image_uid = int(re.findall(r"^USER (\d+)", dockerfile, re.M)[-1])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == image_uid
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/var/lib/multistream" in mounts and "/tmp" in mounts


def test_host_network_layout_is_consistent(deployment: Doc, docs: dict[str, Doc]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    # Without this policy a host-network pod cannot resolve the MongoDB service names.
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    ns = docs["Namespace/multistream"]["metadata"]["labels"]
    assert ns["pod-security.kubernetes.io/enforce"] == "privileged"
    selector = docs["Service/multistream"]["spec"]["selector"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
