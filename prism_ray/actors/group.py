"""Actor groups: one object owns a role's actors, their placement, rank wiring and fan-out.

Two placement shapes:
- gang (learners): one placement group with a bundle per rank; all ranks or none.
- elastic (rollout workers): a placement group per actor, so actors can be added and
  removed between steps without touching the rest of the cluster.

Actor classes are plain Python classes; they are made remote here, with the resources of
the role from the config (never hard-coded in a decorator).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from prism_ray.config.schema import Resources


class PlacementError(RuntimeError):
    """A role's resources could not be placed on the cluster within the timeout."""


class RayWorker:
    """Base of every actor class: identity and the bits of rank wiring Ray does not give."""

    def __init__(self, rank: int = 0, world_size: int = 1) -> None:
        self.rank, self.world_size = rank, world_size

    def node_address(self) -> str:
        return ray.util.get_node_ip_address()

    def free_port(self) -> int:
        with socket.socket() as s:
            s.bind(("", 0))
            return s.getsockname()[1]

    def pid(self) -> int:
        return os.getpid()

    def ready(self) -> bool:
        return True


@dataclass
class _Member:
    actor: Any
    group: Any  # the placement group holding it (shared for gang groups)


def bundle(resources: Resources) -> dict[str, float]:
    spec = {"CPU": resources.num_cpus}
    if resources.num_gpus:
        spec["GPU"] = resources.num_gpus
    if resources.memory_gb:
        spec["memory"] = resources.memory_gb * 2**30
    return spec


class ActorGroup:
    def __init__(
        self,
        role: str,
        cls: type,
        num_actors: int,
        resources: Resources,
        *,
        gang: bool,
        placement_timeout_s: float,
        env_vars: dict[str, str] | None = None,
        init_kwargs: dict[str, Any] | None = None,
        max_restarts: int = 0,
    ) -> None:
        self.role, self.resources, self.gang = role, resources, gang
        self.max_restarts = max_restarts
        self.timeout_s = placement_timeout_s
        self._remote_cls = ray.remote(cls)
        self._env = {"env_vars": dict(env_vars)} if env_vars else None
        self._init_kwargs = dict(init_kwargs or {})
        self._members: list[_Member] = []
        self._next_rank = 0
        # Actors are named ``<role>:<group>:<rank>`` (``ray list actors`` shows whose is whose;
        # ``actors.chaos`` finds the rollout and verifier workers by it).
        self._name = f"{role}:{uuid.uuid4().hex[:8]}"
        if gang:
            pg = self._place([bundle(resources)] * num_actors, "PACK")
            for i in range(num_actors):
                self._spawn(pg, bundle_index=i, world_size=num_actors)
        else:
            self.add(num_actors)
        self.wait_ready()

    # ── membership ──────────────────────────────────────────────

    @property
    def actors(self) -> list[Any]:
        return [m.actor for m in self._members]

    def __len__(self) -> int:
        return len(self._members)

    def add(self, count: int) -> list[Any]:
        """Start ``count`` more actors (elastic groups), each in its own placement group."""
        if self.gang and self._members:
            raise RuntimeError(f"{self.role}: a gang-scheduled group cannot grow")
        new = []
        for _ in range(count):
            pg = self._place([bundle(self.resources)], "PACK")
            new.append(self._spawn(pg, bundle_index=0, world_size=0))
        return new

    def remove(self, count: int) -> None:
        """Stop the ``count`` most recently added actors and release their resources."""
        if self.gang:
            raise RuntimeError(f"{self.role}: a gang-scheduled group cannot shrink")
        if count >= len(self._members):
            raise ValueError(f"{self.role}: cannot remove {count} of {len(self)} actors")
        for member in self._members[-count:]:
            ray.kill(member.actor)
            remove_placement_group(member.group)
        del self._members[-count:]

    def discard(self, actor: Any) -> None:
        """Drop one actor (e.g. one that died) and release its resources; elastic groups."""
        if self.gang:
            raise RuntimeError(f"{self.role}: a gang-scheduled group cannot lose a member")
        for i, member in enumerate(self._members):
            if member.actor is actor or member.actor._actor_id == actor._actor_id:
                ray.kill(member.actor, no_restart=True)
                remove_placement_group(member.group)
                del self._members[i]
                return
        raise ValueError(f"{self.role}: that actor is not a member")

    def shutdown(self) -> None:
        groups = {id(m.group): m.group for m in self._members}
        for member in self._members:
            ray.kill(member.actor)
        for pg in groups.values():
            remove_placement_group(pg)
        self._members = []

    # ── fan-out ─────────────────────────────────────────────────

    def each(self, call: Callable[[Any], Any]) -> list[Any]:
        """``call(actor)`` for every actor (it returns an ObjectRef); returns the refs."""
        return [call(m.actor) for m in self._members]

    def get(self, call: Callable[[Any], Any], timeout: float | None = None) -> list[Any]:
        return ray.get(self.each(call), timeout=timeout)

    def wait_ready(self) -> None:
        self.get(lambda a: a.ready.remote())

    def master_address(self) -> tuple[str, int]:
        """Address and a free port on rank 0's node, for torch.distributed rendezvous."""
        head = self._members[0].actor
        return ray.get(head.node_address.remote()), ray.get(head.free_port.remote())

    # ── internals ───────────────────────────────────────────────

    def _place(self, bundles: list[dict[str, float]], strategy: str):
        pg = placement_group(bundles, strategy=strategy)
        ready, _ = ray.wait([pg.ready()], timeout=self.timeout_s)
        if not ready:
            remove_placement_group(pg)
            raise PlacementError(self._placement_message(bundles))
        return pg

    def _placement_message(self, bundles: list[dict[str, float]]) -> str:
        need: dict[str, float] = {}
        for b in bundles:
            for k, v in b.items():
                need[k] = need.get(k, 0.0) + v
        free = ray.available_resources()
        short = {k: f"need {v:g}, free {free.get(k, 0.0):g}" for k, v in need.items()
                 if free.get(k, 0.0) < v}
        return (f"role '{self.role}': could not place {len(bundles)} × {bundles[0]} within "
                f"{self.timeout_s:g}s; missing: {short or 'fragmented resources'}. "
                f"Lower the role's resources or count in the config, or add nodes.")

    def _spawn(self, pg, bundle_index: int, world_size: int):
        rank = self._next_rank
        self._next_rank += 1
        options = dict(
            num_cpus=self.resources.num_cpus,
            num_gpus=self.resources.num_gpus,
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                placement_group=pg, placement_group_bundle_index=bundle_index
            ),
            max_restarts=self.max_restarts,
            name=f"{self._name}:{rank}",
        )
        if self.resources.memory_gb:
            options["memory"] = self.resources.memory_gb * 2**30
        if self._env:
            options["runtime_env"] = self._env
        actor = self._remote_cls.options(**options).remote(
            rank=rank, world_size=world_size, **self._init_kwargs
        )
        self._members.append(_Member(actor, pg))
        return actor
