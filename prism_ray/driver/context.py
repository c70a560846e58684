"""What the phases of one run share: config, paths, roles, counters, checkpoints, evaluations.

Phase runners talk to the run only through this object: ``start`` tells them where to begin
(a fresh phase, or the step and data position a resumed run stopped at), ``after_step``
writes periodic checkpoints (every ``checkpoint.every_steps`` steps and/or
``checkpoint.every_minutes`` of wall time), ``end_phase`` exports the phase's models and seals
a checkpoint at the phase boundary.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from prism_ray.actors.rollout import sampling_params
from prism_ray.config import RunConfig
from prism_ray.config.kinds import phase_kind
from prism_ray.driver.assets import RunAssets
from prism_ray.driver.checkpoint import CheckpointManager, DriverState
from prism_ray.driver.datasets import Cursor
from prism_ray.driver.progress import PhaseProgress
from prism_ray.driver.roles import Roles
from prism_ray.driver.tracking import Tracker
from prism_ray.types import SamplingParams


@dataclass
class RunContext:
    config: RunConfig
    run_dir: Path
    assets: RunAssets
    roles: Roles
    tracker: Tracker
    checkpoints: CheckpointManager
    phase_index: int = 0
    step: int = 0  # global optimizer-step counter across phases
    version: int = 0  # weight version served by the rollout workers
    evaluations: list[dict] = field(default_factory=list)
    phase_wall_s: dict[str, float] = field(default_factory=dict)  # phase name → training time
    warnings: list[str] = field(default_factory=list)  # repeated in the run summary
    resume: DriverState | None = None  # set while the phase that was interrupted restarts
    resume_dir: Path | None = None
    last_checkpoint: float = field(default_factory=time.monotonic)  # when one was last sealed

    @property
    def metrics_file(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    def progress(self, phase, total_steps: int, headline: tuple[str, ...] = ()) -> PhaseProgress:
        return PhaseProgress(phase.name, total_steps, self.metrics_file, headline,
                             sink=self.tracker.log_metrics)

    def phase_seed(self, phase) -> int:
        return self.config.seed if phase.seed is None else phase.seed

    def rollout_params(self, phase, round_index: int = 0) -> SamplingParams:
        """Sampling of a policy-gradient phase's rollout call: the phase's sampling (or the
        rollout role's), its group size and length, and this step's seed."""
        return sampling_params(phase.sampling or self.config.rollout.sampling,
                               n=phase.samples_per_prompt, max_tokens=phase.max_response_tokens,
                               seed=self.step_seed(phase, round_index))

    def already_evaluated(self) -> bool:
        """Whether the current weight version has a row in the evaluation table."""
        return any(row["weights"] == f"v{self.version}" for row in self.evaluations)

    def step_seed(self, phase, round_index: int = 0) -> int:
        """Sampling seed of one rollout call: a function of the run, the step and the round,
        so a resumed run samples exactly what the uninterrupted one would have."""
        return random.Random(f"{self.phase_seed(phase)}:{self.step}:{round_index}").getrandbits(31)

    # ── phase lifecycle ─────────────────────────────────────────

    def start(self, phase, num_records: int) -> tuple[int, Cursor]:
        """(first phase step, data cursor) — fresh, or where an interrupted run stopped. Call
        after the phase has configured its optimizers: learner states are restored here."""
        state, self.resume = self.resume, None
        if state is None or state.phase_done:
            return 0, Cursor(num_records, self.phase_seed(phase))
        print(f"[resume] {phase.name}: continuing at step {state.phase_step + 1}")
        for name, learner in self._learners():
            if name in self._trained_by(phase):
                learner.load_state(self.resume_dir / name)
            else:  # not in the checkpoint: the weights this phase started with
                source = self._weights_at_start(phase, name)
                if source is not None:
                    learner.reset_model(source)
        self.publish_weights(state.version)
        return state.phase_step, Cursor.from_state(state.cursor)

    def checkpoint_due(self) -> bool:
        """Whether the step just finished reaches ``every_steps`` or ``every_minutes``."""
        every = self.config.checkpoint
        by_steps = every.every_steps > 0 and self.step % every.every_steps == 0
        by_time = every.every_minutes > 0 and \
            time.monotonic() - self.last_checkpoint >= every.every_minutes * 60
        return by_steps or by_time

    def after_step(self, phase, phase_step: int, cursor: Cursor, last: bool = False) -> None:
        """A periodic checkpoint when one is due; never on a phase's ``last`` step, whose
        phase-end checkpoint follows. It holds the states of the learners this phase trains
        (the others keep the weights the phase started with)."""
        if not last and self.checkpoint_due():
            self._save(DriverState(self.phase_index, phase_step + 1, False, self.step,
                                   self.version, cursor.state(), self.tracker.run_id,
                                   list(self.evaluations)), learners=self._trained_by(phase))

    def end_phase(self, phase) -> None:
        """Export the phase's models (HF format) and seal a phase-boundary checkpoint."""
        exports = self.run_dir / "phases" / phase.name
        for name, learner in self._learners():
            learner.save_hf(exports / name)
        state = DriverState(self.phase_index, 0, True, self.step, self.version, None,
                            self.tracker.run_id, list(self.evaluations))
        path = self._save(state, learners=set(), exports=exports)
        print(f"[checkpoint] {phase.name} done: models in {exports}, checkpoint {path.name}")

    def before_step(self) -> None:
        """Elastic rollout: apply ``rollout.resize_at`` for the step about to run."""
        target = self.config.rollout.resize_at.get(self.step)
        if target is not None and self.roles.rollout is not None \
                and target != self.roles.rollout.num_workers:
            print(f"[rollout] step {self.step}: {self.roles.rollout.num_workers} → {target} "
                  "workers")
            self.roles.resize_rollout(target)

    def publish_weights(self, version: int | None = None) -> None:
        """Bring the rollout workers to the learner's current weights."""
        if self.roles.sync is None:
            return
        stats = self.roles.sync.push(self.version + 1 if version is None else version)
        self.version = stats.version
        print(f"[sync] v{stats.version}: {stats.bytes / 2**20:.1f} MiB in {stats.seconds:.2f}s "
              f"({stats.gb_per_s:.2f} GB/s, {stats.buckets} buckets"
              + (f", {stats.limit_share:.0%} of a device copy" if stats.limit_share else "")
              + ")")

    # ── internals ───────────────────────────────────────────────

    def _learners(self):
        for name in ("policy", "discriminator"):
            learner = getattr(self.roles, name)
            if learner is not None:
                yield name, learner

    def _trained_by(self, phase) -> set[str]:
        """The learner roles a phase trains (only those have optimizer state to save)."""
        return phase_kind(phase.kind).roles & {"policy", "discriminator"}

    def _weights_at_start(self, phase, name: str) -> Path | None:
        """Where a learner's weights came from when ``phase`` started: the phase's
        ``init_from``, else the export of the last training phase before it."""
        if phase.init_from and (Path(phase.init_from) / name).is_dir():
            return Path(phase.init_from) / name
        for earlier in reversed(self.config.phases[:self.phase_index]):
            export = self.run_dir / "phases" / earlier.name / name
            if earlier.enabled and export.is_dir():
                return export
        return None

    def _save(self, state: DriverState, learners: set[str], exports: Path | None = None) -> Path:
        tmp = self.checkpoints.begin(state.step)
        for name, learner in self._learners():
            if name in learners:
                learner.save_state(tmp / name)
        if exports is not None:
            (tmp / "exports").write_text(str(exports.resolve()) + "\n")
        path = self.checkpoints.commit(tmp, state)
        self.last_checkpoint = time.monotonic()
        return path
