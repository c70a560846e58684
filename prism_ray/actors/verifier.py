"""Verifier pool: CPU actors scoring responses in batches with the rule-based verifier.

Each actor owns one ``Verifier`` (whose math-verify fallback runs in a child process with a
hard per-call timeout), built from the run's ``verifier`` section and the phase's ``reward``.
Batches go to idle workers, one in flight per worker; results are put back in request order.

Faults, never fatal, every response verified exactly once:
- a worker that died (between calls, or under a batch) is dropped and replaced, and its batch
  verified again on a live worker (up to ``MAX_ATTEMPTS`` times; after that its responses
  count as ``error``). ``faults``: ``workers_lost``, ``batches_requeued``.
- a batch that runs past its deadline (``timeout_s`` per response + ``startup_timeout_s``:
  the per-response timeout in the child did not hold) has its worker killed and replaced; its
  responses are verified again one by one, and a lone response that hangs again is a
  ``timeout``. ``faults``: ``hung_batches``. Timeouts of single checks (the child killed at
  ``timeout_s``) are the ``timeout`` reason of that response, counted in ``ScoreReport``.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray

from prism_ray.actors.group import ActorGroup, RayWorker
from prism_ray.config.phases import RewardConfig
from prism_ray.config.schema import VerifierConfig
from prism_ray.types import VerifyRequest
from prism_ray.verify import Reason, Verifier, VerifyResult


class VerifierWorker(RayWorker):
    def __init__(self, settings: VerifierConfig, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(rank, world_size)
        self.settings = settings
        self._verifiers: dict[RewardConfig, Verifier] = {}

    def verify_batch(self, requests: Sequence[VerifyRequest],
                     reward: RewardConfig) -> list[VerifyResult]:
        verifier = self._verifier(reward)
        return [verifier.verify(r.response, r.ground_truth, r.equivalent_answers)
                for r in requests]

    def _verifier(self, reward: RewardConfig) -> Verifier:
        # One child process per worker; a new reward setting only changes the arithmetic.
        if reward not in self._verifiers:
            for old in self._verifiers.values():
                old.close()
            self._verifiers = {reward: Verifier(self.settings, reward)}
        return self._verifiers[reward]

    def close(self) -> None:
        for verifier in self._verifiers.values():
            verifier.close()
        self._verifiers = {}


@dataclass
class ScoreReport:
    results: list[VerifyResult]
    reasons: Counter = field(default_factory=Counter)

    @property
    def timeouts(self) -> int:
        return self.reasons[Reason.TIMEOUT]

    @property
    def errors(self) -> int:
        return self.reasons[Reason.ERROR]


class VerifierPool:
    """Scores requests on a group of ``VerifierWorker`` actors (see the module doc)."""

    def __init__(self, config: VerifierConfig, placement_timeout_s: float,
                 env_vars: dict[str, str] | None = None,
                 worker_cls: type[VerifierWorker] = VerifierWorker) -> None:
        self.batch_size = config.batch_size
        # A batch may take its symbolic budget per response, plus a child's start-up.
        self._per_item_s, self._startup_s = config.timeout_s, config.startup_timeout_s
        self.group = ActorGroup("verifier", worker_cls, config.num_workers, config.resources,
                                gang=False, placement_timeout_s=placement_timeout_s,
                                env_vars=env_vars, init_kwargs={"settings": config})
        self.faults = {"workers_lost": 0, "batches_requeued": 0, "hung_batches": 0}

    def score(self, requests: Sequence[VerifyRequest], reward: RewardConfig,
              on_batch: Callable[[int, int], None] | None = None) -> ScoreReport:
        """Score ``requests`` (results in request order). ``on_batch(done, total)`` is called
        as batches finish."""
        queue = deque(_Batch(list(range(i, min(i + self.batch_size, len(requests)))))
                      for i in range(0, len(requests), self.batch_size))
        total, done = len(queue), 0
        results: list[VerifyResult | None] = [None] * len(requests)
        self._replace_dead()
        running: dict[ray.ObjectRef, tuple[Any, _Batch, float]] = {}
        while queue or running:
            self._dispatch(queue, running, requests, reward)
            deadline = min(d for _, _, d in running.values())
            ready, _ = ray.wait(list(running), num_returns=1,
                                timeout=max(deadline - time.monotonic(), 0.0))
            if not ready:
                self._expire(running, queue, results)
                continue
            actor, batch, _ = running.pop(ready[0])
            try:
                scored = ray.get(ready[0])
            except ray.exceptions.RayActorError:
                self._lost(actor, batch, queue, results)
                continue
            except ray.exceptions.RayError:  # the batch itself failed: its responses are errors
                scored = [_unverified(Reason.ERROR)] * len(batch.indices)
            for i, result in zip(batch.indices, scored, strict=True):
                results[i] = result
            done += 1
            if on_batch:
                on_batch(done, total)
        report = ScoreReport(results=results)  # type: ignore[arg-type]
        report.reasons.update(r.reason for r in results)
        return report

    # ── scheduling and faults ───────────────────────────────────

    def _dispatch(self, queue: deque, running: dict, requests: Sequence[VerifyRequest],
                  reward: RewardConfig) -> None:
        """One batch in flight per worker, so a batch's deadline starts when it starts."""
        busy = {actor._actor_id for actor, _, _ in running.values()}
        for actor in self.group.actors:
            if not queue:
                return
            if actor._actor_id in busy:
                continue
            batch = queue.popleft()
            ref = actor.verify_batch.remote([requests[i] for i in batch.indices], reward)
            budget = len(batch.indices) * self._per_item_s + self._startup_s
            running[ref] = (actor, batch, time.monotonic() + budget)

    def _lost(self, actor: Any, batch: _Batch, queue: deque,
              results: list[VerifyResult | None]) -> None:
        """A worker died under a batch: replace it and verify the batch again."""
        self._replace([actor])
        self.faults["batches_requeued"] += 1
        if batch.attempts >= MAX_ATTEMPTS:  # every worker it meets dies: give up on it
            _fill(results, batch.indices, Reason.ERROR)
            return
        queue.appendleft(_Batch(batch.indices, batch.attempts + 1, batch.alone))

    def _expire(self, running: dict, queue: deque, results: list[VerifyResult | None]) -> None:
        """Batches past their deadline: kill their hung workers and replace them. A batch of
        several responses is split and each verified once more alone; a lone response that
        hangs again is a timeout (never retried forever)."""
        now = time.monotonic()
        for ref, (actor, batch, deadline) in list(running.items()):
            if deadline > now:
                continue
            del running[ref]
            self.faults["hung_batches"] += 1
            print(f"[verifier] a batch of {len(batch.indices)} ran past its deadline: its "
                  "worker is killed and replaced", flush=True)
            self._replace([actor], hung=True)
            if len(batch.indices) == 1 or batch.alone:
                _fill(results, batch.indices, Reason.TIMEOUT)
            else:
                queue.extendleft(_Batch([i], alone=True) for i in reversed(batch.indices))

    def _replace_dead(self) -> None:
        """Replace workers that died between calls (a ping queued behind nothing)."""
        dead = []
        for actor in self.group.actors:
            try:
                ray.get(actor.ready.remote())
            except ray.exceptions.RayActorError:
                dead.append(actor)
        if dead:
            self._replace(dead)

    def _replace(self, actors: list[Any], hung: bool = False) -> None:
        for actor in actors:
            if any(a._actor_id == actor._actor_id for a in self.group.actors):
                self.group.discard(actor)  # kills a hung one
                self.faults["workers_lost"] += not hung
                self._start_one()

    def _start_one(self) -> None:
        for _ in range(MAX_ATTEMPTS + 1):
            (actor,) = self.group.add(1)
            try:
                ray.get(actor.ready.remote())
                return
            except ray.exceptions.RayActorError:  # died while starting: count it, try again
                self.group.discard(actor)
                self.faults["workers_lost"] += 1
        raise RuntimeError("verifier: new workers kept dying while starting")

    def shutdown(self) -> None:
        for ref in self.group.each(lambda a: a.close.remote()):
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError:
                pass  # died since its last batch: nothing of it to close
        self.group.shutdown()


MAX_ATTEMPTS = 3  # times one batch is verified again after its workers died under it


@dataclass(frozen=True)
class _Batch:
    indices: list[int]
    attempts: int = 0  # times verified again after a worker died under it
    alone: bool = False  # split out of a batch that hung: hanging again is a timeout


def _unverified(reason: Reason) -> VerifyResult:
    return VerifyResult(score=0.0, accuracy=0.0, format_ok=False, reason=reason)


def _fill(results: list[VerifyResult | None], indices: list[int], reason: Reason) -> None:
    for i in indices:
        results[i] = _unverified(reason)
