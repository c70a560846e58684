"""Response writers: the high-fidelity black-box teacher and the lower-fidelity sources.

The teacher describes every object (colour, shape, digit, position), reasons in 1-2 terse lines
and answers correctly. The public demonstrations and the student segments of the warm-up pairs
are degraded copies of it, mirroring the paper's teacher-curated vs public data: perception
errors (objects left out or hallucinated, wrong colours or shapes, digits not mentioned, a
miscounted header) and reasoning drift (skipped steps, wrong answers).
`prism_ray.data.fidelity` measures the perception side.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from prism_ray.data.questions import OPTION_LETTERS, Question
from prism_ray.data.scenes import (
    COLOR_NAMES,
    DIGIT_PROBABILITY,
    GRID,
    SHAPES,
    Scene,
    SceneObject,
)
from prism_ray.prompting import format_response
from prism_ray.verify.format_gate import check_format


@dataclass(frozen=True)
class Fidelity:
    """How a writer degrades the teacher's response. Each field is a probability.

    Perception, per object: drop_object (left out), wrong_color, wrong_shape, drop_digit (its
    digit not mentioned). Perception, per caption: hallucinate (one extra object in an empty
    cell), miscount (the header's count off by one). Style: drop_header. Reasoning, per
    response: skip_steps, wrong_answer (a shortcut "The answer is X." with a random wrong X),
    answer_drift (the steps are right but the final answer drifts from them the same way each
    time: one more than the count, the option after the right one).
    """

    drop_object: float
    wrong_color: float
    wrong_shape: float
    drop_digit: float
    hallucinate: float
    miscount: float
    drop_header: float
    skip_steps: float
    wrong_answer: float
    answer_drift: float = 0.0


# The perception errors, which `public_fidelity` scales together.
PERCEPTION_ERRORS = (
    "drop_object", "wrong_color", "wrong_shape", "drop_digit", "hallucinate", "miscount"
)  # fmt: skip

# Public demonstrations: sparser, sometimes wrong captions, skipped steps, 30% wrong answers.
PUBLIC = Fidelity(
    drop_object=0.25,
    wrong_color=0.1,
    wrong_shape=0.1,
    drop_digit=0.3,
    hallucinate=0.15,
    miscount=0.1,
    drop_header=0.5,
    skip_steps=0.5,
    wrong_answer=0.3,
)
# The headline perception rate of the public profile: the chance that an object is left out.
PUBLIC_PERCEPTION_ERROR = PUBLIC.drop_object
# Student segments: a little worse still, and never identical to the teacher (see
# student_segments). No shape, hallucination or count errors, so the warm-up pairs (and what
# the discriminator learns from them) stay as they were before those kinds existed.
STUDENT = Fidelity(
    drop_object=0.3,
    wrong_color=0.2,
    wrong_shape=0.0,
    drop_digit=0.4,
    hallucinate=0.0,
    miscount=0.0,
    drop_header=0.5,
    skip_steps=0.6,
    wrong_answer=0.5,
    answer_drift=0.4,
)


def public_fidelity(perception_error: float, reasoning_error: float,
                    answer_drift: float = 0.0) -> Fidelity:
    """The public profile at other rates. Every perception error probability scales by
    perception_error / PUBLIC_PERCEPTION_ERROR (capped at 1), so `perception_error` is the
    chance that an object is left out and 0 gives captions as true as the teacher's;
    `reasoning_error` is the chance of a shortcut to a random wrong answer, `answer_drift` the
    chance that right steps end in the source's systematic slip (see `drifted_answer`)."""
    for name, rate in (("perception_error", perception_error), ("reasoning_error", reasoning_error),
                       ("answer_drift", answer_drift)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {rate}")
    scale = perception_error / PUBLIC_PERCEPTION_ERROR
    scaled = {name: min(1.0, getattr(PUBLIC, name) * scale) for name in PERCEPTION_ERRORS}
    return replace(PUBLIC, wrong_answer=reasoning_error, answer_drift=answer_drift, **scaled)


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
    scene: Scene, question: Question, rng: random.Random, fidelity: Fidelity = STUDENT,
    matched: bool = False,
) -> tuple[str, str]:
    """(caption segment, reasoning segment) of a student: each differs from the teacher's.

    A pair whose student segment equals the teacher's would carry no Bradley-Terry signal, so
    a defect is forced when the random ones all missed. ``matched``: the caption is
    `matched_caption_lines` (the teacher's form, one claim false) instead of a degraded one.
    """
    caption = (matched_caption_lines(scene, rng) if matched
               else degraded_caption_lines(scene, rng, fidelity))
    if caption == teacher_caption_lines(scene):
        caption = _force_caption_defect(scene, rng)
    reasoning, answer = degraded_reasoning(question, rng, fidelity)
    if (reasoning, answer) == ("\n".join(question.steps), question.answer):
        reasoning = question.steps[-1]
    return split_segments(format_response(caption, reasoning, answer))


def matched_caption_lines(scene: Scene, rng: random.Random) -> list[str]:
    """The teacher's caption with one claim made false that only the image reveals: the same
    header and the same number of object lines, but one object's colour, shape or cell is
    wrong (a moved object lands in an empty cell). A negative that text alone cannot tell
    from the teacher's caption, where a left-out object or a missing header can be."""
    index = rng.randrange(len(scene.objects))
    target = scene.objects[index]
    empty = _empty_cells(scene)
    kind = rng.choice(("color", "shape", "cell") if empty else ("color", "shape"))
    if kind == "color":
        changed = replace(target, color=_other(rng, COLOR_NAMES, target.color))
    elif kind == "shape":
        changed = replace(target, shape=_other(rng, SHAPES, target.shape))
    else:
        changed = replace(target, cell=rng.choice(empty))
    objects = sorted((changed if obj is target else obj for obj in scene.objects),
                     key=lambda obj: obj.cell)
    return [_header(len(objects)), *(describe(obj) for obj in objects)]


def split_segments(response: str) -> tuple[str, str]:
    """The caption segment and the reasoning segment, through the one format gate."""
    gate = check_format(response)
    if not gate.ok:
        raise ValueError(f"response does not follow the format: {response!r}")
    return gate.caption, gate.reasoning


def degraded_caption_lines(scene: Scene, rng: random.Random, fidelity: Fidelity) -> list[str]:
    perceived = (_perceive(obj, rng, fidelity) for obj in scene.objects)
    kept = [obj for obj in perceived if obj is not None]
    kept = kept or [scene.objects[0]]  # a caption needs at least one bullet
    if _happens(rng, fidelity.hallucinate):
        kept = _with_hallucination(kept, scene, rng)
    # The header counts the objects mentioned (wrong whenever some were left out or made up),
    # and is sometimes miscounted on top.
    count = len(kept)
    if _happens(rng, fidelity.miscount):
        count += 1 if count == 1 else rng.choice((-1, 1))
    lines = [describe(obj) for obj in kept]
    return lines if rng.random() < fidelity.drop_header else [_header(count), *lines]


def _perceive(obj: SceneObject, rng: random.Random, fidelity: Fidelity) -> SceneObject | None:
    """The object as a lower-fidelity writer sees it; None when it is left out."""
    if rng.random() < fidelity.drop_object:
        return None
    if rng.random() < fidelity.wrong_color:
        obj = replace(obj, color=_other(rng, COLOR_NAMES, obj.color))
    if _happens(rng, fidelity.wrong_shape):
        obj = replace(obj, shape=_other(rng, SHAPES, obj.shape))
    if obj.digit is not None and rng.random() < fidelity.drop_digit:
        obj = replace(obj, digit=None)
    return obj


def _happens(rng: random.Random, probability: float) -> bool:
    # No draw at probability 0: an error kind a profile does not use leaves its stream (and so
    # the bytes it writes, e.g. the student segments) exactly as before the kind existed.
    return probability > 0 and rng.random() < probability


def _empty_cells(scene: Scene) -> list[int]:
    occupied = {obj.cell for obj in scene.objects}
    return [cell for cell in range(GRID * GRID) if cell not in occupied]


def _with_hallucination(
    kept: list[SceneObject], scene: Scene, rng: random.Random
) -> list[SceneObject]:
    """`kept` plus a made-up object in a cell that is empty in the scene, in reading order."""
    empty = _empty_cells(scene)
    if not empty:  # sampled scenes never fill the grid; a hand-made one might
        return kept
    cell = rng.choice(empty)
    # A made-up object looks like the scene's: digits only where the task draws them.
    carries_digit = bool(scene.digits()) and rng.random() < DIGIT_PROBABILITY
    digit = rng.randint(1, 9) if carries_digit else None
    made_up = SceneObject(rng.choice(COLOR_NAMES), rng.choice(SHAPES), cell, digit)
    return sorted([*kept, made_up], key=lambda obj: obj.cell)


def degraded_reasoning(
    question: Question, rng: random.Random, fidelity: Fidelity
) -> tuple[str, str]:
    """(reasoning, answer): steps skipped and/or a wrong answer with a conclusion that states it."""
    skip = rng.random() < fidelity.skip_steps
    if fidelity.answer_drift and rng.random() < fidelity.answer_drift:
        steps = question.steps[-1:] if skip else question.steps
        return "\n".join(steps), drifted_answer(question)
    if rng.random() < fidelity.wrong_answer:
        answer = wrong_answer(question, rng)
        steps = [] if skip else list(question.steps[:-1])
        return "\n".join([*steps, f"The answer is {answer}."]), answer
    steps = question.steps[-1:] if skip else question.steps
    return "\n".join(steps), question.answer


def drifted_answer(question: Question) -> str:
    """The systematic slip of a careless source: one more than the count, or the option
    after the right one (cyclically)."""
    if question.options:
        index = (OPTION_LETTERS.index(question.answer) + 1) % len(question.options)
        return OPTION_LETTERS[index]
    return str(int(question.answer) + 1)


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
