"""The body of ``prism-ray submit --dry-run``: runs on the cluster, trains nothing.

Resolves the config as ``run`` would, joins the cluster (``cluster.address=auto``) and
compares what each role asks for with what the cluster has. It exercises everything a real
submission needs (image dependencies, uploaded code, token propagation) in seconds.
"""

from __future__ import annotations

import argparse
import sys

from prism_ray.config import dump_config, load_config


def role_demand(config) -> dict[str, tuple[int, float, float]]:
    """Per role: (actors, CPUs, GPUs) that the run asks for in total."""
    roles = {
        "rollout": (config.rollout.num_workers, config.rollout.resources),
        "policy": (config.policy.num_ranks, config.policy.resources),
        "discriminator": (config.discriminator.learner.num_ranks,
                          config.discriminator.learner.resources),
        "verifier": (config.verifier.num_workers, config.verifier.resources),
    }
    return {name: (n, n * r.num_cpus, n * r.num_gpus) for name, (n, r) in roles.items()}


def report(config, resources: dict) -> list[str]:
    lines = [f"{'role':<14} {'actors':>6} {'CPU':>7} {'GPU':>6}"]
    for name, (n, cpus, gpus) in role_demand(config).items():
        lines.append(f"{name:<14} {n:>6} {cpus:>7g} {gpus:>6g}")
    lines.append(f"{'cluster':<14} {'':>6} {resources.get('CPU', 0):>7g} "
                 f"{resources.get('GPU', 0):>6g}")
    # Roles live one phase at a time on the same devices only if the driver colocates them;
    # the largest single role must fit in any case.
    for name, (_, cpus, gpus) in role_demand(config).items():
        if cpus > resources.get("CPU", 0) or gpus > resources.get("GPU", 0):
            lines.append(f"warning: {name} asks for more than the cluster has (autoscaling "
                         "clusters grow on demand; fixed ones will wait at placement)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prism_ray.jobs.probe")
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--cluster", default=None)
    args = parser.parse_args(argv)
    config = load_config(args.recipe, args.overrides, args.cluster)
    print(dump_config(config), end="")

    import ray

    from prism_ray.cluster import start_ray, stop_ray

    resources, _ = start_ray(config.cluster, log_to_driver=False)
    print(f"[probe] joined Ray {ray.__version__} cluster with {len(ray.nodes())} node(s)")
    print("\n".join(report(config, resources)))
    stop_ray()
    print("[probe] ok: the cluster can run this recipe's driver")
    return 0


if __name__ == "__main__":
    sys.exit(main())
