"""Answer extraction: `<answer>(.*?)</answer>` (PRISM_SPEC §6).

Repeated or unbalanced tags: the FIRST complete `<answer>...</answer>` pair counts, so a
response that lists several answers gains nothing from the later ones. The captured text is
returned as-is; `has_format_tag` lets the verifier refuse an answer that still contains one of
the format's tags: `<answer>4<answer>5</answer>` captures "4<answer>5" (an ambiguous hedge),
and "5 <caption>...</caption>" means the template leaked into the answer.
"""

from __future__ import annotations

import re

ANSWER_PATTERN = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_ANSWER_BLOCK = re.compile(r"</think>\s*(?=<answer>)")
_FORMAT_TAG = re.compile(r"</?(?:answer|think|caption)>")


def extract_answer(text: str) -> str | None:
    """Content of the first `<answer>...</answer>` pair in `text`, or None if there is none."""
    match = ANSWER_PATTERN.search(text)
    return None if match is None else match.group(1)


def answer_block(reasoning: str) -> str:
    """The part of a format-valid reasoning segment from its answer block's `<answer>` on.

    Searching the whole response would pick up an `<answer>` drafted inside <think> (or the
    caption); the answer block starts at the first `</think>` followed by `<answer>`, exactly
    where FORMAT_PATTERN's lazy think group ends.
    """
    match = _ANSWER_BLOCK.search(reasoning)
    return reasoning if match is None else reasoning[match.end() :]


def has_format_tag(answer: str) -> bool:
    """True if an extracted answer still contains a caption/think/answer tag, open or closed."""
    return _FORMAT_TAG.search(answer) is not None
