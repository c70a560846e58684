"""The look-ahead queue of bounded-staleness steps (``driver.loop``), driven by the real step
loop and the real policy-gradient step over an in-memory rollout pool: every submitted batch
is trained on, none is generated past the phase's last step (also when a resumed run starts
mid-phase), and the queue is empty when the phase ends.

The pipeline tests (tests/test_pipeline_rlvr.py, tests/test_pipeline_prism.py) run the same
through real Ray actors; this one covers many (k, steps, first step) cases in milliseconds."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import pytest

from prism_ray.config.phases import RLVRPhase
from prism_ray.driver.datasets import Cursor
from prism_ray.driver.loop import Collected, PolicyGradientStepper, run_steps
from prism_ray.sync.endpoints import SyncStats
from prism_ray.types import RLPrompt, Rollout, SamplingParams


def rlvr_phase(steps: int, k: int) -> RLVRPhase:
    return RLVRPhase.model_validate({"data": [{"kind": "synthetic", "size": "tiny"}],
                                     "steps": steps, "prompts_per_step": 2,
                                     "samples_per_prompt": 2, "max_staleness": k})


@dataclass
class Pool:
    """Generates at submission time, stamped with the version the workers hold then."""

    version: int = 0
    submitted: list[list[str]] = field(default_factory=list)  # prompt uids per submission
    collected: int = 0
    num_workers: int = 1
    faults: dict = field(default_factory=dict)

    def submit(self, prompts, params):
        self.submitted.append([p.uid for p in prompts])
        return [[Rollout(prompt_uid=p.uid, sample_index=i, text="x", token_ids=(1,),
                         logprobs=(0.0,), finish_reason="stop", weight_version=self.version)
                 for i in range(params.n)] for p in prompts]

    def collect(self, pending):
        self.collected += 1
        return pending

    def generate(self, prompts, params):
        return self.collect(self.submit(prompts, params))


@dataclass
class Sync:
    pool: Pool
    faults: dict = field(default_factory=dict)

    def push(self, version: int) -> SyncStats:
        self.pool.version = version
        return SyncStats(version, 1, 1.0, 1)


@dataclass
class Policy:
    trained_on: list[list[str]] = field(default_factory=list)

    def configure_optimizer(self, optimizer, total_steps: int) -> None:
        pass

    def policy_updates(self, samples, loss, updates):
        return {}


@dataclass
class Roles:
    rollout: Pool
    sync: Sync
    policy: Policy
    verifier: None = None


class Progress:
    def timer(self, section: str):
        return nullcontext()

    def step(self, *args, **kwargs) -> None:
        pass


@dataclass
class Context:
    """The parts of ``RunContext`` the step loop and the policy-gradient step use."""

    roles: Roles
    first: int  # the phase step a (resumed) run starts at
    step: int = 0
    version: int = 0
    warnings: list = field(default_factory=list)

    def start(self, phase, num_records: int):
        return self.first, Cursor(num_records, 0)

    def progress(self, phase, total, headline=()):
        return Progress()

    def before_step(self) -> None:
        pass

    def after_step(self, *args, **kwargs) -> None:
        pass

    def rollout_params(self, phase, round_index: int = 0):
        return SamplingParams(n=phase.samples_per_prompt, max_tokens=4)


@dataclass
class Stepper(PolicyGradientStepper):
    def loss_settings(self):
        return self.phase.algorithm

    def collect(self, draw, timer) -> Collected:
        prompts, groups, metrics = self.generate(draw, timer, self.phase.prompts_per_step)
        self.ctx.roles.policy.trained_on.append([p.uid for p in prompts])
        return Collected(prompts, groups, None, metrics)

    def advantages(self, batch):
        return [], {}


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("steps,first", [(1, 0), (2, 0), (5, 0), (5, 2), (5, 4)])
def test_every_submission_is_trained_on_and_none_is_left_at_the_end(k, steps, first):
    phase = rlvr_phase(steps, k)
    pool = Pool()
    ctx = Context(Roles(pool, Sync(pool), Policy()), first=first)
    records = [RLPrompt(f"p{i}", "synthetic", (), "q", "a") for i in range(40)]
    stepper = Stepper(phase, ctx)

    run_steps(phase, ctx, records, stepper)

    ran = steps - first
    assert len(pool.submitted) == ran  # one generation per step run, none past the last
    assert pool.submitted == ctx.roles.policy.trained_on  # in order, nothing dropped
    assert pool.collected == ran and not stepper._ahead and stepper.drain() == 0
    assert ctx.version == ran  # one sync per step


def test_samples_are_at_most_k_versions_old():
    phase = rlvr_phase(6, 2)
    pool = Pool()
    ctx = Context(Roles(pool, Sync(pool), Policy()), first=0)
    ages = []

    @dataclass
    class Watching(Stepper):
        def collect(self, draw, timer):
            batch = super().collect(draw, timer)
            ages.append(batch.metrics["rollout/staleness_max"])
            return batch

    run_steps(phase, ctx, [RLPrompt(f"p{i}", "s", (), "q", "a") for i in range(40)],
              Watching(phase, ctx))
    # The first step's batch is fresh; then the queue fills up to 2 ahead.
    assert ages == [0.0, 1.0, 2.0, 2.0, 2.0, 2.0]
