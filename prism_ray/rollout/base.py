"""The rollout-engine interface, shared by the HF and vLLM backends (plain Python, no Ray).

(``RolloutEngine`` rather than "backend": ``config.schema.RolloutBackend`` is the enum that
chooses between them.)

Log-prob contract (both backends): ``Rollout.logprobs[i]`` is the log-probability of the
i-th sampled token under the RAW model distribution: ``log_softmax(logits)`` in float32 over
the full vocabulary, before temperature, top-p/top-k truncation and the vision-token ban.
That is exactly what the learner computes teacher-forced, so the two are comparable for any
sampling setting; for temperature 1, top_p 1, top_k 0 it is also the distribution the token
was drawn from (up to the banned vision tokens, whose raw mass is ~0 for a trained model).

Token contract: ``Rollout.token_ids`` are the sampled ids, ending with ``<|im_end|>`` when it
was sampled (``finish_reason == "stop"``); no padding. ``Rollout.text`` is the decode with
special tokens skipped.

Weight contract: ``load_weights`` takes HF-named full tensors (names as in
``Qwen3VLForConditionalGeneration.named_parameters()``), possibly only a subset per call (a
bucket). A sync in several buckets passes the same ``version`` to each and ``last=True`` with
the final one; ``weight_version`` becomes ``version`` when that call returns, and every tensor
sent is then applied exactly (bit-identical for a same-dtype tensor). No generation may run
between the buckets of one sync. The HF engine applies each bucket at once; the vLLM engine
applies complete layers as they arrive (its fused layers need all their parts in one reload).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence

import torch

from prism_ray.types import RLPrompt, Rollout, SamplingParams

log = logging.getLogger(__name__)

END_OF_TURN = "<|im_end|>"


class RolloutEngine(ABC):
    """A generation engine holding one copy of the policy weights."""

    def __init__(self) -> None:
        self._version = 0

    @property
    def weight_version(self) -> int:
        return self._version

    @abstractmethod
    def generate(self, prompts: Sequence[RLPrompt], params: SamplingParams) -> list[list[Rollout]]:
        """``params.n`` samples per prompt; outer list in prompt order, inner by sample index."""

    @abstractmethod
    def load_weights(
        self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int, last: bool = True
    ) -> None:
        """Apply HF-named full tensors (all, or one bucket of a sync; see the module doc)."""

    @abstractmethod
    def logprobs_of(
        self, prompts: Sequence[RLPrompt], token_ids_per_prompt: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """Teacher-forced raw-model log-probs of one given continuation per prompt."""

    def sleep(self) -> None:
        """Release accelerator memory between rollout phases (no-op where unsupported)."""
        log.info("%s: sleep() is a no-op for this backend", type(self).__name__)

    def wake_up(self) -> None:
        log.info("%s: wake_up() is a no-op for this backend", type(self).__name__)

    def close(self) -> None:  # noqa: B027 (optional hook, nothing to free by default)
        """Free the engine (idempotent)."""


def finish_reason(token_ids: Sequence[int], stop_id: int) -> str:
    return "stop" if token_ids and token_ids[-1] == stop_id else "length"


def cut_at_stop(token_ids: Sequence[int], stop_id: int) -> list[int]:
    """Sampled ids up to and including the first stop token (what follows it is padding)."""
    ids = list(token_ids)
    return ids[: ids.index(stop_id) + 1] if stop_id in ids else ids


def call_seed(base_seed: int, call_index: int, params: SamplingParams) -> int:
    """The seed of one generate call: the caller's, or one derived from the engine's seed and
    its call count (so a run is reproducible from the worker seed alone)."""
    if params.seed is not None:
        return params.seed
    return (base_seed * 1_000_003 + call_index) % 2**31
