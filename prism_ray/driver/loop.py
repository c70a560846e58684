"""The one step loop every training phase runs, and the policy-gradient step it is built for.

``run_steps`` owns what all phases share: the optimizer schedule's length, resume (first step
and data position), elastic rollout, the global step counter, progress/metrics, checkpoints.
A phase supplies a ``Stepper``: what one step does with the records it draws.

The policy-gradient step (alignment, RLVR) is one template with explicit seams::

    collect      generate rollouts and score them             (timing: rollout, score)
    advantages   rewards/scores → per-rollout advantages
    critic       update anything trained beside the policy    (timing: discriminator)
    update       ``updates_per_step`` policy optimizer steps  (timing: policy)
    sync         push the new weights to the rollout workers  (timing: sync)

A phase kind overrides ``collect``, ``advantages`` and ``critic``; ``collect`` draws its
rollouts through ``generate``, which is where asynchrony lives, once, for every phase:
with ``max_staleness: k`` > 0 the rollout workers are kept up to k steps ahead (the next
steps' prompts are submitted before this step's update, never past the phase's last step), so
generation overlaps scoring and the update, and no sample is more than k weight versions old
(docs/async.md).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from prism_ray.algo import PolicyLoss
from prism_ray.types import PolicySample, RLPrompt, Rollout

if TYPE_CHECKING:
    from prism_ray.driver.context import RunContext
    from prism_ray.driver.roles import Roles

Draw = Callable[[int], list]  # count → the next records of the phase's data
Timer = Callable[[str], AbstractContextManager]  # section name → context that times it


@dataclass
class StepResult:
    metrics: dict[str, float]  # "role/name" keys; the progress record adds the phase prefix
    tokens: int = 0  # tokens trained on (throughput)
    sequences: int = 0  # sequences trained on (throughput)


class Stepper(Protocol):
    headline: tuple[str, ...]  # metric keys shown on the progress line

    def configure(self, total_steps: int) -> None:
        """Set up the optimizers for a phase of ``total_steps`` steps (before any resume)."""

    def step(self, draw: Draw, timer: Timer, steps_left: int) -> StepResult:
        """Run one step on records taken with ``draw``; ``steps_left``: how many steps of
        the phase follow this one (0 on its last step, also when a resume starts mid-phase)."""

    def finish(self) -> None:
        """After the last step (e.g. publish weights that changed without per-step sync)."""


@dataclass
class GradientWatch:
    """Says so, loudly, when a phase's updates carry no gradient (e.g. every RLVR group has
    equal rewards, so every advantage is 0): a warning after ``patience`` such steps in a
    row, and a count for the run summary. Reads the learners' ``*/grad_norm`` metrics."""

    phase: str
    patience: int = 3
    steps: int = 0
    silent: int = 0  # steps whose every learner reported a zero gradient (or no update)
    streak: int = 0

    def observe(self, metrics: dict[str, float]) -> str | None:
        norms = [v for k, v in metrics.items()
                 if k.endswith("/grad_norm") and math.isfinite(v)]
        skipped = any(k.endswith("skipped_update") for k in metrics)
        self.steps += 1
        if any(n > 0 for n in norms) or not (norms or skipped):  # learning, or not known
            self.streak = 0
            return None
        self.silent += 1
        self.streak += 1
        if self.streak == self.patience:
            return (f"[{self.phase}] WARNING: no gradient for {self.patience} steps in a row "
                    "(all advantages 0? every group has equal rewards) — the policy is not "
                    "learning")
        return None

    def summary(self) -> str | None:
        if not self.silent:
            return None
        return (f"{self.phase}: {self.silent} of {self.steps} step(s) had no gradient"
                + (" — its weights did not learn" if self.silent == self.steps else ""))


def run_steps(phase: Any, ctx: RunContext, records: Sequence, stepper: Stepper) -> None:
    total = phase.total_steps(len(records))
    stepper.configure(total)
    first, cursor = ctx.start(phase, len(records))  # restores learner states on resume
    progress = ctx.progress(phase, total, headline=stepper.headline)

    watch = GradientWatch(phase.name)

    def draw(count: int) -> list:
        return [records[i] for i in cursor.take(count)]

    for phase_step in range(first, total):
        ctx.before_step()
        result = stepper.step(draw, progress.timer, steps_left=total - 1 - phase_step)
        ctx.step += 1
        progress.step(phase_step, ctx.step, result.metrics, tokens=result.tokens,
                      sequences=result.sequences)
        warning = watch.observe(result.metrics)
        if warning:
            print(warning, flush=True)
        ctx.after_step(phase, phase_step, cursor, last=phase_step == total - 1)
    stepper.finish()
    if watch.summary():
        ctx.warnings.append(watch.summary())


# ───────────────────────────── the policy-gradient step ─────────────────────────────


def sample_accounting(prompts: Sequence[RLPrompt], groups: Sequence[Sequence[Rollout]],
                      n: int) -> dict[str, float]:
    """What one generation call returned against what it was asked for, by (prompt uid,
    sample index): samples missing and samples present more than once (both 0 when worker
    faults were absorbed; ``docs/fault-tolerance.md``)."""
    expected = Counter((p.uid, i) for p in prompts for i in range(n))
    got = Counter((r.prompt_uid, r.sample_index) for group in groups for r in group)
    return {"rollout/samples_lost": float(sum((expected - got).values())),
            "rollout/samples_duplicated": float(sum((got - expected).values()))}


def fault_metrics(roles: Roles) -> dict[str, float]:
    """Faults absorbed so far in the run (cumulative): rollout workers lost and prompts
    re-queued, weight syncs interrupted, verifier workers lost, batches re-queued or hung."""
    metrics = {f"rollout/{k}": float(v) for k, v in roles.rollout.faults.items()}
    if roles.sync is not None:
        metrics.update({f"sync/{k}": float(v) for k, v in roles.sync.faults.items()})
    if roles.verifier is not None:
        metrics.update({f"verifier/{k}": float(v) for k, v in roles.verifier.faults.items()})
    return metrics


@dataclass
class Collected:
    """One step's scored rollouts: ``groups[i]`` are the rollouts of ``prompts[i]``."""

    prompts: list[RLPrompt]
    groups: list[list[Rollout]]
    scores: Any  # what ``advantages`` and ``critic`` read (verifier or discriminator output)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not any(self.groups)


@dataclass
class Submitted:
    """Rollouts asked for ahead of the step that trains on them."""

    prompts: list[RLPrompt]
    pending: Any  # actors.rollout_pool.PendingRollouts
    version: int  # the weight version the learner had published when this was submitted


@dataclass
class PolicyGradientStepper:
    """The template of alignment and RLVR steps (see the module docstring)."""

    phase: Any  # config.phases.PolicyGradientPhase
    ctx: RunContext
    headline: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.loss = PolicyLoss.from_settings(self.loss_settings())
        self._ahead: deque[Submitted] = deque()
        self._steps_left = 0  # steps of the phase after the one running (set by ``step``)

    # ── generation: synchronous, or up to max_staleness steps ahead ──────

    def generate(self, draw: Draw, timer: Timer, count: int, round_index: int = 0
                 ) -> tuple[list[RLPrompt], list[list[Rollout]], dict[str, float]]:
        """``count`` prompts and their groups of rollouts, plus staleness metrics.

        Synchronous when ``max_staleness`` is 0 (or for extra rounds of a step): draw,
        generate, return. Otherwise the oldest submission is collected and the queue topped
        up to ``max_staleness`` submissions in flight, one per step still to come (none on
        the phase's last step: nothing is generated that no step trains on), so the workers
        generate the next steps' rollouts while this step scores and updates. Workers run
        calls in order, so a submission made at published version v is generated with v; a
        group older than ``max_staleness`` versions at training time is dropped and counted
        (never trained on).
        """
        pool, k = self.ctx.roles.rollout, self.phase.max_staleness
        if k == 0 or round_index > 0:
            prompts = draw(count)
            with timer("rollout"):
                groups = pool.generate(prompts, self.ctx.rollout_params(self.phase, round_index))
            return prompts, groups, sample_accounting(prompts, groups, self.phase.samples_per_prompt)
        if not self._ahead:
            self._submit(draw, count)
        current = self._ahead.popleft()
        while len(self._ahead) < min(k, self._steps_left):
            self._submit(draw, count)
        with timer("rollout"):
            groups = pool.collect(current.pending)
        ages = [self.ctx.version - g[0].weight_version for g in groups if g]
        keep = [age <= k for age in ages]
        metrics = {"rollout/staleness_mean": sum(ages) / max(len(ages), 1),
                   "rollout/staleness_max": float(max(ages, default=0)),
                   "rollout/stale_groups_dropped": float(keep.count(False)),
                   **sample_accounting(current.prompts, groups, self.phase.samples_per_prompt)}
        prompts = [p for p, ok in zip(current.prompts, keep) if ok]
        return prompts, [g for g, ok in zip(groups, keep) if ok], metrics

    def _submit(self, draw: Draw, count: int) -> None:
        prompts = draw(count)
        # A distinct sampling seed per submission: a function of the run, the step it was
        # submitted at and its place in the queue, so a rerun samples the same.
        params = self.ctx.rollout_params(self.phase, 1000 + len(self._ahead))
        self._ahead.append(Submitted(prompts, self.ctx.roles.rollout.submit(prompts, params),
                                     self.ctx.version))

    def drain(self) -> int:
        """Collect and discard what is still in flight; returns how many submissions were
        dropped. ``generate`` submits nothing past the phase's last step, so this is 0 after a
        phase that ran to its end; it matters when the steps stop early."""
        dropped = len(self._ahead)
        while self._ahead:
            self.ctx.roles.rollout.collect(self._ahead.popleft().pending)
        return dropped

    # ── seams a phase kind fills in ─────────────────────────────

    def loss_settings(self) -> Any:
        """The config object naming the loss and its clip (``PolicyLoss.from_settings``)."""
        return self.phase

    def collect(self, draw: Draw, timer: Timer) -> Collected:
        raise NotImplementedError

    def advantages(self, batch: Collected) -> tuple[list[PolicySample], dict[str, float]]:
        raise NotImplementedError

    def critic(self, batch: Collected) -> dict[str, float]:
        return {}

    def configure_critic(self, total_steps: int) -> None:
        pass

    # ── the loop body ───────────────────────────────────────────

    def configure(self, total_steps: int) -> None:
        self.ctx.roles.policy.configure_optimizer(self.phase.optimizer,
                                                  total_steps * self.phase.updates_per_step)
        self.configure_critic(total_steps)

    def step(self, draw: Draw, timer: Timer, steps_left: int) -> StepResult:
        roles = self.ctx.roles
        self._steps_left = steps_left
        batch = self.collect(draw, timer)
        metrics = dict(batch.metrics)
        metrics["rollout/num_workers"] = float(roles.rollout.num_workers)
        metrics.update(fault_metrics(roles))
        if batch.empty:
            metrics["policy/skipped_update"] = 1.0
            return StepResult(metrics)
        samples, advantage_metrics = self.advantages(batch)
        metrics.update({f"advantage/{k}": v for k, v in advantage_metrics.items()})
        with timer("discriminator"):
            metrics.update(self.critic(batch))
        with timer("policy"):
            learner = roles.policy.policy_updates(samples, self.loss, self.phase.updates_per_step)
        metrics.update({f"policy/{k}": v for k, v in learner.items()})
        with timer("sync"):
            stats = roles.sync.push(self.ctx.version + 1)
            self.ctx.version = stats.version
        metrics.update({"sync/bytes": float(stats.bytes), "sync/seconds": stats.seconds,
                        "sync/gb_per_s": stats.gb_per_s})
        if stats.limit_share is not None:
            metrics["sync/copy_limit_share"] = stats.limit_share
        return StepResult(metrics, tokens=sum(len(s.response_ids) for s in samples),
                          sequences=len(samples))

    def finish(self) -> None:
        # Every step already synced its weights; nothing should be in flight (see ``drain``).
        dropped = self.drain()
        if dropped:
            print(f"[{self.phase.name}] {dropped} rollout batch(es) generated ahead were not "
                  "trained on", flush=True)
