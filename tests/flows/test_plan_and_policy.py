"""Plans (rounding rule, unreachable steps) and the deployment policy (V4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.config import FlowsConfigError, PolicyError, load_flows_config, new_flow
from flows.objects import images_of
from flows.plan import PlanError, canary_replicas, compile_plan
from schemas.events import DeploymentRequested
from schemas.flows import CanarySpec, FlowOverrides, FlowsConfig, SetWeight, StrategySpec
from tests.flows.helpers import deployment, service


@pytest.mark.parametrize(
    ("weight", "replicas", "canary"),
    [(10, 10, 1), (25, 10, 3), (50, 10, 5), (100, 10, 10), (0, 10, 0), (50, 2, 1), (25, 4, 1),
     (33, 3, 1), (15, 10, 2), (90, 10, 9)],
)  # fmt: skip
def test_rounding_rule_nearest_half_up(weight: int, replicas: int, canary: int) -> None:
    assert canary_replicas(weight, replicas) == canary


def test_default_steps_are_the_guides_canary() -> None:
    steps, meta = compile_plan("canary", StrategySpec(), [deployment(replicas=10), service()])
    weights = [s["weight"] for s in steps if "weight" in s]
    pauses = [s["seconds"] for s in steps if s["kind"] == "pause"]
    assert weights == [10, 25, 50, 100] and pauses == [300, 300, 300]
    assert meta == {"stable": "web", "canary": "web-canary", "replicas": 10}
    assert next(s["replicas"] for s in steps if "weight" in s) == {"@canary": 1, "@stable": 9}


@pytest.mark.parametrize(
    ("weight", "replicas", "needs"), [(10, 5, 10), (10, 9, 10), (95, 10, 20), (1, 50, 100)]
)
def test_unreachable_weight_is_refused_at_validation(
    weight: int, replicas: int, needs: int
) -> None:
    spec = StrategySpec(canary=CanarySpec(replicas=replicas, steps=(SetWeight(set_weight=weight),)))
    with pytest.raises(PlanError) as err:
        compile_plan("canary", spec, [deployment(), service()])
    assert f"canary.steps.0.set_weight: weight {weight} %" in str(err.value)
    assert f"needs at least {needs}" in str(err.value)


def test_overrides_change_only_their_flow() -> None:
    o = FlowOverrides(steps=(SetWeight(set_weight=50),), replicas=4)
    steps, meta = compile_plan("canary", StrategySpec(), [deployment(), service()], o)
    assert meta["replicas"] == 4
    assert [s["replicas"] for s in steps if "weight" in s] == [{"@canary": 2, "@stable": 2}]


def test_blue_green_needs_one_service() -> None:
    with pytest.raises(PlanError, match="exactly one Service"):
        compile_plan("blue_green", StrategySpec(), [deployment()])


# ---- policy (V4) -----------------------------------------------------------------------


def write(root: Path, image: str = "web:2.0", name: str = "k8s.yaml") -> Path:
    path = root / name
    dep = deployment(image=image)
    dep["spec"]["template"]["spec"]["initContainers"] = [{"name": "init", "image": "busybox:1"}]
    path.write_text(yaml.safe_dump_all([dep, service()]))
    return path


def req(**kw: object) -> DeploymentRequested:
    data = {"app": "web", "version": "2.0", "environment": "staging", **kw}
    return DeploymentRequested.model_validate(data)


def test_images_scanned_are_exactly_those_the_manifests_run(tmp_path: Path) -> None:
    path = write(tmp_path)
    cfg = FlowsConfig(manifest_roots=(str(tmp_path),), allow_unlisted_apps=True)
    state, images = new_flow(cfg, req(manifest_path=str(path)), "d-1")
    assert images == ["busybox:1", "web:2.0"]
    assert state.images == {"busybox:1": None, "web:2.0": None}
    assert images_of(state.objects) == images


def test_payload_image_that_the_manifests_do_not_run_is_refused(tmp_path: Path) -> None:
    # The attack: scan nginx:1.25, deploy evil/miner:latest.
    path = write(tmp_path, image="evil/miner:latest")
    cfg = FlowsConfig(manifest_roots=(str(tmp_path),), allow_unlisted_apps=True)
    with pytest.raises(PolicyError, match=r"data\.image: nginx:1.25 is not an image"):
        new_flow(cfg, req(manifest_path=str(path), image="nginx:1.25"), "d-1")


def test_manifest_outside_the_roots_is_refused_even_through_a_symlink(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    write(outside)
    (root / "link.yaml").symlink_to(outside / "k8s.yaml")
    cfg = FlowsConfig(manifest_roots=(str(root),), allow_unlisted_apps=True)
    for path in (outside / "k8s.yaml", root / "link.yaml", root / ".." / "outside" / "k8s.yaml"):
        with pytest.raises(
            PolicyError, match=r"data\.manifest_path: .* is not under an allowed root"
        ):
            new_flow(cfg, req(manifest_path=str(path)), "d-1")


def test_namespaces_come_from_the_policy_never_from_the_payload(tmp_path: Path) -> None:
    path = str(write(tmp_path))
    cfg = FlowsConfig.model_validate(
        {
            "manifest_roots": [str(tmp_path)],
            "apps": {"web": {"environments": {"staging": "web-stg"}}},
        }
    )
    state, _ = new_flow(cfg, req(manifest_path=path), "d-1")
    assert state.namespace == "web-stg"
    with pytest.raises(PolicyError, match=r"data\.environment: web may deploy to staging"):
        new_flow(cfg, req(manifest_path=path, environment="production"), "d-1")
    with pytest.raises(PolicyError, match=r"data\.app: 'kube' has no deployment policy"):
        new_flow(cfg, req(app="kube", environment="system", manifest_path=path), "d-1")
    open_cfg = FlowsConfig(manifest_roots=(str(tmp_path),), allow_unlisted_apps=True)
    with pytest.raises(PolicyError, match=r"data\.environment: must be one of staging, production"):
        new_flow(open_cfg, req(app="kube", environment="system", manifest_path=path), "d-1")


def test_config_errors_name_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "flows.yaml"
    bad.write_text(
        "manifest_roots: [relative/dir]\napps: {web: {strategy: {canary: {stepz: []}}}}\n"
    )
    with pytest.raises(FlowsConfigError) as err:
        load_flows_config(bad)
    assert "manifest_roots" in str(err.value) or "apps.web.strategy.canary.stepz" in str(err.value)
    bad.write_text("apps: {web: {strategy: {canary: {stepz: []}}}}\n")
    with pytest.raises(FlowsConfigError, match=r"apps\.web\.strategy\.canary\.stepz"):
        load_flows_config(bad)


def test_example_config_loads() -> None:
    cfg = load_flows_config(Path(__file__).parents[2] / "deploy" / "flows.example.yaml")
    assert cfg.manifest_roots and cfg.apps
