"""String surgery shared by the judge's rules: cleaning, normalised text, numbers with units.

Every regex here is linear (no nested quantifiers) because answers come from a policy that
is being optimised against this code.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_TEXT_COMMAND = re.compile(
    r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}"
)
_SPACING = re.compile(r"\\[,;:! ]|\\left|\\right|\\displaystyle|~")
_FRAC_VARIANT = re.compile(r"\\[dt]frac")
_DEGREE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree|°")
_MINUS_SIGNS = str.maketrans(
    {"\u2212": "-", "\u2013": "-", "\u2014": "-", "\uff0d": "-", "\u2044": "/"}  # ⁄ from ½
)
# NFKC folds x² to "x2" and a₁ to "a1"; a run of super/subscripts becomes ^{...}/_{...} first.
_SUPERSCRIPT_RUN = re.compile("[\u2070\u00b9\u00b2\u00b3\u2074-\u207b]+")
_SUBSCRIPT_RUN = re.compile("[\u2080-\u208b]+")
_MIXED_FRACTION = re.compile("(?<=\\d)(?=[\u00bc-\u00be\u2150-\u215e])")  # 3½: 3 + 1/2
_MATH_CHARS = frozenset("0123456789\\+-*/^=_<>()[]{}|!")


def clean_answer(text: str) -> str:
    """NFKC-normalise (full-width `（Ｂ）` is `(B)`, `½` is 1/2), strip control characters (NUL
    included), math delimiters, a whole-answer \\boxed{} and a trailing full stop; unify minus
    signs. The result is what every rule compares, for answers and ground truths alike."""
    text = unicodedata.normalize("NFKC", scripts_to_latex(text))
    text = _CONTROL.sub("", text).translate(_MINUS_SIGNS).strip()
    for _ in range(3):  # a few layers ("$\\boxed{5}$."), bounded so nothing loops
        before = text
        text = text.removesuffix(".").strip()
        for opener, closer in _WRAPPERS:
            if (
                len(text) > len(opener) + len(closer)
                and text.startswith(opener)
                and text.endswith(closer)
            ):
                text = text[len(opener) : -len(closer)].strip()
        text = _unwrap_command(text, "\\boxed")
        if text == before:
            break
    return text


def scripts_to_latex(text: str) -> str:
    """x² -> x^2, x¹⁰ -> x^{10}, a₁ -> a_1, 3½ -> 3+½: written out before NFKC, which would
    drop the raising or lowering ("x2") or glue a mixed number together ("31/2")."""
    text = _MIXED_FRACTION.sub("+", text)
    text = _SUPERSCRIPT_RUN.sub(lambda match: _script("^", match.group()), text)
    return _SUBSCRIPT_RUN.sub(lambda match: _script("_", match.group()), text)


def _script(marker: str, run: str) -> str:
    body = unicodedata.normalize("NFKC", run).translate(_MINUS_SIGNS)
    return f"{marker}{body}" if len(body) == 1 else f"{marker}{{{body}}}"


def _unwrap_command(text: str, command: str) -> str:
    """`\\cmd{X}` -> X when the braces enclose the whole rest of the text."""
    if not (text.startswith(command + "{") and text.endswith("}")):
        return text
    inner = text[len(command) + 1 : -1]
    return inner if brace_balanced(inner) else text


def brace_balanced(text: str) -> bool:
    """True if `{`/`}` never close below zero and end at zero."""
    depth = 0
    for char in text:
        depth += (char == "{") - (char == "}")
        if depth < 0:
            return False
    return depth == 0


def nesting_depth(text: str) -> int:
    """Deepest bracket nesting over ( [ { (mixed types count together)."""
    depth = deepest = 0
    for char in text:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth = max(depth - 1, 0)
    return deepest


def unwrap_text_commands(text: str) -> str:
    """\\text{cm} -> cm (and \\mathrm, \\textbf, ...), innermost first, a bounded number of passes."""
    for _ in range(4):
        text, count = _TEXT_COMMAND.subn(r"\1", text)
        if count == 0:
            break
    return text


def normalize_text(text: str) -> str:
    """Loose comparison key: NFKC, casefold, LaTeX text/spacing commands and whitespace removed,
    \\dfrac -> \\frac, degree marks unified, trailing full stop dropped."""
    text = unicodedata.normalize("NFKC", unwrap_text_commands(text))
    text = _FRAC_VARIANT.sub(r"\\frac", _SPACING.sub("", text))
    text = _DEGREE.sub("°", text).replace("\\%", "%").replace("$", "")
    return "".join(text.split()).casefold().removesuffix(".")


def looks_mathematical(text: str) -> bool:
    """Worth a symbolic check: has a digit, a LaTeX command or an operator, or is a short token
    (a variable such as `x` or `e`). Plain words ("blue", "yes") are settled by string rules."""
    stripped = text.strip()
    return len(stripped) <= 2 or any(char in _MATH_CHARS for char in stripped)


# ---- numbers with optional units -------------------------------------------------------------

_NUMBER = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][+-]?\d{1,4})?|[+-]?\.\d+(?:[eE][+-]?\d{1,4})?"
_QUANTITY = re.compile(rf"(?P<number>{_NUMBER})(?P<space>\s*)(?P<unit>.*)", re.DOTALL)
_FRACTION = re.compile(
    r"(?P<sign>[+-]?)\s*(?:\\frac\{(?P<a>\d+)\}\{(?P<b>\d+)\}|(?P<c>\d+)\s*/\s*(?P<d>\d+))"
)
_POWER_OF_TEN = re.compile(
    r"(?:\\times|\\cdot|[x×*·])\s*10\s*\^\s*\{?\s*(?P<exp>[+-]?\d{1,3})\s*\}?"
)
_UNIT_WORD = re.compile(r"[^\W\d_]+(?:\^?[23])?(?:/[^\W\d_]+(?:\^?[23])?)?")
# Units that may follow a number without a space. Other single letters are variables ("5x").
# Both spellings of micro: clean_answer's NFKC turns the micro sign into the Greek letter mu.
_ATTACHED_UNITS = frozenset(
    "m cm mm km nm um µm μm g kg mg s ms min h hr l ml mL L kHz Hz GHz MHz N J W V A K Pa kPa "
    "kJ kW mph kmh m/s km/h cm^2 m^2 cm^3 m^3 mm^2 km^2 in ft yd mi lb lbs oz".split()
)


@dataclass(frozen=True)
class Quantity:
    """A number and its (normalised, possibly empty) unit."""

    value: float
    unit: str


def parse_quantity(text: str) -> Quantity | None:
    """'1,234.5 cm' -> Quantity(1234.5, 'cm'); '50%' -> (50, '%'); '3/4' -> (0.75, '').

    Thousands separators and units are stripped; returns None when the text is not one number
    followed by something that reads as a unit ("2x", "2\\pi", "3 + 4" are not quantities).
    """
    text = unwrap_text_commands(text).strip().removeprefix("\\$").removeprefix("$").strip()
    fraction = _FRACTION.fullmatch(text)
    if fraction is not None:
        return _fraction_value(fraction)
    match = _QUANTITY.fullmatch(text)
    if match is None:
        return None
    value = float(match["number"].replace(",", ""))
    rest = match["unit"]
    power = _POWER_OF_TEN.match(rest)
    if power is not None:
        value *= 10.0 ** int(power["exp"])
        rest = rest[power.end() :].lstrip()
        if not rest:
            return Quantity(value, "")
    unit = _normalize_unit(rest)
    if unit is None or (
        unit and not match["space"] and unit not in _ATTACHED_UNITS and unit not in ("°", "%")
    ):
        return None
    return Quantity(value, unit)


def _fraction_value(match: re.Match[str]) -> Quantity | None:
    numerator, denominator = (match["a"], match["b"]) if match["a"] else (match["c"], match["d"])
    if int(denominator) == 0 or len(numerator) > 300 or len(denominator) > 300:
        return None
    value = int(numerator) / int(denominator)
    return Quantity(-value if match["sign"] == "-" else value, "")


def _normalize_unit(unit: str) -> str | None:
    """Canonical unit text, '' for none, None if `unit` is not unit-like (an expression)."""
    unit = _DEGREE.sub("°", unit.replace("\\%", "%")).replace("²", "^2").replace("³", "^3")
    unit = "".join(unit.replace("{", "").replace("}", "").split())
    if unit in ("", "%", "°", "°C", "°F"):
        return unit
    lowered = unit.casefold()
    if lowered in ("percent", "degree", "degrees", "deg"):
        return "%" if lowered == "percent" else "°"
    if _UNIT_WORD.fullmatch(unit) is None:
        return None
    if len(unit) == 1 and unit not in _ATTACHED_UNITS:
        return None  # a lone letter after a space is still more likely a variable than a unit
    return unit.removesuffix("s") if len(unit) > 3 else unit


def relative_close(predicted: float, truth: float, tolerance: float = 1e-6) -> bool:
    """|p - t| / |t| < tolerance (exact equality when t == 0); non-finite never matches."""
    if not (abs(predicted) < float("inf") and abs(truth) < float("inf")):
        return False
    if truth == 0.0:
        return predicted == 0.0
    return abs(predicted - truth) / abs(truth) < tolerance
