"""Continuation log-probs from the final hidden states, a chunk of tokens at a time.

The plain path (``batching.continuation_logprobs``) takes the model's logits for every position
of the batch, [B, T, V] in the model dtype, and an fp32 log-softmax of the continuation rows:
at a 151,936-token vocabulary that is 0.6 MB of logits per position and 1.2 MB more per
response token in fp32, kept alive for the backward. Here the output head is applied to at
most ``chunk_tokens`` response positions at a time: logits in the model dtype, logsumexp in
fp32, the target's logit gathered, so the largest tensor is chunk × V and the full logits are
never built. Under autograd each chunk is checkpointed (its logits are recomputed in the
backward instead of stored), so the backward's peak is one chunk's logits too.

The head is still called as a module, inside the model's own forward (``scoring_head`` stands
a ``ContinuationScorer`` in for it for one call): a ZeRO-3 engine gathers its weight in the
module hooks, and DeepSpeed's backward hooks sit on what the forward returns, ahead of every
parameter gradient, as with ordinary logits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.utils.checkpoint import checkpoint

from prism_ray.models.batching import Batch


def _chunk_logprobs(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
                    entropy: list[torch.Tensor | None], index: int) -> torch.Tensor:
    """log p(target) of one chunk, [n] fp32; the chunk's entropy lands in ``entropy[index]``
    on the first call only (a checkpoint's backward calls this again to recompute the logits)."""
    logits = head(hidden).float()  # [n, V]: the one chunk-sized fp32 copy
    lse = torch.logsumexp(logits, dim=-1)
    if index < len(entropy) and entropy[index] is None:
        with torch.no_grad():  # a metric: H = lse - sum p·z
            entropy[index] = lse - (torch.softmax(logits, dim=-1) * logits).sum(dim=-1)
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse


def token_logprobs(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor,
                   chunk_tokens: int, *, with_entropy: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """hidden [N, H] (the states that predict each target), targets [N] long ->
    (log p(targets) [N] fp32, next-token entropy [N] fp32 or None; the entropy is detached).

    Equal to ``log_softmax(head(hidden).float())[targets]``, with gradients to ``hidden`` and
    the head's parameters, but no tensor larger than ``chunk_tokens`` × V.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be ≥ 1, got {chunk_tokens}")
    spans = [(a, min(a + chunk_tokens, len(targets))) for a in range(0, len(targets), chunk_tokens)]
    entropy: list[torch.Tensor | None] = [None] * (len(spans) if with_entropy else 0)
    grad = torch.is_grad_enabled() and (hidden.requires_grad or any(
        p.requires_grad for p in head.parameters()))
    parts = []
    for i, (a, b) in enumerate(spans):
        args = (head, hidden[a:b], targets[a:b], entropy, i)
        parts.append(checkpoint(_chunk_logprobs, *args, use_reentrant=False) if grad
                     else _chunk_logprobs(*args))
    if not parts:
        empty = hidden.new_zeros(0, dtype=torch.float32)
        return empty, (empty if with_entropy else None)
    log_probs = torch.cat(parts)
    return log_probs, (torch.cat(entropy) if with_entropy else None)


class ContinuationScorer(torch.nn.Module):
    """Stands in for a causal LM's output head for one forward: takes the final hidden states
    [B, T, H] and returns the log-probs of the batch's continuation tokens, flat [N] fp32 in
    row-major (b, j) order of ``batch.response_mask`` (see ``continuation_scores``)."""

    def __init__(self, head: torch.nn.Module, batch: Batch, chunk_tokens: int,
                 with_entropy: bool) -> None:
        super().__init__()
        self.head, self.chunk_tokens, self.with_entropy = head, chunk_tokens, with_entropy
        valid = batch.response_mask.bool()
        # Continuation token j of row b is predicted by position target_index[b, j] - 1.
        self.rows = batch.target_index[valid] - 1 + valid.nonzero()[:, 0] * batch.input_ids.shape[1]
        self.targets = torch.gather(batch.input_ids, 1, batch.target_index)[valid]
        self.shape = tuple(batch.input_ids.shape)
        self.entropy: torch.Tensor | None = None
        self.called = False

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if tuple(hidden.shape[:-1]) != self.shape:
            raise ValueError(f"the model passed hidden states of shape {tuple(hidden.shape)} to "
                             f"its output head; expected {self.shape} × hidden for the whole batch")
        self.called = True
        picked = hidden.reshape(-1, hidden.shape[-1]).index_select(0, self.rows)
        log_probs, self.entropy = token_logprobs(picked, self.head, self.targets,
                                                 self.chunk_tokens,
                                                 with_entropy=self.with_entropy)
        return log_probs


@contextmanager
def scoring_head(model: torch.nn.Module, scorer: ContinuationScorer) -> Iterator[None]:
    """``model``'s output head is ``scorer`` inside the block (restored on the way out)."""
    head = model.get_output_embeddings()
    name = next((n for n, child in model.named_children() if child is head), None)
    if name is None or scorer.head is not head:
        raise ValueError(f"{type(model).__name__}: its output head is not a direct child module")
    setattr(model, name, scorer)
    try:
        yield
    finally:
        setattr(model, name, head)


def continuation_scores(forward: torch.nn.Module, model: torch.nn.Module, batch: Batch,
                        chunk_tokens: int, *, with_entropy: bool = False
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Teacher-forced log pi(y_j | y_<j) of every continuation token, [B, L] fp32 (0 at
    padding) like ``batching.continuation_logprobs``, and the next-token entropy at the same
    places ([B, L], detached) when ``with_entropy``.

    ``forward`` is what runs the model (a DeepSpeed engine or the module itself); ``model`` is
    the HF module whose output head is replaced for the call.
    """
    scorer = ContinuationScorer(model.get_output_embeddings(), batch, chunk_tokens,
                                with_entropy)
    with scoring_head(model, scorer):
        flat = forward(**batch.model_inputs()).logits
    if not scorer.called:
        raise RuntimeError(f"{type(model).__name__}'s forward did not call its output head")
    valid = batch.response_mask.bool()
    out = flat.new_zeros(valid.shape).masked_scatter(valid, flat)
    entropy = None
    if with_entropy:
        entropy = out.new_zeros(valid.shape).masked_scatter(valid, scorer.entropy)
    return out, entropy
