"""Connecting to Ray: a local single-node cluster on loopback, or an existing cluster.

Below both the driver (a run) and the jobs probe (``submit --dry-run``), so that the
submission side never imports the driver.
"""

from __future__ import annotations

import logging
import os

from prism_ray.config.run import ClusterConfig
from prism_ray.reaper import start_reaper

# Quiet defaults for every actor (a user's cluster.env_vars win): progress bars of checkpoint
# writes and tokenizer fork warnings would otherwise interleave with the step lines.
ACTOR_ENV = {
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
}

# Plain text in logs: Ray wraps every actor's log prefix in colour codes unless told not to.
_DRIVER_ENV = {"RAY_COLOR_PREFIX": "0"}

# Ray's "local cluster" switch: with clustering off, a local head binds to 127.0.0.1 instead
# of the machine's external interface, so nothing of a laptop/CI run is reachable from outside.
_LOCAL_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

# Ray logs a warning in every run that token auth is on by default for a local cluster. It
# stays on; only the notice is muted. (Setting RAY_AUTH_MODE here instead would come too late:
# Ray reads it when it is imported, and a mismatch keeps the GCS from starting.)
_NOTICE_LOGGERS = ("ray._private.authentication.authentication_token_setup",)


def start_ray(cluster: ClusterConfig, log_to_driver: bool = True) -> tuple[dict, bool]:
    """Start (address None) or join a Ray cluster; returns (its resources, whether this call
    connected — False when the process was already connected, e.g. by an embedding program)."""
    import ray

    if ray.is_initialized():
        return ray.cluster_resources(), False
    for key, value in _DRIVER_ENV.items():
        os.environ.setdefault(key, value)
    runtime_env = {"env_vars": {**ACTOR_ENV, **cluster.env_vars}}
    if cluster.address is None:
        for key, value in _LOCAL_ONLY.items():
            os.environ.setdefault(key, value)
        for name in _NOTICE_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        ray.init(
            num_cpus=cluster.num_cpus,
            num_gpus=cluster.num_gpus,
            include_dashboard=False,
            log_to_driver=log_to_driver,
            runtime_env=runtime_env,
        )
        start_reaper()  # its Ray processes end with this process, even on a SIGKILL
    else:
        ray.init(address=cluster.address, runtime_env=runtime_env, log_to_driver=log_to_driver)
    return ray.cluster_resources(), True


def stop_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
