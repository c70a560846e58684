"""Answer structure: multi-value answers and coordinate tuples (PRISM_SPEC §6, step 1)."""

from __future__ import annotations

import re

from prism_ray.verify.normalize import unwrap_text_commands

_OPENERS, _CLOSERS = "([{", ")]}"
# "or" as a word; "either" before the first alternative; joiners left at a cut.
_OR = re.compile(r"\bor\b", re.IGNORECASE)
_EITHER = re.compile(r"^either\b", re.IGNORECASE)
_LOOSE_JOINERS = " \t\n,;:"
_ENUMERATOR = re.compile(r"\((\d{1,2})\)")
_TRAILING_JOINER = re.compile(r"(?:[,;]|\band\b)\s*$")


def split_top_level(text: str, separator: str) -> list[str]:
    """Split on `separator` outside any ( [ { nesting. A comma written as a thousands separator
    (digit, comma, exactly three digits, no space) is not a separator: "1,000" is one value."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth = max(depth - 1, 0)
        elif char == separator and depth == 0 and not _is_thousands_comma(text, index):
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return [part.strip() for part in parts]


def _is_thousands_comma(text: str, index: int) -> bool:
    if text[index] != "," or index == 0 or not text[index - 1].isdigit():
        return False
    group = text[index + 1 : index + 4]
    after = text[index + 4 : index + 5]
    return len(group) == 3 and group.isdigit() and not after.isdigit()


def split_values(text: str) -> list[str]:
    """The values of a (possibly) multi-value answer, in order.

    "(1) 5 (2) 7" -> ["5", "7"]; "5; 7" -> ["5", "7"]; "5, 7" -> ["5", "7"]; "(5, 7)" stays
    one value (a tuple); a single value gives a one-element list.
    """
    enumerated = _split_enumerated(text)
    if enumerated is not None:
        return enumerated
    for separator in (";", ","):
        parts = split_top_level(text, separator)
        if len(parts) > 1:
            return parts
    return [text.strip()]


def _split_enumerated(text: str) -> list[str] | None:
    """Split "(1) a (2) b ..." at consecutive markers (1), (2), ...; None unless it starts at (1)
    and reaches (2)."""
    stripped = text.strip()
    if not stripped.startswith("(1)"):
        return None
    cuts, expected = [], 1
    for match in _ENUMERATOR.finditer(stripped):
        if int(match.group(1)) == expected:
            cuts.append(match)
            expected += 1
    if len(cuts) < 2:
        return None
    ends = [cut.start() for cut in cuts[1:]] + [len(stripped)]
    return [
        _TRAILING_JOINER.sub("", stripped[cut.end() : end]).strip()
        for cut, end in zip(cuts, ends, strict=True)
    ]


def parse_tuple(text: str) -> list[str] | None:
    """ "(3, -4)" -> ["3", "-4"]: a parenthesised, comma-separated list of two or more values
    whose opening parenthesis closes at the very end. Brackets are left alone on purpose:
    "[0, 1]" is an interval, not a point."""
    text = text.strip()
    if len(text) < 2 or text[0] != "(" or text[-1] != ")" or _closing_index(text) != len(text) - 1:
        return None
    parts = split_top_level(text[1:-1], ",")
    return parts if len(parts) >= 2 else None


def _closing_index(text: str) -> int:
    """Index of the bracket closing text[0], or -1."""
    depth = 0
    for index, char in enumerate(text):
        if char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth -= 1
            if depth == 0:
                return index
    return -1


def alternatives(text: str) -> list[str]:
    """The alternatives of a hedged answer: "2 or 3", "either 2 or 3", "A or B", "x=2 \\text{ or }
    x=3" -> two each. Cut at a top-level word "or" (inside brackets it belongs to the value);
    a text without two non-empty alternatives comes back as [text]."""
    plain = unwrap_text_commands(text)
    depth_at = _depths(plain)
    cuts = [match for match in _OR.finditer(plain) if depth_at[match.start()] == 0]
    if not cuts:
        return [text]
    bounds = [0, *(i for match in cuts for i in match.span()), len(plain)]
    parts = [plain[bounds[i] : bounds[i + 1]] for i in range(0, len(bounds), 2)]
    parts[0] = _EITHER.sub("", parts[0].strip())
    parts = [part.strip(_LOOSE_JOINERS) for part in parts]
    parts = [part for part in parts if part]
    return parts if len(parts) >= 2 else [text]


def _depths(text: str) -> list[int]:
    """Bracket depth at every index of `text` (a closer counts as still inside)."""
    depths, depth = [], 0
    for char in text:
        if char in _OPENERS:
            depth += 1
        depths.append(depth)
        if char in _CLOSERS:
            depth = max(depth - 1, 0)
    return depths
