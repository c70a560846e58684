"""Verifier pool: CPU actors scoring responses in batches with the rule-based verifier.

Each actor owns one ``Verifier`` (whose math-verify fallback runs in a child process with a
hard per-call timeout), built from the run's ``verifier`` section and the phase's ``reward``. Batches go to the least-loaded actor; results come back as they
finish. Timeouts and errors are counted, never fatal: a whole batch lost to a dead actor is
scored 0 and counted under ``error``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
    def __init__(self, config: VerifierConfig, placement_timeout_s: float,
                 env_vars: dict[str, str] | None = None) -> None:
        self.batch_size = config.batch_size
        self.group = ActorGroup("verifier", VerifierWorker, config.num_workers, config.resources,
                                gang=False, placement_timeout_s=placement_timeout_s,
                                env_vars=env_vars, init_kwargs={"settings": config},
                                max_restarts=3)  # a crashed verifier comes back for the next batch

    def score(self, requests: Sequence[VerifyRequest], reward: RewardConfig,
              on_batch: Callable[[int, int], None] | None = None) -> ScoreReport:
        """Score ``requests`` (results in request order). ``on_batch(done, total)`` is called
        as batches finish."""
        batches = [list(range(i, min(i + self.batch_size, len(requests))))
                   for i in range(0, len(requests), self.batch_size)]
        actors = self.group.actors
        load = {i: 0 for i in range(len(actors))}
        pending: dict[ray.ObjectRef, tuple[int, list[int]]] = {}
        for indices in batches:
            worker = min(load, key=load.get)
            load[worker] += 1
            ref = actors[worker].verify_batch.remote([requests[i] for i in indices], reward)
            pending[ref] = (worker, indices)
        results: list[VerifyResult | None] = [None] * len(requests)
        done = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            worker, indices = pending.pop(ready[0])
            for i, result in zip(indices, self._collect(ready[0], len(indices))):
                results[i] = result
            done += 1
            if on_batch:
                on_batch(done, len(batches))
        report = ScoreReport(results=results)  # type: ignore[arg-type]
        report.reasons.update(r.reason for r in results)
        return report

    @staticmethod
    def _collect(ref: ray.ObjectRef, count: int) -> list[VerifyResult]:
        try:
            return ray.get(ref)
        except ray.exceptions.RayError:
            lost = VerifyResult(score=0.0, accuracy=0.0, format_ok=False, reason=Reason.ERROR)
            return [lost] * count

    def shutdown(self) -> None:
        ray.get(self.group.each(lambda a: a.close.remote()))
        self.group.shutdown()
