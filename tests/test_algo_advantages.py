import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prism_ray.algo import group_advantages, group_mean_std

_rewards = st.lists(st.floats(-100, 100, allow_nan=False, width=32), min_size=1, max_size=24)


def _grouped(draw_rewards: list[float], num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    rewards = torch.tensor(draw_rewards, dtype=torch.float64)
    group_ids = torch.arange(len(draw_rewards)) % num_groups
    return rewards, group_ids


def test_grpo_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 5.0])
    group_ids = torch.tensor([7, 7, 7, 7, 3])  # ids need not be contiguous
    advantages, metrics = group_advantages(rewards, group_ids)
    std = math.sqrt(4 * 0.25 / 3)  # unbiased: sum of squared deviations / (n - 1)
    expected = [
        0.5 / (std + 1e-6),
        -0.5 / (std + 1e-6),
        -0.5 / (std + 1e-6),
        0.5 / (std + 1e-6),
        0.0,
    ]
    assert torch.allclose(advantages, torch.tensor(expected), atol=1e-6)
    assert metrics["zero_std_group_frac"] == 0.5


def test_no_std_variant_by_hand():
    advantages, _ = group_advantages(
        torch.tensor([1.0, 0.0, 2.0, 4.0]), torch.tensor([0, 0, 1, 1]), normalize_std=False
    )
    assert advantages.tolist() == [0.5, -0.5, -1.0, 1.0]


def test_group_of_one_is_zero_not_nan():
    advantages, _ = group_advantages(torch.tensor([3.0]), torch.tensor([0]))
    assert advantages.tolist() == [0.0]
    _, std = group_mean_std(torch.tensor([3.0]), torch.tensor([0]))
    assert std.tolist() == [0.0]


def test_no_gradient_into_rewards():
    rewards = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)
    advantages, _ = group_advantages(rewards, torch.tensor([0, 0, 0]))
    assert not advantages.requires_grad


@settings(max_examples=60, deadline=None)
@given(_rewards, st.integers(1, 4))
def test_zero_mean_per_group(values, num_groups):
    rewards, group_ids = _grouped(values, num_groups)
    advantages, _ = group_advantages(rewards, group_ids)
    for group in group_ids.unique():
        assert abs(advantages[group_ids == group].sum().item()) < 1e-6 * (1 + len(values))


@settings(max_examples=60, deadline=None)
@given(_rewards, st.integers(1, 4), st.floats(-50, 50, allow_nan=False))
def test_invariant_to_shifting_rewards(values, num_groups, shift):
    rewards, group_ids = _grouped(values, num_groups)
    base, _ = group_advantages(rewards, group_ids)
    shifted, _ = group_advantages(rewards + shift, group_ids)
    assert torch.allclose(base, shifted, atol=1e-3)


@settings(max_examples=40, deadline=None)
@given(st.floats(-100, 100, allow_nan=False), st.integers(1, 16), st.booleans())
def test_equal_rewards_give_zero(value, size, normalize_std):
    advantages, _ = group_advantages(
        torch.full((size,), value, dtype=torch.float64),
        torch.zeros(size, dtype=torch.long),
        normalize_std=normalize_std,
    )
    assert torch.all(advantages == 0)
