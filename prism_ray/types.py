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


@dataclass(frozen=True)
class DiscriminatorItem:
    """One prompt for the discriminator: the teacher's segments (scored once per prompt) and
    the n student responses to compare with them.

    Student responses are whole response texts; the teacher is given as its two segments.
    ``models.segments`` turns both into token segments by the same procedure.
    """

    uid: str
    question: str
    images: tuple[bytes, ...]
    teacher_caption: str
    teacher_cot: str
    student_responses: tuple[str, ...]

    @staticmethod
    def join(caption: str, cot: str) -> str:
        """Two segments as one response in the canonical layout (``prompting.format_response``
        puts a newline between them), so they can be split exactly like a rollout."""
        return f"{caption}\n{cot}"

    @property
    def teacher_response(self) -> str:
        return self.join(self.teacher_caption, self.teacher_cot)

    @classmethod
    def from_warmup(cls, pair: WarmupPair) -> DiscriminatorItem:
        """A warm-up pair: one student response, rebuilt from its two segments."""
        student = cls.join(pair.student_caption, pair.student_cot)
        return cls(pair.uid, pair.prompt, (pair.image,), pair.teacher_caption,
                   pair.teacher_cot, (student,))

    @classmethod
    def from_prompt(cls, prompt: RLPrompt, responses: tuple[str, ...]) -> DiscriminatorItem:
        """An alignment prompt with its n rollout texts (needs the teacher columns)."""
        if prompt.teacher_caption is None or prompt.teacher_cot is None:
            raise ValueError(f"prompt '{prompt.uid}' has no teacher_caption/teacher_cot")
        return cls(prompt.uid, prompt.question, prompt.images, prompt.teacher_caption,
                   prompt.teacher_cot, tuple(responses))


@dataclass(frozen=True)
class DiscriminatorScores:
    """Clipped scores of one ``DiscriminatorItem``: the teacher's once, each student's per
    rollout. Format-invalid students score 0 and are marked invalid."""

    teacher_caption: float
    teacher_reasoning: float
    student_caption: tuple[float, ...]
    student_reasoning: tuple[float, ...]
    valid: tuple[bool, ...]
