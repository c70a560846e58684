import itertools

import pytest
import torch

from prism_ray.algo import rlvr_reward
from prism_ray.config.phases import RewardConfig
from prism_ray.verify import rlvr_score


def test_rlvr_reward_by_hand():
    accuracy = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    format_ok = torch.tensor([True, True, False, True, True, True])
    answer_chars = torch.tensor([3, 3, 3, 0, 1024, 1023])
    reward = rlvr_reward(accuracy, format_ok, answer_chars)
    assert reward.tolist() == pytest.approx([1.0, 0.2, 0.0, 0.2, 0.2, 1.0])


def test_weights_and_limit_are_parameters():
    reward = rlvr_reward(
        torch.tensor([1.0]),
        torch.tensor([True]),
        torch.tensor([20]),
        accuracy_weight=0.5,
        format_weight=0.5,
        max_answer_chars=10,
    )
    assert reward.tolist() == [0.5]


def test_tensor_reward_agrees_with_the_verifier_rule():
    config = RewardConfig()
    for accuracy, format_ok, chars in itertools.product(
        [0.0, 1.0], [False, True], [0, 5, 1023, 1024]
    ):
        judged = 0 < chars < config.max_answer_chars
        expected = rlvr_score(format_ok, judged, accuracy, config)
        got = rlvr_reward(
            torch.tensor([accuracy]), torch.tensor([format_ok]), torch.tensor([chars])
        )
        assert got.item() == pytest.approx(expected)
