"""A learner group: a gang of learner ranks, their rendezvous, and collective fan-out.

Each call's list goes into the object store once and every rank gets the same reference;
ranks take their own shard and return global results, so the group returns rank 0's
answer. Calls are collectives: they always go to every rank.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from prism_ray.actors.group import ActorGroup
from prism_ray.config.schema import LearnerConfig, OptimizerConfig


class LearnerGroup:
    def __init__(self, role: str, cls: type, config: LearnerConfig,
                 init_kwargs: dict[str, Any], *, placement_timeout_s: float,
                 env_vars: dict[str, str] | None = None,
                 call_timeout_s: float | None = None) -> None:
        """``call_timeout_s`` turns a hung collective (a rank that died mid-step) into
        GetTimeoutError instead of a hang."""
        self.call_timeout_s = call_timeout_s
        self.group = ActorGroup(role, cls, config.num_ranks, config.resources, gang=True,
                                placement_timeout_s=placement_timeout_s, env_vars=env_vars,
                                init_kwargs=init_kwargs)
        addr, port = self.group.master_address()
        self.backend = self.group.get(lambda a: a.setup.remote(addr, port))[0]

    @property
    def actors(self) -> list:
        return self.group.actors

    def _all(self, method: Callable[[Any], Any], *args, **kwargs) -> list:
        """Call ``method(actor)`` on every rank; lists travel once through the object store."""
        refs = [ray.put(a) if isinstance(a, list | tuple) else a for a in args]
        return self.group.get(lambda actor: method(actor).remote(*refs, **kwargs),
                              timeout=self.call_timeout_s)

    def configure_optimizer(self, optimizer: OptimizerConfig, total_steps: int) -> None:
        self._all(lambda a: a.configure_optimizer, optimizer, total_steps)

    def reset_model(self, path: str | Path) -> None:
        self._all(lambda a: a.reset_model, str(path))

    def save_state(self, path: str | Path) -> None:
        self._all(lambda a: a.save_state, str(path))

    def load_state(self, path: str | Path) -> None:
        self._all(lambda a: a.load_state, str(path))

    def save_hf(self, path: str | Path) -> Path:
        self._all(lambda a: a.save_hf, str(path))
        return Path(path)

    def shutdown(self) -> None:
        self.group.shutdown()
