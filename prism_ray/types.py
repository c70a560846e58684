"""Typed records that travel between readers, actors and the driver.

Images travel as encoded bytes (PNG/JPEG as read from disk or parquet); they are validated
(decoded once) by the readers, so a record that exists holds images Pillow can open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Demonstration:
    """One SFT example: images + question (user turn) and the assistant response to imitate."""

    uid: str
    images: tuple[bytes, ...]
    question: str
    response: str
    source: str = ""


@dataclass(frozen=True)
class RLPrompt:
    """One RL prompt (alignment or RLVR). Teacher segments are present for alignment data."""

    uid: str
    data_source: str
    images: tuple[bytes, ...]
    question: str
    ground_truth: str
    equivalent_answers: tuple[str, ...] = ()
    teacher_caption: str | None = None
    teacher_cot: str | None = None
    extra_info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WarmupPair:
    """One discriminator warm-up pair: teacher vs student segments for the same prompt and image."""

    uid: str
    prompt: str
    image: bytes
    teacher_caption: str
    student_caption: str
    teacher_cot: str
    student_cot: str


@dataclass(frozen=True)
class SamplingParams:
    """What a rollout engine needs to sample; top_k=0 means no top-k truncation."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_tokens: int = 256
    seed: int | None = None


@dataclass(frozen=True)
class Rollout:
    """One sampled response to one prompt, as the rollout engine produced it."""

    prompt_uid: str
    sample_index: int
    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]  # the engine's log-prob of each sampled token
    finish_reason: str  # "stop" (end-of-turn token sampled) or "length"
    weight_version: int


@dataclass(frozen=True)
class PolicySample:
    """One sequence for the policy learner. The learner re-encodes the prompt with its own
    processor (the canonical pass), appends ``response_ids`` and learns on those tokens."""

    question: str
    images: tuple[bytes, ...]
    response_ids: tuple[int, ...]
    advantage: float = 0.0
    rollout_logprobs: tuple[float, ...] | None = None


@dataclass(frozen=True)
class VerifyRequest:
    """One response to score against its prompt's ground truth."""

    response: str
    ground_truth: str
    equivalent_answers: tuple[str, ...] = ()
