"""Rollout correction against hand-computed cases: rho = exp(old - rollout) per token."""

from __future__ import annotations

import math

import pytest
import torch

from prism_ray.algo import ClipConfig, CorrectionConfig, ppo_clip_loss, rollout_correction

# Two sequences, three tokens each, the last token of the second one padding.
OLD = torch.log(torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]], dtype=torch.float64))
# rho per token: [[1, 4, 0.25], [1.5, 1, (pad)]]
ROLLOUT = OLD - torch.log(torch.tensor([[1.0, 4.0, 0.25], [1.5, 1.0, 9.0]], dtype=torch.float64))
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


def correct(kind: str, **kw):
    return rollout_correction(OLD, ROLLOUT, MASK, CorrectionConfig(kind=kind, **kw))


def test_none_weighs_every_token_one_and_reports_the_ratio():
    weight, keep, metrics = correct("none")
    assert torch.equal(weight, torch.ones_like(weight)) and torch.equal(keep, MASK.bool())
    assert metrics["is_ratio_mean"] == pytest.approx((1 + 4 + 0.25 + 1.5 + 1) / 5)
    assert metrics["is_ratio_max"] == pytest.approx(4.0) and metrics["is_masked_frac"] == 0.0


def test_tis_truncates_the_ratio_at_the_cap():
    weight, keep, _ = correct("tis", cap=2.0)
    assert torch.allclose(weight[MASK.bool()], torch.tensor([1, 2, 0.25, 1.5, 1.0],
                                                            dtype=torch.float64))
    assert torch.equal(keep, MASK.bool())


def test_token_mis_drops_tokens_outside_the_band():
    _, keep, metrics = correct("mis_token", low=0.5, high=2.0)
    assert keep.tolist() == [[True, False, False], [True, True, False]]
    assert metrics["is_masked_frac"] == pytest.approx(2 / 5)


def test_sequence_mis_drops_whole_sequences_by_their_geometric_mean():
    # sequence 0: (1 · 4 · 0.25)^(1/3) = 1 → kept; sequence 1: (1.5 · 1)^(1/2) ≈ 1.22 → kept
    _, keep, _ = correct("mis_seq", low=0.5, high=1.2)
    assert keep.tolist() == [[True, True, True], [False, False, False]]


def test_the_policy_loss_applies_the_correction_to_token_losses():
    advantages = torch.tensor([1.0, 1.0], dtype=torch.float64)
    log_probs = OLD.clone().requires_grad_(True)  # ratio 1: the surrogate is -A per token
    plain, _ = ppo_clip_loss(log_probs, OLD, advantages, MASK, ClipConfig())
    tis, metrics = ppo_clip_loss(log_probs, OLD, advantages, MASK,
                                 ClipConfig(correction=CorrectionConfig("tis", cap=2.0)),
                                 rollout_log_probs=ROLLOUT)
    assert plain.item() == pytest.approx(-1.0)
    assert tis.item() == pytest.approx(-(1 + 2 + 0.25 + 1.5 + 1) / 5)
    assert metrics["is_ratio_max"] == pytest.approx(4.0)
    masked, _ = ppo_clip_loss(log_probs, OLD, advantages, MASK,
                              ClipConfig(correction=CorrectionConfig("mis_token")),
                              rollout_log_probs=ROLLOUT)
    assert masked.item() == pytest.approx(-3 / 5)  # two of five tokens weigh 0, still counted


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown rollout correction 'x'"):
        CorrectionConfig(kind="x")
    with pytest.raises(ValueError, match="0 < low < 1 < high"):
        CorrectionConfig(kind="mis_token", low=1.5)
    assert math.isfinite(correct("tis")[2]["is_weight_mean"])
