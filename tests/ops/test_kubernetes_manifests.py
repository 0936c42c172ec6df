"""The Kubernetes additions agree with the Deployments they protect: every PDB,
NetworkPolicy and the metrics Service/ServiceMonitor select real pods, every codebus
Deployment has a PDB, and kustomization.yaml ships them all."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
KUBE = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all((KUBE / name).read_text(), Loader=_LOADER) if d]


@functools.cache
def everything() -> list[dict[str, Any]]:
    return [d for f in sorted(KUBE.glob("*.yaml")) if "patch" not in f.name for d in load(f.name)]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in everything() if d["kind"] == kind]


def pod_labels() -> dict[str, dict[str, str]]:
    """Deployment name -> the labels of its pods."""
    return {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in of_kind("Deployment")
    }


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def selected(selector: dict[str, str]) -> set[str]:
    return {name for name, labels in pod_labels().items() if matches(selector, labels)}


def codebus_deployments() -> set[str]:
    return selected({"app.kubernetes.io/name": "codebus"})


def test_the_manifests_know_every_unit() -> None:
    from workers.units import UNITS

    assert codebus_deployments() == {f"codebus-{u}" for u in UNITS} | {"codebus-gateway"}


def test_every_codebus_deployment_has_exactly_one_pdb_that_allows_a_drain() -> None:
    covered: dict[str, int] = {}
    for pdb in of_kind("PodDisruptionBudget"):
        spec = pdb["spec"]
        hits = selected(spec["selector"]["matchLabels"])
        assert len(hits) == 1, f"{pdb['metadata']['name']} selects {hits}"
        assert spec.get("maxUnavailable") == 1 and "minAvailable" not in spec
        for hit in hits:
            covered[hit] = covered.get(hit, 0) + 1
    assert covered == dict.fromkeys(codebus_deployments(), 1)


def test_every_network_policy_selects_pods_and_peers_that_exist() -> None:
    policies = of_kind("NetworkPolicy")
    assert policies
    for policy in policies:
        name, spec = policy["metadata"]["name"], policy["spec"]
        assert selected(spec["podSelector"]["matchLabels"]), f"{name} selects no pod"
        for rule in [*spec.get("ingress", []), *spec.get("egress", [])]:
            for peer in [*rule.get("from", []), *rule.get("to", [])]:
                if "podSelector" in peer:
                    peers = selected(peer["podSelector"]["matchLabels"])
                    assert peers, f"{name}: a peer selector matches no pod"
    deny = next(p for p in policies if p["metadata"]["name"] == "codebus-default-deny")
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    # Only the units that use the engine may reach it.
    engine = next(p for p in policies if p["metadata"]["name"] == "codebus-dockerd")
    sources = set().union(
        *(
            selected(peer["podSelector"]["matchLabels"])
            for peer in engine["spec"]["ingress"][0]["from"]
        )
    )
    # The units whose tools include the Docker Engine (builds, image reads, scans).
    assert sources == {"codebus-deploy", "codebus-security", "codebus-workflows"}


def test_servicemonitor_scrapes_every_codebus_pod_on_its_http_port() -> None:
    [service] = [s for s in of_kind("Service") if s["metadata"]["name"] == "codebus-metrics"]
    [monitor] = of_kind("ServiceMonitor")
    assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    [port] = service["spec"]["ports"]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [port["name"]]
    assert selected(service["spec"]["selector"]) == codebus_deployments()
    for deployment in of_kind("Deployment"):
        if deployment["metadata"]["name"] not in codebus_deployments():
            continue
        ports = {
            p["name"]
            for c in deployment["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        assert port["targetPort"] in ports, deployment["metadata"]["name"]
    relabel = monitor["spec"]["endpoints"][0]["relabelings"]
    assert {
        "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
        "targetLabel": "unit",
    } in relabel
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"  # job="codebus" in the rules


def test_security_patch_mounts_what_the_cronjob_fills() -> None:
    [patch] = load("security-advisories-patch.yaml")
    assert patch["metadata"]["name"] in codebus_deployments()
    pod = patch["spec"]["template"]["spec"]
    [volume] = pod["volumes"]
    [cron] = of_kind("CronJob")
    job_pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [job_volume] = job_pod["volumes"]
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert claim == job_volume["persistentVolumeClaim"]["claimName"]
    assert claim in {c["metadata"]["name"] for c in of_kind("PersistentVolumeClaim")}
    [mount] = pod["containers"][0]["volumeMounts"]
    assert mount["readOnly"] is True and volume["persistentVolumeClaim"]["readOnly"] is True
    tools = yaml.safe_load((KUBE.parent / "tools.example.yaml").read_text())
    assert mount["mountPath"] == tools["security_scanner"]["advisories_dir"]


def test_kustomization_ships_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"]) | {p["path"] for p in kustomization["patches"]}
    on_disk = {f.name for f in KUBE.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == on_disk
