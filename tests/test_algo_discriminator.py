import math

import pytest
import torch

from prism_ray.algo import bradley_terry_loss, clip_scores


def _nll(gap: float) -> float:
    return math.log1p(math.exp(-gap))  # -log sigmoid(gap)


def _scores():
    teacher_cap = torch.tensor([2.0], requires_grad=True)
    teacher_cot = torch.tensor([1.0], requires_grad=True)
    student_cap = torch.tensor([0.0, 2.0, 50.0], requires_grad=True)
    student_cot = torch.tensor([1.0, -1.0, -50.0], requires_grad=True)
    return teacher_cap, teacher_cot, student_cap, student_cot


def test_bt_loss_value_by_hand_and_invalid_excluded():
    tc, tr, sc, sr = _scores()
    valid = torch.tensor([True, True, False])  # the wild third rollout must not count
    loss, metrics = bradley_terry_loss(
        tc, tr, sc, sr, torch.tensor([0, 0, 0]), valid, reg_coef=1e-3
    )
    l_cap = (_nll(2.0) + _nll(0.0)) / 2
    l_cot = (_nll(0.0) + _nll(2.0)) / 2
    l_reg = 0.25 * ((0 + 1 + 4 + 1) + (4 + 1 + 4 + 1)) / 2
    assert loss.item() == pytest.approx(l_cap + l_cot + 1e-3 * l_reg)
    assert metrics["loss_reg"] == pytest.approx(2.0)
    assert metrics["accuracy_cap"] == pytest.approx(0.5)  # 2 > 0 yes, 2 > 2 no
    assert metrics["accuracy_cot"] == pytest.approx(0.5)
    assert metrics["gap_cap"] == pytest.approx(1.0)
    assert metrics["teacher_score_cot"] == pytest.approx(1.0)
    assert metrics["student_score_cap"] == pytest.approx(1.0)
    assert metrics["valid_ratio"] == pytest.approx(2 / 3)


def test_bt_gradient_signs():
    tc, tr, sc, sr = _scores()
    valid = torch.tensor([True, True, False])
    loss, _ = bradley_terry_loss(tc, tr, sc, sr, torch.tensor([0, 0, 0]), valid, reg_coef=0.0)
    loss.backward()
    assert tc.grad.item() < 0 and tr.grad.item() < 0  # descent raises teacher scores
    assert torch.all(sc.grad[:2] > 0) and torch.all(sr.grad[:2] > 0)  # and lowers student scores
    assert sc.grad[2] == 0 and sr.grad[2] == 0


def test_teacher_scores_broadcast_per_prompt_and_aux_loss():
    teacher = torch.tensor([0.0, 4.0])
    student = torch.tensor([0.0, 0.0])
    loss, metrics = bradley_terry_loss(
        teacher,
        teacher,
        student,
        student,
        torch.tensor([1, 0]),
        torch.tensor([True, True]),
        reg_coef=0.0,
        aux_loss=torch.tensor(2.0),
        aux_coef=0.01,
    )
    expected = 2 * (_nll(4.0) + _nll(0.0)) / 2 + 0.01 * 2.0
    assert loss.item() == pytest.approx(expected)
    assert metrics["aux_loss"] == 2.0


def test_no_valid_rollout_is_zero_loss_not_nan():
    tc, tr, sc, sr = _scores()
    loss, metrics = bradley_terry_loss(
        tc, tr, sc, sr, torch.tensor([0, 0, 0]), torch.zeros(3, dtype=torch.bool)
    )
    assert loss.item() == 0.0 and metrics["valid_ratio"] == 0.0


def test_clip_scores_for_rewards_only():
    assert clip_scores(torch.tensor([-50.0, 3.0, 11.0])).tolist() == [-10.0, 3.0, 10.0]
