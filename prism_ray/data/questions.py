"""Questions over a scene: perception (find the objects) plus a short chain of reasoning.

Each generator computes the answer and the teacher's reasoning steps from the `Scene`, so the
ground truth never depends on a model. A generator returns None when its question would be
ill-posed for the scene (no digits to add, a tie for the most frequent colour, ...).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from prism_ray.data.scenes import COLOR_NAMES, SHAPES, Scene, SceneObject

NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
)  # fmt: skip
OPTION_LETTERS = "ABCDEFGH"


class QuestionKind(str, Enum):
    COUNT_COLOR = "count_color"
    COUNT_SHAPE = "count_shape"
    SUM_DIGITS = "sum_digits"
    DIGIT_RANGE = "digit_range"
    COMPARE_SHAPES = "compare_shapes"
    MOST_FREQUENT_COLOR = "most_frequent_color"


@dataclass(frozen=True)
class Question:
    """A question, its ground-truth answer and the teacher's reasoning steps (last = conclusion).

    `options` is empty for numeric answers; for multiple choice the answer is a bare letter.
    """

    kind: QuestionKind
    text: str
    answer: str
    steps: tuple[str, ...]
    options: tuple[str, ...] = ()
    equivalent_answers: tuple[str, ...] = ()


def sample_question(scene: Scene, rng: random.Random) -> Question:
    """Pick a question kind uniformly among those well-posed for the scene."""
    generators = list(_GENERATORS)
    rng.shuffle(generators)
    for generate in generators:
        question = generate(scene, rng)
        if question is not None:
            return question
    raise AssertionError("count questions are well-posed for every scene")


def _numeric(kind: QuestionKind, text: str, value: int, steps: tuple[str, ...]) -> Question:
    words = (NUMBER_WORDS[value],) if 0 <= value < len(NUMBER_WORDS) else ()
    return Question(kind, text, str(value), steps, equivalent_answers=words)


def _choice(
    kind: QuestionKind, text: str, options: list[str], correct: str, steps: tuple[str, ...]
) -> Question:
    letters = OPTION_LETTERS[: len(options)]
    rendered = " ".join(
        f"({letter}) {option}" for letter, option in zip(letters, options, strict=True)
    )
    letter = letters[options.index(correct)]
    steps = (*steps, f"So {correct}: ({letter}).")
    return Question(kind, f"{text}\n{rendered}", letter, steps, tuple(options), (correct,))


def _listing(objects: list[SceneObject], describe: Callable[[SceneObject], str]) -> str:
    return ", ".join(describe(obj) for obj in objects) if objects else "none"


def _count_color(scene: Scene, rng: random.Random) -> Question | None:
    present = sorted({obj.color for obj in scene.objects}, key=COLOR_NAMES.index)
    # Mostly colours that are there; sometimes any colour, so "0" is a possible answer.
    color = rng.choice(present) if rng.random() < 0.8 else rng.choice(COLOR_NAMES)
    matches = [obj for obj in scene.objects if obj.color == color]
    found = _listing(matches, lambda obj: f"{obj.shape} ({obj.position})")
    steps = (f"{color.capitalize()} shapes: {found}.", f"Count: {len(matches)}.")
    return _numeric(
        QuestionKind.COUNT_COLOR, f"How many {color} shapes are there?", len(matches), steps
    )


def _count_shape(scene: Scene, rng: random.Random) -> Question | None:
    shape = rng.choice(SHAPES)
    matches = [obj for obj in scene.objects if obj.shape == shape]
    found = _listing(matches, lambda obj: f"{obj.color} ({obj.position})")
    steps = (f"{shape.capitalize()}s: {found}.", f"Count: {len(matches)}.")
    return _numeric(QuestionKind.COUNT_SHAPE, f"How many {shape}s are there?", len(matches), steps)


def _sum_digits(scene: Scene, rng: random.Random) -> Question | None:
    with_digits = [obj for obj in scene.objects if obj.digit is not None]
    if not with_digits:
        return None
    color = rng.choice(sorted({obj.color for obj in with_digits}, key=COLOR_NAMES.index))
    digits = [obj.digit for obj in with_digits if obj.color == color and obj.digit is not None]
    total = sum(digits)
    addition = f"{' + '.join(map(str, digits))} = {total}." if len(digits) > 1 else f"Sum: {total}."
    steps = (f"Digits on {color} shapes: {', '.join(map(str, digits))}.", addition)
    text = f"What is the sum of the digits on the {color} shapes?"
    return _numeric(QuestionKind.SUM_DIGITS, text, total, steps)


def _digit_range(scene: Scene, rng: random.Random) -> Question | None:
    digits = scene.digits()
    if len(digits) < 2:
        return None
    largest, smallest = max(digits), min(digits)
    steps = (
        f"Digits: {', '.join(map(str, digits))}.",
        f"{largest} - {smallest} = {largest - smallest}.",
    )
    text = "What is the largest digit minus the smallest digit?"
    return _numeric(QuestionKind.DIGIT_RANGE, text, largest - smallest, steps)


def _compare_shapes(scene: Scene, rng: random.Random) -> Question | None:
    first, second = rng.sample(SHAPES, 2)
    counts = Counter(obj.shape for obj in scene.objects)
    options = ["yes", "no"]
    rng.shuffle(options)
    correct = "yes" if counts[first] > counts[second] else "no"
    steps = (f"{first.capitalize()}s: {counts[first]}. {second.capitalize()}s: {counts[second]}.",)
    text = f"Are there more {first}s than {second}s?"
    return _choice(QuestionKind.COMPARE_SHAPES, text, options, correct, steps)


def _most_frequent_color(scene: Scene, rng: random.Random) -> Question | None:
    counts = Counter(obj.color for obj in scene.objects)
    ranked = counts.most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None
    options = list(COLOR_NAMES)
    rng.shuffle(options)
    tally = ", ".join(f"{color} {counts[color]}" for color in COLOR_NAMES if counts[color])
    text = "Which color appears most often?"
    return _choice(
        QuestionKind.MOST_FREQUENT_COLOR, text, options, ranked[0][0], (f"Counts: {tally}.",)
    )


_GENERATORS: tuple[Callable[[Scene, random.Random], Question | None], ...] = (
    _count_color,
    _count_shape,
    _sum_digits,
    _digit_range,
    _compare_shapes,
    _most_frequent_color,
)
