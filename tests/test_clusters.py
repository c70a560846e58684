"""Every file in clusters/ parses and means what its header says: prism-ray overlays validate
with every recipe, the cluster-launcher config passes Ray's own schema, and the KubeRay RayJob
has the shape (and the secure defaults) the docs promise."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from prism_ray.cli import build_parser
from prism_ray.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTERS = ROOT / "clusters"
LAUNCHER = CLUSTERS / "aws-gpu.yaml"
RAYJOB = CLUSTERS / "kuberay-rayjob.yaml"
OVERLAYS = sorted(p for p in CLUSTERS.glob("*.yaml") if p not in (LAUNCHER, RAYJOB))
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


def test_every_cluster_file_is_known_and_documented():
    assert {p.name for p in OVERLAYS} >= {"local.yaml", "gpu-2x8.yaml"}
    for path in [*OVERLAYS, LAUNCHER, RAYJOB]:
        header = path.read_text().split("\n\n")[0]
        assert header.startswith("# "), path
        assert "prism-ray " in header or "kubectl apply" in header, path  # a launch command
        assert "rollout.num_workers" in header, path  # how to scale rollout on its own


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_overlay_validates_with_every_recipe(overlay, recipe):
    config = load_config(recipe, cluster=overlay)
    assert config.cluster == load_config(None, cluster=overlay).cluster


def test_gpu_overlay_places_roles():
    config = load_config(ROOT / "recipes/qwen3vl-8b-prism-dapo.yaml",
                         cluster=CLUSTERS / "gpu-2x8.yaml")
    assert config.cluster.address == "auto"
    assert config.rollout.resources.num_gpus == 1 and config.policy.resources.num_gpus == 1
    assert config.discriminator.learner.resources.num_gpus == 1
    assert config.verifier.resources.num_gpus == 0
    gpus = (config.rollout.num_workers + config.policy.num_ranks
            + config.discriminator.learner.num_ranks)
    assert gpus <= 16  # fits the two 8-GPU nodes the file names


def test_rollout_scales_without_touching_learners():
    recipe, overlay = ROOT / "recipes/qwen3vl-8b-prism-dapo.yaml", CLUSTERS / "gpu-2x8.yaml"
    base = load_config(recipe, cluster=overlay)
    scaled = load_config(recipe, ["rollout.num_workers=6"], cluster=overlay)
    assert scaled.rollout.num_workers == 6
    assert scaled.model_copy(update={"rollout": base.rollout}) == base


def test_launcher_config_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load(LAUNCHER.read_text())
    validate_config(prepare_config(raw))  # Ray's JSON schema + defaults, no cloud calls
    head = " ".join(raw["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    for commands in (raw["head_start_ray_commands"], raw["worker_start_ray_commands"]):
        assert "RAY_AUTH_MODE=token" in " ".join(commands)
    assert "~/.ray/auth_token" in raw["file_mounts"]
    assert raw["docker"]["image"]
    assert raw["available_node_types"]["gpu_worker"]["node_config"]["InstanceType"]


def _rayjob() -> dict:
    return yaml.safe_load(RAYJOB.read_text())


def test_rayjob_entrypoint_runs_a_valid_recipe_on_its_cluster():
    job = _rayjob()
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["prism-ray", "run"] and "cluster.address=auto" in argv
    args = build_parser().parse_args(argv[1:])
    config = load_config(ROOT / args.recipe, args.overrides, ROOT / args.cluster)
    assert config.cluster.address == "auto"


def test_rayjob_secure_defaults_and_gpu_workers():
    spec = _rayjob()["spec"]["rayClusterSpec"]
    assert spec["authOptions"] == {"mode": "token", "secretName": "prism-ray-auth"}
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"  # never a LoadBalancer
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    gpu = groups["gpu-workers"]["template"]["spec"]["containers"][0]["resources"]
    assert int(gpu["limits"]["nvidia.com/gpu"]) == 8
    assert groups["gpu-workers"]["minReplicas"] <= groups["gpu-workers"]["replicas"]
    images = {c["image"] for g in [spec["headGroupSpec"], *groups.values()]
              for c in g["template"]["spec"]["containers"]}
    assert len(images) == 1  # one image everywhere: driver and actors import the same code
    assert not {"LoadBalancer", "NodePort", "Ingress"} & set(_scalars(_rayjob()))


def _scalars(node) -> list:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _scalars(v)]
    if isinstance(node, list):
        return [s for v in node for s in _scalars(v)]
    return [node]
