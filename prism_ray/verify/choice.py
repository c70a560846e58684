"""Multiple choice: which letter a ground truth names, and which letter a prediction picks."""

from __future__ import annotations

import re
from dataclasses import dataclass

from prism_ray.verify.normalize import unwrap_text_commands

_TRUTH_PATTERNS = (
    re.compile(r"([A-H])"),  # bare letter
    re.compile(r"\(([A-H])\)\s*(.*)", re.DOTALL),  # "(A) option text"
    re.compile(r"([A-H])[.)]\s*(.*)", re.DOTALL),  # "A. option text", "A) option text"
)
# Priority order (PRISM_SPEC §6): bare letter > "answer/option/choice is X" > "(X)" > "X." / "X)".
_BARE = re.compile(r"[A-Ha-h]")
_STATED = re.compile(r"(?i:\b(?:answer|option|choice)(?:\s+is|\s*:)\s*)\(?([A-H])\b")
_PARENTHESISED = re.compile(r"\(([A-H])\)")
_MARKED = re.compile(r"(?:^|\s)([A-H])[.)](?=\s|$)")


@dataclass(frozen=True)
class ChoiceTruth:
    """A multiple-choice ground truth: its letter and, for "(A) text", the option text."""

    letter: str
    option_text: str | None = None


def parse_choice_truth(truth: str) -> ChoiceTruth | None:
    """ "B" / "(B) 45°" / "B. 45°" -> ChoiceTruth; anything else -> None."""
    truth = truth.strip()
    for pattern in _TRUTH_PATTERNS:
        match = pattern.fullmatch(truth)
        if match is not None:
            text = match.group(2).strip() if pattern.groups > 1 else ""
            return ChoiceTruth(match.group(1), text or None)
    return None


def predicted_letter(prediction: str) -> str | None:
    """The letter a prediction picks, or None if it names none or several (see
    `predicted_letters`)."""
    letters = predicted_letters(prediction)
    return next(iter(letters)) if len(letters) == 1 else None


def predicted_letters(prediction: str) -> frozenset[str]:
    """The letters a prediction names at the highest priority level that names any.

    A bare letter may be lower case ("b" cannot be anything else); inside text only upper case
    counts, so the article "a" or "e.g." are not read as choices. Several different letters at
    one level ("(A) (B) (C) (D)") are a hedge the judge refuses, while a stated answer still
    outranks a parenthesised one ("I'd say (A), but the answer is C" picks C) and repeating
    one ("B, i.e. (B)") is fine.
    """
    text = unwrap_text_commands(prediction).strip().strip("*\"'` ")
    if _BARE.fullmatch(text):
        return frozenset(text.upper())
    for pattern in (_STATED, _PARENTHESISED, _MARKED):
        letters = frozenset(match.group(1) for match in pattern.finditer(text))
        if letters:
            return letters
    return frozenset()
