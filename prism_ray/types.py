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
