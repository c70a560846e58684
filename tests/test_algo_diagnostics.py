"""Hand-computed cases for the within-group correlation the alignment phase reports."""

import pytest
import torch

from prism_ray.algo import within_group_correlation


def test_groups_are_centred_before_correlating():
    # Group 0 sits far above group 1 in both x and y: a plain Pearson correlation would be
    # near +1 from the group offsets alone. Inside each group x and y move in opposite
    # directions, so the within-group correlation is exactly -1.
    x = torch.tensor([10.0, 11.0, 0.0, 1.0])
    y = torch.tensor([5.0, 4.0, 0.0, -1.0])
    ids = torch.tensor([0, 0, 1, 1])
    assert within_group_correlation(x, y, ids) == pytest.approx(-1.0)


def test_partial_correlation_matches_hand_computation():
    # one group: deviations dx = (-1, 0, 1), dy = (-1, 1, 0): sum dxdy = 1, |dx|² = 2, |dy|² = 2
    x = torch.tensor([1.0, 2.0, 3.0])
    y = torch.tensor([0.0, 2.0, 1.0])
    assert within_group_correlation(x, y, torch.zeros(3, dtype=torch.long)) == pytest.approx(0.5)


def test_no_within_group_variation_gives_none():
    x = torch.tensor([1.0, 1.0, 2.0, 2.0])  # constant inside each group
    y = torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert within_group_correlation(x, y, torch.tensor([0, 0, 1, 1])) is None
