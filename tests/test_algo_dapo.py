import pytest
import torch

from prism_ray.algo import dynamic_sampling_mask, kept_group_ids, overlong_penalty


@pytest.mark.parametrize(
    ("length", "penalty"),
    [(0, 0.0), (4000, 0.0), (4096, 0.0), (5120, -0.25), (6144, -0.5), (8192, -1.0), (9216, -1.25)],
)
def test_overlong_penalty_values(length, penalty):
    assert overlong_penalty(torch.tensor([length]), 8192, 4096).item() == pytest.approx(penalty)


def test_overlong_penalty_small_settings_and_validation():
    assert overlong_penalty(
        torch.tensor([7, 8, 9, 10]), max_length=10, buffer=2
    ).tolist() == pytest.approx([0.0, 0.0, -0.5, -1.0])
    with pytest.raises(ValueError):
        overlong_penalty(torch.tensor([1]), max_length=10, buffer=0)


def test_dynamic_sampling_keeps_only_varied_groups():
    accuracy = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.3, 0.3])
    group_ids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4, 4])
    keep, metrics = dynamic_sampling_mask(accuracy, group_ids)
    assert keep.tolist() == [False, False, True, True, False, False, False, False, False]
    assert kept_group_ids(keep, group_ids).tolist() == [1]
    assert metrics["num_groups"] == 5
    assert metrics["kept_group_frac"] == pytest.approx(1 / 5)
    assert metrics["all_wrong_group_frac"] == pytest.approx(1 / 5)
    assert metrics["all_correct_group_frac"] == pytest.approx(
        3 / 5
    )  # includes the 0.3/0.3 group and the singleton
