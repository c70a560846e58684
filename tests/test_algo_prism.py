import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prism_ray.algo import prism_advantages, substitute_invalid_scores


def _normalised(values: list[float]) -> list[float]:
    mean, std = statistics.fmean(values), statistics.stdev(values)
    return [(v - mean) / (std + 1e-6) for v in values]


def test_invalid_substitution_rule():
    scores = torch.tensor([2.0, -1.0, 5.0, 3.0, 4.0, 0.0])
    invalid = torch.tensor([False, False, True, True, True, True])
    group_ids = torch.tensor([0, 0, 0, 0, 1, 1])  # group 1 has no valid rollout
    out = substitute_invalid_scores(scores, invalid, group_ids)
    assert out.tolist() == [2.0, -1.0, -2.0, -2.0, -1.0, -1.0]


def test_prism_advantage_by_hand():
    cap = torch.tensor([1.0, 3.0, 9.0])
    cot = torch.tensor([2.0, 0.0, -9.0])
    invalid = torch.tensor([False, False, True])
    advantages, metrics = prism_advantages(cap, cot, invalid, torch.tensor([0, 0, 0]))
    cap_hat = _normalised([1.0, 3.0, 0.0])  # invalid -> min(1, 3) - 1
    cot_hat = _normalised([2.0, 0.0, -1.0])  # invalid -> min(2, 0) - 1
    expected = [
        0.5 * a + 0.5 * b - 1.5 * f for a, b, f in zip(cap_hat, cot_hat, [0, 0, 1], strict=True)
    ]
    assert advantages.tolist() == pytest.approx(expected, abs=1e-6)
    assert metrics["valid_ratio"] == pytest.approx(2 / 3)
    assert metrics["caption_score_mean"] == pytest.approx(2.0)


def test_alpha_and_beta_are_parameters():
    cap, cot = torch.tensor([1.0, 2.0]), torch.tensor([5.0, 1.0])
    invalid = torch.tensor([False, False])
    only_cap, _ = prism_advantages(cap, cot, invalid, torch.tensor([0, 0]), alpha=1.0)
    assert only_cap.tolist() == pytest.approx(_normalised([1.0, 2.0]), abs=1e-6)
    _, _ = prism_advantages(cap, cot, invalid, torch.tensor([0, 0]), beta=0.0)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-10, 10), st.floats(-10, 10), st.booleans()), min_size=2, max_size=16
    )
)
def test_valid_only_group_advantage_is_zero_mean(rows):
    cap = torch.tensor([r[0] for r in rows])
    cot = torch.tensor([r[1] for r in rows])
    invalid = torch.tensor([r[2] for r in rows])
    advantages, _ = prism_advantages(cap, cot, invalid, torch.zeros(len(rows), dtype=torch.long))
    # the mix of two zero-mean terms is zero-mean; the format penalty shifts it by -beta * mean(F)
    assert advantages.mean().item() == pytest.approx(-1.5 * invalid.float().mean().item(), abs=1e-4)
    if invalid.any() and not invalid.all():
        assert advantages[invalid].max() < advantages[~invalid].max()
