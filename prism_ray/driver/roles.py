"""The roles of a run as Ray actor groups, built once and shared by the phases.

Only what the enabled phases need is started. Each role takes its resources from its own
config section, so rollout can be scaled without touching the learners (``resize_rollout``
adds or removes rollout workers between steps and brings newcomers to the current weights).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prism_ray.config import RunConfig
from prism_ray.config.kinds import phase_kind
from prism_ray.driver.assets import RunAssets

if TYPE_CHECKING:  # the actor modules import Ray and torch: only where a role is built
    from prism_ray.actors.discriminator_group import DiscriminatorLearnerGroup
    from prism_ray.actors.policy_group import PolicyLearnerGroup
    from prism_ray.actors.rollout_pool import RolloutPool
    from prism_ray.actors.verifier import VerifierPool
    from prism_ray.sync.coordinator import WeightSync


def needed_roles(config: RunConfig) -> set[str]:
    roles: set[str] = set()
    for phase in config.phases:
        if phase.enabled:
            roles |= phase_kind(phase.kind).roles
    # An enabled eval phase also evaluates at the start and after every training phase.
    return roles


def actor_env(config: RunConfig) -> dict[str, str]:
    """Environment of every actor: the cluster's env_vars plus the torch thread count."""
    env = dict(config.cluster.env_vars)
    if config.cluster.torch_threads is not None:
        env.setdefault("OMP_NUM_THREADS", str(config.cluster.torch_threads))
    return env


def sync_backend(config: RunConfig) -> str:
    """cuda_ipc | nccl | gloo for the configured transport and placement."""
    learner_gpus = config.policy.resources.num_gpus
    transport = config.sync.transport
    if transport == "auto":
        shared = 0 < learner_gpus < 1 and 0 < config.rollout.resources.num_gpus < 1
        transport = "cuda_ipc" if shared else "broadcast"
    if transport == "cuda_ipc":
        return "cuda_ipc"
    return "nccl" if learner_gpus > 0 else "gloo"


@dataclass
class Roles:
    config: RunConfig
    policy: PolicyLearnerGroup | None = None
    rollout: RolloutPool | None = None
    verifier: VerifierPool | None = None
    discriminator: DiscriminatorLearnerGroup | None = None
    sync: WeightSync | None = None

    @classmethod
    def build(cls, config: RunConfig, assets: RunAssets, log=print) -> Roles:
        """Start every needed role at once (each group waits for its own actors, so their
        start-up — imports, model loading, DeepSpeed set-up — overlaps), then wire the sync."""
        builders = _builders(config, assets, log)
        roles = cls(config)
        errors: list[BaseException] = []
        with ThreadPoolExecutor(max_workers=max(1, len(builders)),
                                thread_name_prefix="roles") as pool:
            futures = {name: pool.submit(build) for name, build in builders.items()}
            for name, future in futures.items():  # every build ends before we go on
                try:
                    setattr(roles, name, future.result())
                except BaseException as error:  # noqa: BLE001 - re-raised below
                    errors.append(error)
        try:
            if errors:
                raise errors[0]
            if roles.policy is not None and roles.rollout is not None:
                roles.sync = roles._connect_sync()
                # Workers that join (a resize, or a replacement for a lost one) receive the
                # current weights before they serve.
                roles.rollout.on_new_workers = roles._bring_up_to_date
        except BaseException:
            roles.shutdown()
            raise
        return roles

    def _connect_sync(self):
        from prism_ray.sync.coordinator import WeightSync

        # A receiver found dead during a sync is replaced by the pool; the sync then forms
        # the group again and pushes the version to every worker, the newcomer included.
        sync = WeightSync(self.policy.actors, sync_backend(self.config),
                          self.config.sync.bucket_mb * 2**20,
                          replace=self.rollout.replace_workers,
                          ipc_buffer_bytes=self.config.sync.ipc_buffer_mb * 2**20)
        sync.connect(self.rollout.group.actors)
        return sync

    def _bring_up_to_date(self, _new_workers: list) -> None:
        self.sync.resync(self.rollout.group.actors)

    def resize_rollout(self, num_workers: int) -> None:
        """Scale rollout between steps; new workers receive the current weights at once."""
        current = self.rollout.num_workers
        if num_workers > current:
            self.rollout.add_workers(num_workers - current)  # synced by the pool's hook
        elif num_workers < current:
            self.rollout.remove_workers(current - num_workers)
            if self.sync is not None:
                self.sync.connect(self.rollout.group.actors)

    def shutdown(self) -> None:
        for role in (self.rollout, self.verifier, self.policy, self.discriminator):
            if role is not None:
                role.shutdown()


def _builders(config: RunConfig, assets: RunAssets, log) -> dict[str, Callable[[], Any]]:
    """Each needed role's name → a function that starts it (announced here, in order)."""
    timeout, env = config.cluster.placement_timeout_s, actor_env(config)
    wanted = needed_roles(config)

    def policy():
        from prism_ray.actors.policy_group import PolicyLearnerGroup

        return PolicyLearnerGroup(assets.policy, config.policy, config.seed,
                                  system_prompt=config.system_prompt, env_vars=env,
                                  placement_timeout_s=timeout)

    def rollout():
        from prism_ray.actors.rollout_pool import RolloutPool

        return RolloutPool(config.rollout, assets.policy, seed=config.seed,
                           system_prompt=config.system_prompt, env_vars=env,
                           placement_timeout_s=timeout)

    def discriminator():
        from prism_ray.actors.discriminator_group import DiscriminatorLearnerGroup

        return DiscriminatorLearnerGroup(assets.discriminator, config.discriminator,
                                         config.seed, system_prompt=config.system_prompt,
                                         env_vars=env, placement_timeout_s=timeout)

    def verifier():
        from prism_ray.actors.verifier import VerifierPool

        return VerifierPool(config.verifier, timeout, env_vars=env)

    d = config.discriminator
    announce = {
        "policy": f"policy learner: {config.policy.num_ranks} rank(s), "
                  f"ZeRO-{config.policy.zero_stage}",
        "rollout": f"rollout: {config.rollout.num_workers} × "
                   f"{config.rollout.backend.value} worker(s)",
        "discriminator": f"discriminator learner: {d.learner.num_ranks} rank(s), "
                         f"{d.num_experts} experts top-{d.top_k}, ZeRO-{d.learner.zero_stage}",
        "verifier": f"verifier: {config.verifier.num_workers} worker(s)",
    }
    builders = {name: build for name, build in (
        ("policy", policy), ("rollout", rollout), ("discriminator", discriminator),
        ("verifier", verifier)) if name in wanted}
    for name in builders:
        log(f"[roles] {announce[name]}")
    return builders
