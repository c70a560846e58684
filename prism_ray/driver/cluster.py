"""Connecting to Ray: a local single-node cluster on loopback, or an existing cluster."""

from __future__ import annotations

import os

from prism_ray.config.run import ClusterConfig

# Ray's "local cluster" switch: with clustering off, a local head binds to 127.0.0.1 instead
# of the machine's external interface, so nothing of a laptop/CI run is reachable from outside.
_LOCAL_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def start_ray(cluster: ClusterConfig, log_to_driver: bool = True) -> dict:
    """Start (address None) or join a Ray cluster; returns its resources."""
    import ray

    if ray.is_initialized():
        return ray.cluster_resources()
    runtime_env = {"env_vars": dict(cluster.env_vars)} if cluster.env_vars else None
    if cluster.address is None:
        for key, value in _LOCAL_ONLY.items():
            os.environ.setdefault(key, value)
        ray.init(
            num_cpus=cluster.num_cpus,
            num_gpus=cluster.num_gpus,
            include_dashboard=False,
            log_to_driver=log_to_driver,
            runtime_env=runtime_env,
        )
    else:
        ray.init(address=cluster.address, runtime_env=runtime_env, log_to_driver=log_to_driver)
    return ray.cluster_resources()


def stop_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
