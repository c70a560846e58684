"""RolloutPool: an elastic group of RolloutWorkers and the spreading of prompts over them.

Scheduling: a prompt's group of ``n`` samples is the unit (GRPO needs the group together and
one engine call samples it), costed at ``n`` samples. Units go, in prompt order, to the
worker with the least outstanding work (submitted and not yet collected, across calls still
in flight); each worker gets one call; results are gathered by object refs and put back in
prompt order.

Elasticity contract: ``add_workers(k)`` starts ``k`` workers from the pool's checkpoint, so
they hold the *initial* weights. If the pool was built with ``on_new_workers``, that callable
receives the new actor handles before ``add_workers`` returns and must bring them to the
current weights (e.g. the weight-sync broadcast to those actors); otherwise the caller must
do so with the returned handles before the next ``generate``. ``generate(...,
expect_version=v)`` checks every rollout's ``weight_version`` and raises on a stale worker.
``remove_workers(k)`` stops the ``k`` most recently added workers; only between calls (no
submission in flight), and at least one worker stays.

Worker loss: when a worker dies before or during a call, ``collect`` drops it, starts a
replacement (brought to the current weights by ``on_new_workers`` before it serves), and
re-submits exactly the dead call's prompts to the live workers, so no group is lost and none
is generated twice (groups are placed by prompt position). A round in which some call
succeeds shrinks what is left, so only rounds that lose every call count against
``MAX_REQUEUES`` (in a row); ``faults`` counts workers lost and prompts re-queued.
``replace_workers`` is the same replacement for a worker found dead elsewhere (the weight sync): it returns the new
member list and leaves bringing the newcomers to the current weights to its caller. A
newcomer that dies before it is ready is replaced in turn (up to ``MAX_REQUEUES`` times).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from prism_ray.actors.group import ActorGroup
from prism_ray.actors.rollout import RolloutWorker, sampling_params
from prism_ray.config.schema import RolloutConfig
from prism_ray.types import RLPrompt, Rollout, SamplingParams

ROLE = "rollout"
MAX_REQUEUES = 3


@dataclass
class PendingRollouts:
    """Work submitted to the pool; ``RolloutPool.collect`` turns it into rollouts."""

    num_prompts: int
    refs: list[Any]  # one ObjectRef per worker call
    indices: list[list[int]]  # prompt positions each call covers
    costs: list[tuple[int, int]]  # (worker key, cost) to release on collection
    prompts: list[RLPrompt] = field(default_factory=list)  # to re-queue a lost call
    params: SamplingParams | None = None
    actors: list[Any] = field(default_factory=list)  # the worker of each call


class RolloutPool:
    def __init__(
        self, config: RolloutConfig, checkpoint: str | Path, *, seed: int,
        system_prompt: str | None, placement_timeout_s: float, env_vars: dict[str, str] | None = None,
        on_new_workers: Callable[[list[Any]], None] | None = None,
    ) -> None:
        self.config = config
        self.on_new_workers = on_new_workers
        self.group = ActorGroup(
            ROLE, RolloutWorker, config.num_workers, config.resources, gang=False,
            placement_timeout_s=placement_timeout_s, env_vars=env_vars,
            init_kwargs=dict(checkpoint=str(checkpoint), backend=config.backend,
                             sampling=config.sampling, vllm=config.vllm, seed=seed,
                             system_prompt=system_prompt),
        )
        self._outstanding: dict[int, int] = {}  # id(actor handle) → samples in flight
        self.faults = {"workers_lost": 0, "prompts_requeued": 0}

    # ── generation ──────────────────────────────────────────────

    def default_params(self, n: int = 1, max_tokens: int = 256) -> SamplingParams:
        return sampling_params(self.config.sampling, n=n, max_tokens=max_tokens)

    def generate(
        self, prompts: Sequence[RLPrompt], params: SamplingParams,
        expect_version: int | None = None,
    ) -> list[list[Rollout]]:
        """``params.n`` rollouts per prompt, in prompt order (blocking)."""
        return self.collect(self.submit(prompts, params), expect_version)

    def submit(self, prompts: Sequence[RLPrompt], params: SamplingParams) -> PendingRollouts:
        actors = self.group.actors
        plan = self._assign(len(prompts), params.n, actors)
        refs, indices, costs, callees = [], [], [], []
        for actor, positions in zip(actors, plan):
            if not positions:
                continue
            refs.append(actor.generate.remote([prompts[i] for i in positions], params))
            indices.append(positions)
            costs.append((id(actor), len(positions) * params.n))
            callees.append(actor)
        for key, cost in costs:
            self._outstanding[key] = self._outstanding.get(key, 0) + cost
        return PendingRollouts(len(prompts), refs, indices, costs, list(prompts), params,
                               callees)

    def collect(
        self, pending: PendingRollouts, expect_version: int | None = None, _depth: int = 0
    ) -> list[list[Rollout]]:
        results: list[Any] = []
        lost: list[int] = []
        try:
            for i, ref in enumerate(pending.refs):
                try:
                    results.append(ray.get(ref))
                except ray.exceptions.RayActorError:
                    results.append(None)
                    lost.append(i)
        finally:
            for key, cost in pending.costs:
                self._outstanding[key] = self._outstanding.get(key, 0) - cost
        ordered: list[list[Rollout]] = [[] for _ in range(pending.num_prompts)]
        for positions, groups in zip(pending.indices, results):
            for position, group in zip(positions, groups or [], strict=groups is not None):
                ordered[position] = group
        if lost:
            self._recover(pending, lost, ordered, _depth)
        if expect_version is not None:
            _check_versions(ordered, expect_version)
        return ordered

    def _recover(self, pending: PendingRollouts, lost: list[int],
                 ordered: list[list[Rollout]], depth: int) -> None:
        """Replace the dead workers and regenerate exactly their prompts (see module doc)."""
        if depth >= MAX_REQUEUES or not pending.actors:
            raise RuntimeError(f"{ROLE}: workers kept dying ({len(lost)} call(s) lost after "
                               f"{depth} re-queue rounds); giving up on this batch")
        dead = list({id(pending.actors[i]): pending.actors[i] for i in lost}.values())
        # A worker already replaced elsewhere (the weight sync found it dead) is not a member.
        lost_members = self._forget(dead)
        if lost_members:
            self.add_workers(lost_members)  # replacements hold the current weights first
        positions = [p for i in lost for p in pending.indices[i]]
        self.faults["prompts_requeued"] += len(positions)
        print(f"[{ROLE}] {len(dead)} worker(s) lost; {len(positions)} prompt(s) re-queued on "
              f"{self.num_workers} worker(s)", flush=True)
        again = self.submit([pending.prompts[p] for p in positions], pending.params)
        progress = len(lost) < len(pending.refs)  # some call of this round came back
        for position, group in zip(positions, self.collect(again, _depth=0 if progress
                                                           else depth + 1)):
            ordered[position] = group

    def _assign(self, num_prompts: int, n: int, actors: list[Any]) -> list[list[int]]:
        """Greedy least-loaded: each prompt (cost n) to the worker with the least work."""
        load = [self._outstanding.get(id(a), 0) for a in actors]
        plan: list[list[int]] = [[] for _ in actors]
        for position in range(num_prompts):
            worker = min(range(len(actors)), key=load.__getitem__)
            plan[worker].append(position)
            load[worker] += n
        return plan

    # ── membership ──────────────────────────────────────────────

    @property
    def num_workers(self) -> int:
        return len(self.group)

    def add_workers(self, count: int) -> list[Any]:
        """Start ``count`` workers (see the module doc for the weight contract)."""
        new = self._start(count)
        if self.on_new_workers is not None:
            self.on_new_workers(new)
        return new

    def replace_workers(self, dead: Sequence[Any]) -> list[Any]:
        """Drop workers found dead and start as many in their place; returns every member.
        The caller brings the newcomers to the current weights (the weight sync does)."""
        self._start(self._forget(dead))
        print(f"[{ROLE}] {len(dead)} worker(s) lost and replaced", flush=True)
        return self.group.actors

    def _forget(self, dead: Sequence[Any]) -> int:
        """Drop the dead workers that are still members; returns how many were."""
        members = 0
        for actor in dead:
            self._outstanding.pop(id(actor), None)
            if any(a._actor_id == actor._actor_id for a in self.group.actors):
                self.group.discard(actor)
                members += 1
        self.faults["workers_lost"] += members
        return members

    def _start(self, count: int) -> list[Any]:
        """``count`` new workers, ready; one that dies while starting is replaced."""
        ready: list[Any] = []
        for _ in range(MAX_REQUEUES + 1):
            new = self.group.add(count - len(ready))
            failed = []
            for actor in new:
                try:
                    ray.get(actor.ready.remote())
                    ready.append(actor)
                except ray.exceptions.RayActorError:
                    failed.append(actor)
            self._forget(failed)
            if len(ready) == count:
                return ready
        raise RuntimeError(f"{ROLE}: new workers kept dying while starting")

    def remove_workers(self, count: int) -> None:
        if any(self._outstanding.get(id(a), 0) for a in self.group.actors):
            raise RuntimeError(f"{ROLE}: cannot remove workers while rollouts are in flight")
        leaving = self.group.actors[-count:] if count > 0 else []
        self.group.remove(count)
        for actor in leaving:
            self._outstanding.pop(id(actor), None)

    # ── fan-out ─────────────────────────────────────────────────

    def weight_versions(self) -> list[int]:
        return self.group.get(lambda a: a.weight_version.remote())

    def sleep(self) -> None:
        self.group.get(lambda a: a.sleep.remote())

    def wake_up(self) -> None:
        self.group.get(lambda a: a.wake_up.remote())

    def shutdown(self) -> None:
        self.group.shutdown()
        self._outstanding.clear()

    def __enter__(self) -> RolloutPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _check_versions(groups: list[list[Rollout]], expected: int) -> None:
    stale = {r.weight_version for group in groups for r in group} - {expected}
    if stale:
        raise RuntimeError(f"{ROLE}: rollouts with weight version(s) {sorted(stale)}, expected "
                           f"{expected}: a worker missed a weight sync")
