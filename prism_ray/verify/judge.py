"""The rule-based judge (PRISM_SPEC §6): cheap, pure rules that settle most answers.

The judge never calls math-verify itself. It returns MATCH, MISMATCH (a rule is sure), or
UNDECIDED with the (predicted, truth) pairs that only a symbolic check can settle; the
`Verifier` runs those in its child process. Keeping the rules pure makes them fast to test
and keeps the slow, hostile-input-prone part in one place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from prism_ray.verify.choice import parse_choice_truth, predicted_letters
from prism_ray.verify.normalize import (
    clean_answer,
    looks_mathematical,
    nesting_depth,
    normalize_text,
    parse_quantity,
    relative_close,
)
from prism_ray.verify.structure import alternatives, parse_tuple, split_values

# Deeper nesting than this is not an answer a benchmark expects; it is refused before any rule
# recurses into it (recursion on tuples, math-verify's parser).
MAX_NESTING_DEPTH = 24


class Decision(str, Enum):
    MATCH = "match"
    MISMATCH = "mismatch"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class Judgement:
    """Outcome of the rules; `pending` lists the (predicted, truth) pairs that must all be
    symbolically equal for an UNDECIDED judgement to become a match."""

    decision: Decision
    pending: tuple[tuple[str, str], ...] = ()


MATCH = Judgement(Decision.MATCH)
MISMATCH = Judgement(Decision.MISMATCH)


def judge_answer(predicted: str, truth: str) -> Judgement:
    """Compare an extracted answer with one ground truth.

    Multi-value first: the truth's structure decides; a multi-value truth needs the same number
    of predicted values and every pair must match. A multiple-choice truth reads the whole
    prediction (a letter may sit in a sentence with commas).
    """
    predicted, truth = clean_answer(predicted), clean_answer(truth)
    if not predicted or not truth:
        return MISMATCH
    if predicted == truth:
        return MATCH
    if max(nesting_depth(predicted), nesting_depth(truth)) > MAX_NESTING_DEPTH:
        return MISMATCH
    hedge = _judge_hedge(predicted, truth)
    if hedge is not None:
        return hedge
    if parse_choice_truth(truth) is not None:
        return judge_value(predicted, truth)
    truth_parts, predicted_parts = split_values(truth), split_values(predicted)
    if len(truth_parts) != len(predicted_parts):
        return MISMATCH
    return combine(judge_value(p, t) for p, t in zip(predicted_parts, truth_parts, strict=True))


def judge_value(predicted: str, truth: str) -> Judgement:
    """One value against one value, rules in the spec's order: coordinate tuple, multiple
    choice, exact string, number (with units), normalised string; else UNDECIDED for the
    symbolic fallback, unless neither side is mathematical at all."""
    if predicted == truth:
        return MATCH
    truth_tuple, predicted_tuple = parse_tuple(truth), parse_tuple(predicted)
    if truth_tuple is not None and predicted_tuple is not None:
        if len(truth_tuple) != len(predicted_tuple):
            return MISMATCH
        return combine(judge_value(p, t) for p, t in zip(predicted_tuple, truth_tuple, strict=True))
    choice = parse_choice_truth(truth)
    if choice is not None:
        letters = predicted_letters(predicted)
        if letters:  # several different letters are a hedge, wrong even if one is right
            return MATCH if letters == {choice.letter} else MISMATCH
        if choice.option_text is None:
            return MISMATCH
        return judge_value(predicted, choice.option_text)  # "45°" for "(A) 45°"
    if normalize_text(predicted) == normalize_text(truth):
        return MATCH
    numeric = _judge_quantities(predicted, truth)
    if numeric is not None:
        return numeric
    if not (looks_mathematical(predicted) and looks_mathematical(truth)):
        return MISMATCH
    return Judgement(Decision.UNDECIDED, ((predicted, truth),))


def _judge_hedge(predicted: str, truth: str) -> Judgement | None:
    """A prediction that offers alternatives ("2 or 3", "A or B") the truth does not: MISMATCH
    when they differ, even if one is right (a policy must not gain by listing candidates);
    the judgement of the first when all say the same ("B or (B)"). None when there is no
    hedge, or the truth is itself a disjunction (then the whole texts are compared)."""
    options = alternatives(predicted)
    if len(options) < 2 or len(alternatives(truth)) > 1:
        return None
    first = options[0]
    if any(judge_answer(option, first).decision is not Decision.MATCH for option in options[1:]):
        return MISMATCH
    return judge_answer(first, truth)


def _judge_quantities(predicted: str, truth: str) -> Judgement | None:
    """Both sides a number (thousands separators and units stripped): relative error < 1e-6,
    and units must agree when both carry one. None when either side is not a plain number."""
    truth_q, predicted_q = parse_quantity(truth), parse_quantity(predicted)
    if truth_q is None or predicted_q is None:
        return None
    if truth_q.unit and predicted_q.unit and truth_q.unit.casefold() != predicted_q.unit.casefold():
        return MISMATCH
    return MATCH if relative_close(predicted_q.value, truth_q.value) else MISMATCH


def combine(judgements: Iterable[Judgement]) -> Judgement:
    """All parts must match: any MISMATCH decides; otherwise the pending pairs accumulate."""
    pending: list[tuple[str, str]] = []
    for judgement in judgements:
        if judgement.decision is Decision.MISMATCH:
            return MISMATCH
        pending.extend(judgement.pending)
    return Judgement(Decision.UNDECIDED, tuple(pending)) if pending else MATCH
