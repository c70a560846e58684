"""From verified rollouts to policy samples: rewards, DAPO filtering, advantages."""

from __future__ import annotations

import pytest
import torch

from prism_ray.config.phases import DAPO, GRPO, OverlongPenalty
from prism_ray.driver.datasets import Cursor
from prism_ray.driver.rewards import (
    concat,
    flatten_groups,
    informative_groups,
    outcome_metrics,
    policy_samples,
)
from prism_ray.types import RLPrompt, Rollout
from prism_ray.verify import Reason, VerifyResult


def prompt(i: int) -> RLPrompt:
    return RLPrompt(uid=f"p{i}", data_source="t", images=(bytes([i]),), question=f"q{i}",
                    ground_truth="1")


def rollout(i: int, j: int, length: int = 3) -> Rollout:
    return Rollout(f"p{i}", j, "x", tuple(range(length)), (-0.5,) * length, "stop", 0)


def result(correct: bool, ok: bool = True) -> VerifyResult:
    return VerifyResult(score=(1.0 if correct else 0.2) if ok else 0.0,
                        accuracy=float(correct), format_ok=ok,
                        reason=Reason.CORRECT if correct else Reason.WRONG)


def batch(accuracies: list[list[bool]], lengths: int = 3, algorithm=None):
    prompts = [prompt(i) for i in range(len(accuracies))]
    groups = [[rollout(i, j, lengths) for j in range(len(a))] for i, a in enumerate(accuracies)]
    results = [result(c) for a in accuracies for c in a]
    return flatten_groups(prompts, groups, results, algorithm)


def test_flatten_and_grpo_advantages_per_group():
    scored = batch([[True, False], [True, True]])
    assert scored.group_ids.tolist() == [0, 0, 1, 1]
    assert scored.rewards.tolist() == pytest.approx([1.0, 0.2, 1.0, 1.0])
    samples, _ = policy_samples(scored)
    adv = torch.tensor([s.advantage for s in samples])
    # Group 0: (±0.4) / std(0.566) → ±0.707; group 1: equal rewards → 0.
    assert adv[:2].tolist() == pytest.approx([0.7071, -0.7071], abs=1e-3)
    assert adv[2:].tolist() == [0.0, 0.0]
    assert samples[0].question == "q0" and samples[2].images == (bytes([1]),)
    assert samples[0].rollout_logprobs == (-0.5,) * 3


def test_dapo_overlong_penalty_enters_the_reward():
    dapo = DAPO(overlong=OverlongPenalty(max_tokens=8, buffer_tokens=4))
    scored = batch([[True, True]], lengths=6, algorithm=dapo)  # 2 over 8 - 4 → -0.5
    assert scored.rewards.tolist() == pytest.approx([0.5, 0.5])
    plain = batch([[True, True]], lengths=6, algorithm=None)
    assert plain.rewards.tolist() == [1.0, 1.0]
    assert GRPO().name == "grpo"  # GRPO carries no overlong settings at all


def test_dynamic_sampling_keeps_varied_groups_and_concat_truncates():
    first = batch([[True, False], [True, True], [False, False], [False, True]])
    useful, metrics = informative_groups(first)
    assert metrics["kept_group_frac"] == 0.5
    assert [p.uid for p in useful.prompts] == ["p0", "p3"]
    second, _ = informative_groups(batch([[True, False]]))
    joined = concat([useful, second], max_groups=2)
    assert [p.uid for p in joined.prompts] == ["p0", "p3"]
    assert joined.group_ids.tolist() == [0, 0, 1, 1]
    samples, _ = policy_samples(joined)
    assert samples[2].question == "q3"
    everything = concat([useful, second], max_groups=10)
    assert len(everything.prompts) == 3 and everything.group_ids.tolist()[-2:] == [2, 2]


def test_outcome_metrics():
    scored = batch([[True, False], [False, False]])
    m = outcome_metrics(scored)
    assert m["accuracy"] == 0.25 and m["format_rate"] == 1.0 and m["response_len"] == 3


def test_cursor_walks_epochs_without_repeats_and_resumes_exactly():
    cursor = Cursor(size=5, seed=7)
    first = cursor.take(3) + cursor.take(2)
    assert sorted(first) == list(range(5))  # one epoch, each row once
    state = cursor.state()
    ahead = cursor.take(4)
    resumed = Cursor.from_state(state)
    assert resumed.take(4) == ahead
    assert Cursor(size=5, seed=8).take(5) != first  # the seed decides the order
