import math

import pytest
import torch

from prism_ray.algo import (
    POLICY_LOSSES,
    Aggregation,
    ClipConfig,
    PolicyLoss,
    aggregate,
    gspo_loss,
    ppo_clip_loss,
)
from prism_ray.config.phases import DAPO, GSPO, AlignPhase

CLIP = ClipConfig(eps_low=0.2, eps_high=0.28, dual_clip=3.0)
GSPO_CLIP = PolicyLoss.from_settings(GSPO()).clip


def _leaf(values: list[list[float]]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


def test_asymmetric_and_dual_clip_by_hand():
    # Tokens: (A, ratio) = (+1, 1.5) clip high | (+1, 0.5) free | (-1, 0.5) clip low
    #                      (-1, 5.0) dual clip | (-1, 2.0) free (under the cap 3)
    ratios = [1.5, 0.5, 0.5, 5.0, 2.0]
    log_probs = _leaf([[math.log(r) for r in ratios]])
    old = torch.zeros(1, 5, dtype=torch.float64)
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0, -1.0]], dtype=torch.float64)
    mask = torch.ones(1, 5)
    loss, metrics = ppo_clip_loss(log_probs, old, advantages, mask, CLIP)
    assert math.isclose(loss.item(), (-1.28 - 0.5 + 0.8 + 3.0 + 2.0) / 5, rel_tol=1e-9)
    loss.backward()
    # d loss / d log p = d loss / d ratio * ratio; clipped tokens get no gradient.
    assert torch.allclose(
        log_probs.grad, torch.tensor([[0.0, -0.5 / 5, 0.0, 0.0, 2.0 / 5]], dtype=torch.float64)
    )
    assert metrics["clip_high_frac"] == pytest.approx(1 / 5)
    assert metrics["clip_low_frac"] == pytest.approx(1 / 5)
    assert metrics["clip_dual_frac"] == pytest.approx(1 / 5)
    assert metrics["ratio_max"] == pytest.approx(5.0)
    assert metrics["ratio_mean"] == pytest.approx(sum(ratios) / 5)


def test_clip_boundaries_are_not_clipped():
    # ratio exactly 1 + eps_high (A > 0) and exactly 1 - eps_low (A < 0): the clip is not active
    log_probs = _leaf([[math.log(1.28), math.log(0.8)]])
    advantages = torch.tensor([1.0, -1.0], dtype=torch.float64).view(1, 2)
    loss, metrics = ppo_clip_loss(
        log_probs, torch.zeros(1, 2, dtype=torch.float64), advantages, torch.ones(1, 2), CLIP
    )
    assert metrics["clip_high_frac"] == 0.0 and metrics["clip_low_frac"] == 0.0
    assert math.isclose(loss.item(), (-1.28 + 0.8) / 2, rel_tol=1e-9)


def test_positive_advantage_is_never_dual_clipped():
    log_probs = _leaf([[math.log(10.0)]])
    loss, metrics = ppo_clip_loss(
        log_probs,
        torch.zeros(1, 1, dtype=torch.float64),
        torch.tensor([2.0]),
        torch.ones(1, 1),
        CLIP,
    )
    assert math.isclose(loss.item(), -2.0 * 1.28, rel_tol=1e-9)
    assert metrics["clip_dual_frac"] == 0.0


def test_sequence_advantages_broadcast_and_padding_ignored():
    log_probs = _leaf([[0.0, 0.0, 7.0], [0.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    loss, _ = ppo_clip_loss(
        log_probs, torch.zeros(2, 3, dtype=torch.float64), torch.tensor([1.0, -2.0]), mask, CLIP
    )
    assert math.isclose(loss.item(), (-1.0 - 1.0 + 2.0) / 3, rel_tol=1e-9)
    loss.backward()
    assert log_probs.grad[0, 2] == 0 and log_probs.grad[1, 1] == 0


def test_aggregation_modes_by_hand():
    token_loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]])  # the last sequence is empty
    assert aggregate(token_loss, mask, Aggregation.TOKEN_MEAN).item() == pytest.approx(10 / 4)
    assert aggregate(token_loss, mask, Aggregation.SEQ_MEAN_TOKEN_MEAN).item() == pytest.approx(
        (2 + 4) / 2
    )
    assert aggregate(token_loss, mask, Aggregation.SEQ_MEAN_TOKEN_SUM).item() == pytest.approx(
        (6 + 4) / 2
    )


def test_dual_clip_must_exceed_upper_clip():
    with pytest.raises(ValueError):
        ClipConfig(eps_high=0.28, dual_clip=1.2)
    dapo = PolicyLoss.from_settings(DAPO()).clip
    assert dapo.eps_high == 0.28 and dapo.dual_clip == 10.0


def test_kl_metrics_and_optional_kl_loss():
    log_probs = _leaf([[-1.0, -2.0]])
    old = torch.tensor([[-1.0, -2.0]], dtype=torch.float64)
    rollout = torch.tensor([[-1.1, -2.0]], dtype=torch.float64)
    ref = torch.tensor([[-1.5, -2.5]], dtype=torch.float64)
    mask = torch.ones(1, 2)
    _, off = ppo_clip_loss(
        log_probs, old, torch.tensor([1.0]), mask, CLIP, rollout_log_probs=rollout
    )
    assert off["kl_old_k1"] == 0.0 and off["kl_old_k3"] == 0.0
    assert "kl_loss" not in off
    # mismatch: tokens sampled by the rollout engine, log r = old - rollout = (0.1, 0)
    assert off["rollout_mismatch_k1"] == pytest.approx(-0.05)
    assert off["rollout_mismatch_k3"] == pytest.approx((math.expm1(0.1) - 0.1) / 2)
    with_kl = ClipConfig(eps_low=0.2, eps_high=0.28, dual_clip=3.0, kl_coef=0.5)
    loss, on = ppo_clip_loss(log_probs, old, torch.tensor([1.0]), mask, with_kl, ref_log_probs=ref)
    k3 = math.expm1(-0.5) + 0.5  # log r = ref - log_probs = -0.5 on both tokens
    assert on["kl_loss"] == pytest.approx(k3)
    assert loss.item() == pytest.approx(-1.0 + 0.5 * k3)
    with pytest.raises(ValueError):
        ppo_clip_loss(log_probs, old, torch.tensor([1.0]), mask, with_kl)


def test_entropy_metric_of_uniform_logits():
    logits = torch.zeros(1, 2, 4)
    _, metrics = ppo_clip_loss(
        torch.zeros(1, 2),
        torch.zeros(1, 2),
        torch.tensor([1.0]),
        torch.ones(1, 2),
        CLIP,
        logits=logits,
    )
    assert metrics["entropy"] == pytest.approx(math.log(4))


def test_gspo_ratio_is_exp_of_mean_log_ratio_and_gradient():
    # sequence 0 has 3 valid tokens, sequence 1 has 2; log-ratios tiny so nothing clips.
    deltas = torch.tensor([[1e-4, -2e-4, 4e-4, 0.5], [2e-4, 0.0, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    old = torch.tensor([[-1.0, -2.0, -0.5, -3.0], [-0.2, -0.7, -1.0, -1.0]], dtype=torch.float64)
    log_probs = (old + deltas).clone().requires_grad_(True)
    advantages = torch.tensor([1.0, -2.0], dtype=torch.float64)
    loss, metrics = gspo_loss(log_probs, old, advantages, mask, GSPO_CLIP)
    s = torch.exp(torch.tensor([(1e-4 - 2e-4 + 4e-4) / 3, 2e-4 / 2], dtype=torch.float64))
    assert math.isclose(loss.item(), -(1.0 * s[0] - 2.0 * s[1]).item() / 2, rel_tol=1e-12)
    assert metrics["ratio_max"] == pytest.approx(s.max().item())
    loss.backward()
    # d/d log p_t of mean_i(-A_i s_i) = -A_i s_i / |y_i| / B on valid tokens
    expected = torch.zeros(2, 4, dtype=torch.float64)
    expected[0, :3] = -1.0 * s[0] / 3 / 2
    expected[1, :2] = 2.0 * s[1] / 2 / 2
    assert torch.allclose(log_probs.grad, expected, rtol=1e-9)


def test_gspo_clips_the_sequence_ratio():
    old = torch.zeros(1, 2, dtype=torch.float64)
    log_probs = torch.full((1, 2), 0.01, dtype=torch.float64, requires_grad=True)  # s = e^0.01
    loss, metrics = gspo_loss(
        log_probs, old, torch.tensor([1.0], dtype=torch.float64), torch.ones(1, 2), GSPO_CLIP
    )
    assert loss.item() == pytest.approx(-(1 + GSPO_CLIP.eps_high))
    assert metrics["clip_high_frac"] == 1.0
    loss.backward()
    assert torch.count_nonzero(log_probs.grad) == 0


def test_losses_are_registered_by_name_and_the_config_picks_one():
    assert POLICY_LOSSES["ppo_clip"] is ppo_clip_loss and POLICY_LOSSES["gspo"] is gspo_loss
    assert PolicyLoss.from_settings(GSPO()).name == "gspo"
    align = PolicyLoss.from_settings(AlignPhase(clip_eps=0.3))
    assert align.name == "ppo_clip" and align.clip.eps_low == align.clip.eps_high == 0.3
    with pytest.raises(ValueError, match="unknown policy loss 'nope'; registered: gspo, ppo_clip"):
        PolicyLoss("nope", ClipConfig())


def test_a_registered_loss_is_callable_through_the_policy_loss():
    log_probs, old = _leaf([[-1.0, -2.0]]), torch.tensor([[-1.1, -2.0]], dtype=torch.float64)
    mask, advantages = torch.ones(1, 2), torch.tensor([1.0], dtype=torch.float64)
    settings = PolicyLoss.from_settings(DAPO())
    direct, _ = ppo_clip_loss(log_probs, old, advantages, mask, settings.clip)
    via, _ = settings(log_probs, old, advantages, mask)
    assert via.item() == direct.item()
