import math

import torch

from prism_ray.algo import SFTAggregation, sft_loss, shift_for_next_token


def _logits_for(first: list[float], second: list[float], junk_last: float = 0.0) -> torch.Tensor:
    # [1, 3, 2]: positions 0 and 1 predict tokens 1 and 2; position 2 predicts nothing.
    return torch.tensor([[first, second, [junk_last, -junk_last]]])


def test_shift_pairs_logits_t_with_label_t_plus_1():
    logits = torch.arange(6.0).view(1, 3, 2)
    labels = torch.tensor([[7, 8, 9]])
    mask = torch.tensor([[0, 1, 1]])
    shifted_logits, targets, shifted_mask = shift_for_next_token(logits, labels, mask)
    assert shifted_logits.shape == (1, 2, 2)
    assert targets.tolist() == [[8, 9]]
    assert shifted_mask.tolist() == [[1, 1]]


def test_token_mean_by_hand():
    # p(token 1 | pos 0) = 3/4 ; p(token 0 | pos 1) = 1/2.
    logits = _logits_for([0.0, math.log(3.0)], [0.0, 0.0])
    labels = torch.tensor([[0, 1, 0]])
    mask = torch.tensor([[0, 1, 1]])
    loss, metrics = sft_loss(logits, labels, mask)
    expected = (-math.log(0.75) + math.log(2.0)) / 2
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    assert metrics["num_tokens"] == 2.0
    assert metrics["accuracy"] == 1.0  # argmax right at pos 0; at pos 1 the tie goes to index 0


def test_last_position_and_prompt_tokens_do_not_count():
    labels = torch.tensor([[0, 1, 0]])
    mask = torch.tensor([[0, 1, 0]])  # only token 1 is a target
    a, _ = sft_loss(_logits_for([0.0, 1.0], [5.0, -5.0], junk_last=0.0), labels, mask)
    b, _ = sft_loss(_logits_for([0.0, 1.0], [-9.0, 9.0], junk_last=50.0), labels, mask)
    assert torch.allclose(a, b)


def test_seq_mean_weighs_sequences_equally():
    # sequence 0: two targets with loss log 2 each; sequence 1: one target with loss -log(3/4).
    logits = torch.zeros(2, 3, 2)
    logits[1, 0] = torch.tensor([0.0, math.log(3.0)])
    labels = torch.tensor([[0, 0, 1], [0, 1, 0]])
    mask = torch.tensor([[0, 1, 1], [0, 1, 0]])
    token_mean, _ = sft_loss(logits, labels, mask, SFTAggregation.TOKEN_MEAN)
    seq_mean, _ = sft_loss(logits, labels, mask, SFTAggregation.SEQ_MEAN)
    l2, l34 = math.log(2.0), -math.log(0.75)
    assert math.isclose(token_mean.item(), (2 * l2 + l34) / 3, rel_tol=1e-6)
    assert math.isclose(seq_mean.item(), (l2 + l34) / 2, rel_tol=1e-6)


def test_all_masked_gives_zero_not_nan_and_keeps_graph():
    logits = torch.randn(2, 4, 5, requires_grad=True)
    loss, _ = sft_loss(logits, torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0
