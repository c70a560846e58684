"""The SFT phase: masked cross-entropy on demonstrations, on the policy learner group."""

from __future__ import annotations

from dataclasses import dataclass

from prism_ray.algo import SFTAggregation
from prism_ray.config.phases import SFTPhase
from prism_ray.driver.context import RunContext
from prism_ray.driver.datasets import phase_records
from prism_ray.driver.loop import Draw, StepResult, Timer, run_steps


def run_sft(phase: SFTPhase, ctx: RunContext) -> None:
    demos = phase_records(phase, ctx.assets)
    print(f"[{phase.name}] {len(demos)} demonstrations, {phase.total_steps(len(demos))} steps "
          f"of {phase.batch_size}")
    run_steps(phase, ctx, demos, SFTStepper(phase, ctx))


@dataclass
class SFTStepper:
    phase: SFTPhase
    ctx: RunContext
    headline: tuple[str, ...] = ("policy/loss",)

    def configure(self, total_steps: int) -> None:
        self.ctx.roles.policy.configure_optimizer(self.phase.optimizer, total_steps)

    def step(self, draw: Draw, timer: Timer, steps_left: int) -> StepResult:
        batch = draw(self.phase.batch_size)
        with timer("policy"):
            metrics = self.ctx.roles.policy.sft_step(
                batch, SFTAggregation(self.phase.loss_aggregation), self.phase.max_seq_tokens)
        return StepResult({f"policy/{k}": v for k, v in metrics.items()},
                          tokens=int(metrics.get("tokens", 0)), sequences=len(batch))

    def finish(self) -> None:
        self.ctx.publish_weights()  # SFT steps do not sync: the rollout workers catch up once
