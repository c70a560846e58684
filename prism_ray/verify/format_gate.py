"""Format gate: is a response format-valid (PRISM_SPEC §2), and where are its segments?

`FORMAT_PATTERN` (prism_ray.prompting) is the definition. Run bare, its three lazy `.*?`
groups backtrack through every combination of closing tags when a match fails, which is
polynomial in the number of tags; a looping model that repeats `</think><answer>...` a few
hundred times in an 8k-token response would stall the verifier. `_could_match` decides the
same question in linear time first (tests check the two agree), so the regex only runs on
inputs it will accept, and on those it takes its first candidates and is linear too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prism_ray.prompting import FORMAT_PATTERN

_CAPTION_OPEN = "<caption>"
_ANSWER_CLOSE = "</answer>"
_CAPTION_TO_THINK = re.compile(r"</caption>\s*<think>")
_THINK_TO_ANSWER = re.compile(r"</think>\s*<answer>")


@dataclass(frozen=True)
class FormatResult:
    """The format verdict with the two segments the discriminator scores.

    caption: group 1 (`<caption>...</caption>`); reasoning: group 2 (`<think>...</answer>`).
    Spans are [start, end) character offsets into the response; all None when not ok.
    """

    ok: bool
    caption: str | None = None
    reasoning: str | None = None
    caption_span: tuple[int, int] | None = None
    reasoning_span: tuple[int, int] | None = None


INVALID = FormatResult(ok=False)


def check_format(response: str) -> FormatResult:
    """Format-validity of one response, with caption/reasoning segments and spans."""
    if not _could_match(response):
        return INVALID
    match = FORMAT_PATTERN.match(response)
    if match is None:  # cannot happen while _could_match is exact; kept as the source of truth
        return INVALID
    return FormatResult(
        ok=True,
        caption=match.group(1),
        reasoning=match.group(2),
        caption_span=match.span(1),
        reasoning_span=match.span(2),
    )


def _could_match(text: str) -> bool:
    """Linear-time equivalent of `FORMAT_PATTERN.match(text) is not None`.

    After stripping, the text must open with <caption> and close with </answer>. The caption
    may end at any `</caption>\\s*<think>`, and the earliest one leaves the most room, so it is
    enough to try it; likewise the first `</think>\\s*<answer>` after that <think> must end
    before the final </answer> starts.
    """
    start, end = _strip_bounds(text)
    if not text.startswith(_CAPTION_OPEN, start) or not text.endswith(_ANSWER_CLOSE, start, end):
        return False
    to_think = _CAPTION_TO_THINK.search(text, start + len(_CAPTION_OPEN), end)
    if to_think is None:
        return False
    to_answer = _THINK_TO_ANSWER.search(text, to_think.end(), end)
    return to_answer is not None and to_answer.end() <= end - len(_ANSWER_CLOSE)


def _strip_bounds(text: str) -> tuple[int, int]:
    """[start, end) of `text` without leading/trailing whitespace (regex `\\s` == str.isspace)."""
    stripped = text.strip()
    if not stripped:
        return 0, 0
    start = len(text) - len(text.lstrip())
    return start, start + len(stripped)
