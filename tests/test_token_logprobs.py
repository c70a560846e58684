"""Chunked continuation log-probs from hidden states against the full fp32 log-softmax:
same values, same entropy, same parameter gradients on the tiny model, and a largest
allocation bounded by one chunk's logits instead of every token's."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from prism_ray.config.run import RunConfig
from prism_ray.models.batching import (
    SequenceItem,
    VisionSpec,
    collate,
    continuation_logits,
    continuation_logprobs,
)
from prism_ray.models.inputs import encode_prompt
from prism_ray.models.token_logprobs import continuation_scores, token_logprobs

SYSTEM_PROMPT = RunConfig().system_prompt


class LargestAllocation(TorchDispatchMode):
    """Bytes of the largest tensor any op (forward or backward) returns inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel() * t.element_size())
        return out


@pytest.fixture(scope="module")
def setup(tiny_pair, tiny_dataset):
    from transformers import AutoModelForImageTextToText

    from prism_ray.data.readers import read_rl_parquet
    from prism_ray.models.processor import load_processor

    processor = load_processor(tiny_pair[0])
    prompts = read_rl_parquet(tiny_dataset / "rlvr/train.parquet").records[:3]
    gen = torch.Generator().manual_seed(0)
    items = [SequenceItem(encode_prompt(processor, p.question, p.images,
                                        system_prompt=SYSTEM_PROMPT),
                          tuple(torch.randint(100, 1500, (n,), generator=gen).tolist()), f"s{i}")
             for i, (p, n) in enumerate(zip(prompts, (5, 11, 8)))]
    batch = collate(items, VisionSpec.from_processor(processor))
    model = AutoModelForImageTextToText.from_pretrained(tiny_pair[0], dtype=torch.float32)
    return model.eval(), batch


def grads(model, log_probs, weights) -> dict[str, torch.Tensor]:
    model.zero_grad()
    (log_probs * weights).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunk", [4, 1000], ids=["chunks_of_4", "one_chunk"])
def test_chunked_logprobs_entropy_and_gradients_equal_the_full_path(setup, chunk):
    model, batch = setup
    weights = torch.randn(batch.response_mask.shape, generator=torch.Generator().manual_seed(1))
    head = model.get_output_embeddings()

    logits = model(**batch.model_inputs()).logits
    full = continuation_logprobs(logits, batch)
    log_p = torch.log_softmax(continuation_logits(logits, batch).float(), -1)
    full_entropy = -(log_p.exp() * log_p).sum(-1) * batch.response_mask
    full_grads = grads(model, full, weights)

    chunked, entropy = continuation_scores(model, model, batch, chunk, with_entropy=True)
    assert model.get_output_embeddings() is head  # the head is back after the forward
    assert chunked.shape == full.shape and entropy.shape == full.shape
    torch.testing.assert_close(chunked, full.detach(), atol=1e-5, rtol=0)
    assert chunked[0, 5:].abs().sum() == 0  # padding beyond the shortest continuation
    torch.testing.assert_close(entropy, full_entropy.detach(), atol=1e-5, rtol=0)
    assert not entropy.requires_grad
    chunked_grads = grads(model, chunked, weights)
    assert chunked_grads.keys() == full_grads.keys()
    assert "lm_head.weight" in chunked_grads or "model.language_model.embed_tokens.weight" in \
        chunked_grads
    for name, g in full_grads.items():
        torch.testing.assert_close(chunked_grads[name], g, atol=1e-6, rtol=1e-4, msg=name)


def test_no_grad_scores_match_and_keep_no_graph(setup):
    model, batch = setup
    with torch.no_grad():
        full = continuation_logprobs(model(**batch.model_inputs()).logits, batch)
        chunked, entropy = continuation_scores(model, model, batch, 3)
    assert entropy is None and not chunked.requires_grad
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=0)


def test_largest_allocation_is_one_chunk_of_logits_not_all_tokens():
    """A 32k vocabulary, 512 response tokens, chunks of 32: the full path allocates
    512 × 32k fp32 (64 MiB) at once; the chunked path's largest tensor, forward and backward,
    is a chunk's logits (4 MiB)."""
    torch.manual_seed(0)
    tokens, hidden_size, vocab, chunk = 512, 32, 32768, 32
    head = torch.nn.Linear(hidden_size, vocab, bias=False)
    hidden = torch.randn(tokens, hidden_size, requires_grad=True)
    targets = torch.randint(0, vocab, (tokens,))

    with LargestAllocation() as full_mem:
        full = torch.log_softmax(head(hidden).float(), -1).gather(-1, targets[:, None])[:, 0]
        full.sum().backward()
    full_grad = head.weight.grad.clone()
    head.weight.grad = None
    with LargestAllocation() as chunk_mem:
        chunked, _ = token_logprobs(hidden, head, targets, chunk)
        chunked.sum().backward()

    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(head.weight.grad, full_grad, atol=1e-6, rtol=1e-4)
    assert full_mem.largest >= tokens * vocab * 4
    weight_bytes = vocab * hidden_size * 4  # the head's gradient: the same in both paths
    assert chunk_mem.largest <= max(chunk * vocab * 4, weight_bytes)
    assert chunk_mem.largest * 8 <= full_mem.largest
