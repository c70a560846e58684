"""Response writers: the high-fidelity black-box teacher and the lower-fidelity sources.

The teacher describes every object (colour, shape, digit, position), reasons in 1-2 terse lines
and answers correctly. The public demonstrations and the student segments of the warm-up pairs
are degraded copies of it (objects left out, wrong colours, digits not mentioned, skipped steps,
wrong answers), mirroring the paper's teacher-curated vs public data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from prism_ray.data.questions import Question
from prism_ray.data.scenes import COLOR_NAMES, GRID, Scene, SceneObject
from prism_ray.prompting import format_response
from prism_ray.verify.format_gate import check_format


@dataclass(frozen=True)
class Fidelity:
    """How a writer degrades the teacher's response. Per-object or per-response probabilities."""

    drop_object: float
    wrong_color: float
    drop_digit: float
    drop_header: float
    skip_steps: float
    wrong_answer: float


# Public demonstrations: sparser captions, skipped steps, about 30% wrong answers.
PUBLIC = Fidelity(
    drop_object=0.25,
    wrong_color=0.1,
    drop_digit=0.3,
    drop_header=0.5,
    skip_steps=0.5,
    wrong_answer=0.3,
)
# Student segments: a little worse still, and never identical to the teacher (see student_segments).
STUDENT = Fidelity(
    drop_object=0.3,
    wrong_color=0.2,
    drop_digit=0.4,
    drop_header=0.5,
    skip_steps=0.6,
    wrong_answer=0.5,
)


def describe(obj: SceneObject) -> str:
    digit = f" with digit {obj.digit}" if obj.digit is not None else ""
    return f"{obj.color} {obj.shape}{digit}, {obj.position}"


def _header(count: int) -> str:
    plural = "s" if count != 1 else ""
    return f"Flat drawing, white background, {count} shape{plural} on a {GRID}x{GRID} grid."


def teacher_caption_lines(scene: Scene) -> list[str]:
    return [_header(len(scene.objects)), *(describe(obj) for obj in scene.objects)]


def teacher_response(scene: Scene, question: Question) -> str:
    return format_response(teacher_caption_lines(scene), "\n".join(question.steps), question.answer)


def public_response(
    scene: Scene, question: Question, rng: random.Random, fidelity: Fidelity = PUBLIC
) -> str:
    """A lower-fidelity demonstration; with probability `fidelity.wrong_answer` the answer is wrong."""
    caption = degraded_caption_lines(scene, rng, fidelity)
    reasoning, answer = degraded_reasoning(question, rng, fidelity)
    return format_response(caption, reasoning, answer)


def student_segments(
    scene: Scene, question: Question, rng: random.Random, fidelity: Fidelity = STUDENT
) -> tuple[str, str]:
    """(caption segment, reasoning segment) of a student: each differs from the teacher's.

    A pair whose student segment equals the teacher's would carry no Bradley-Terry signal, so
    a defect is forced when the random ones all missed.
    """
    caption = degraded_caption_lines(scene, rng, fidelity)
    if caption == teacher_caption_lines(scene):
        caption = _force_caption_defect(scene, rng)
    reasoning, answer = degraded_reasoning(question, rng, fidelity)
    if (reasoning, answer) == ("\n".join(question.steps), question.answer):
        reasoning = question.steps[-1]
    return split_segments(format_response(caption, reasoning, answer))


def split_segments(response: str) -> tuple[str, str]:
    """The caption segment and the reasoning segment, through the one format gate."""
    gate = check_format(response)
    if not gate.ok:
        raise ValueError(f"response does not follow the format: {response!r}")
    return gate.caption, gate.reasoning


def degraded_caption_lines(scene: Scene, rng: random.Random, fidelity: Fidelity) -> list[str]:
    kept = []
    for obj in scene.objects:
        if rng.random() < fidelity.drop_object:
            continue
        if rng.random() < fidelity.wrong_color:
            obj = replace(obj, color=_other(rng, COLOR_NAMES, obj.color))
        if obj.digit is not None and rng.random() < fidelity.drop_digit:
            obj = replace(obj, digit=None)
        kept.append(obj)
    kept = kept or [scene.objects[0]]  # a caption needs at least one bullet
    lines = [describe(obj) for obj in kept]
    # The header counts only the objects mentioned: a wrong count whenever some were left out.
    return lines if rng.random() < fidelity.drop_header else [_header(len(kept)), *lines]


def degraded_reasoning(
    question: Question, rng: random.Random, fidelity: Fidelity
) -> tuple[str, str]:
    """(reasoning, answer): steps skipped and/or a wrong answer with a conclusion that states it."""
    skip = rng.random() < fidelity.skip_steps
    if rng.random() < fidelity.wrong_answer:
        answer = wrong_answer(question, rng)
        steps = [] if skip else list(question.steps[:-1])
        return "\n".join([*steps, f"The answer is {answer}."]), answer
    steps = question.steps[-1:] if skip else question.steps
    return "\n".join(steps), question.answer


def wrong_answer(question: Question, rng: random.Random) -> str:
    """A plausible answer that differs from the ground truth (another letter, or off by 1-2)."""
    if question.options:
        letters = [chr(ord("A") + index) for index in range(len(question.options))]
        return _other(rng, letters, question.answer)
    value = int(question.answer)
    return str(rng.choice([value + delta for delta in (-2, -1, 1, 2) if value + delta >= 0]))


def _force_caption_defect(scene: Scene, rng: random.Random) -> list[str]:
    index = rng.randrange(len(scene.objects))
    if len(scene.objects) > 1 and rng.random() < 0.5:
        kept = [obj for position, obj in enumerate(scene.objects) if position != index]
    else:
        target = scene.objects[index]
        recoloured = replace(target, color=_other(rng, COLOR_NAMES, target.color))
        kept = [recoloured if obj is target else obj for obj in scene.objects]
    return [_header(len(kept)), *(describe(obj) for obj in kept)]


def _other(rng: random.Random, choices: tuple[str, ...] | list[str], current: str) -> str:
    return rng.choice([choice for choice in choices if choice != current])
