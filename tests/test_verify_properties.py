"""Property tests for the verifier: any string, however hostile, gets a judgement or a result
quickly and never an exception; hedges and compatibility forms behave for any values."""

from __future__ import annotations

import time
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prism_ray.config.phases import RewardConfig
from prism_ray.config.schema import VerifierConfig
from prism_ray.prompting import format_response
from prism_ray.verify import (
    Decision,
    Judgement,
    Reason,
    Verifier,
    VerifyResult,
    alternatives,
    check_format,
    clean_answer,
    is_safe_for_symbolic,
    judge_answer,
    parse_quantity,
    predicted_letter,
    split_values,
)

FAST_S = 1.0  # one pure rule call on a few kB of text is milliseconds; this is a loose bound
SYMBOLIC_TIMEOUT_S = 2.0
RULES_ONLY_REASONS = {
    Reason.CORRECT,
    Reason.WRONG,
    Reason.FORMAT,
    Reason.EMPTY_ANSWER,
    Reason.OVERLONG_ANSWER,
}

# Pieces a policy under optimisation pressure might string together.
TOKENS = [
    "{", "}", "(", ")", "[", "]", "^", "**", "_", "\\frac{", "\\sqrt{", "\\boxed{", "\\text{",
    "\\left(", "\\right)", "$", "$$", "\\(", "\\)", "!", ",", ";", " or ", "either ", " and ",
    "(1)", "(2)", "(A)", "(B)", "A", "B.", "answer is ", "Ａ", "（Ｂ）", "²", "½", "⁻", "₁",
    "µ", "°", "%", "\\circ", "\\times 10^{", "e", "x", "\\pi", "1,000", "9" * 400, "0.5",
    "-", "\u2212", "/", "=", "10^{10^{10}}", "2^{2^{2}}", "9**9**9", "\x00", "\x1b[31m",
    "\u2028", "\u0085", "\u200b", "\u0301", "\ufdfa", "<answer>", "</answer>", "<think>",
    " ", "\n", "\t",
]  # fmt: skip
hostile = st.lists(st.sampled_from(TOKENS) | st.text(max_size=8), max_size=40).map("".join)
nested = st.builds(
    lambda n, opener, closer, core: opener * n + core + closer * n,
    st.integers(0, 3000),
    st.sampled_from(["{", "(", "[", "\\frac{", "\\sqrt{", "2^{"]),
    st.sampled_from(["}", ")", "]", "}{1}"]),
    st.sampled_from(["1", "x", "", "^"]),
)
huge_number = st.builds(
    lambda digits, point, exponent: digits + point + exponent,
    st.text("0123456789", min_size=1, max_size=6000),
    st.sampled_from(["", ".", ".5", ",000"]),
    st.sampled_from(["", "e99999999", "e-99999", "!", "^{99999}", " cm", "%"]),
)
answers = (
    st.text() | st.text(st.characters(codec="utf-8"), max_size=200) | hostile | nested | huge_number
)


def _timed(function, *args):
    started = time.monotonic()
    value = function(*args)
    assert time.monotonic() - started < FAST_S
    return value


@settings(max_examples=300, deadline=None)
@given(answers, answers)
def test_rules_judge_any_pair_quickly(predicted: str, truth: str) -> None:
    judgement = _timed(judge_answer, predicted, truth)
    assert isinstance(judgement, Judgement) and judgement.decision in set(Decision)
    if judgement.decision is Decision.UNDECIDED:
        assert judgement.pending
    for function in (
        clean_answer,
        parse_quantity,
        split_values,
        alternatives,
        predicted_letter,
        check_format,
    ):
        _timed(function, predicted)
    assert isinstance(_timed(is_safe_for_symbolic, predicted), bool)


@settings(max_examples=200, deadline=None)
@given(answers)
def test_an_answer_matches_itself(text: str) -> None:
    expected = Decision.MATCH if clean_answer(text) else Decision.MISMATCH
    assert judge_answer(text, text).decision is expected


@settings(max_examples=100, deadline=None)
@given(st.integers(-(10**6), 10**6), st.integers(-(10**6), 10**6), st.booleans())
def test_a_hedge_between_two_numbers_is_wrong(a: int, b: int, either: bool) -> None:
    hedge = f"{'either ' if either else ''}{a} or {b}"
    expected = Decision.MATCH if a == b else Decision.MISMATCH
    assert judge_answer(hedge, str(a)).decision is expected
    assert judge_answer(hedge, str(b)).decision is expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from("ABCDEFGH"), min_size=1, max_size=6), st.sampled_from("ABCDEFGH"))
def test_listing_several_options_is_wrong(letters: list[str], truth: str) -> None:
    listed = " ".join(f"({letter})" for letter in letters)
    expected = letters == [truth] * len(letters)
    assert (judge_answer(listed, truth).decision is Decision.MATCH) is expected
    assert (judge_answer(" or ".join(letters), truth).decision is Decision.MATCH) is expected


@settings(max_examples=100, deadline=None)
@given(st.text("ABCDEFGH0123456789()., ", min_size=1, max_size=30))
def test_full_width_forms_judge_as_their_ascii(text: str) -> None:
    """Full-width ASCII (U+FF01..U+FF5E) is what NFKC folds: the verdict cannot change."""
    wide = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)
    assert unicodedata.normalize("NFKC", wide) == text
    for truth in ("B", "(B) 45", "12", "3, 4"):
        assert judge_answer(wide, truth) == judge_answer(text, truth)
        assert judge_answer(truth, wide) == judge_answer(truth, text)


@pytest.fixture(scope="module")
def rules_only() -> Verifier:
    with Verifier(VerifierConfig(math_verify=False), RewardConfig()) as verifier:
        yield verifier


@pytest.fixture(scope="module")
def symbolic() -> Verifier:
    with Verifier(VerifierConfig(timeout_s=SYMBOLIC_TIMEOUT_S), RewardConfig()) as verifier:
        yield verifier


responses = answers.map(lambda answer: format_response(["a caption"], "think", answer)) | answers


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(responses, answers, st.lists(answers, max_size=3) | answers)
def test_rules_only_verifier_scores_any_strings(rules_only, response, truth, equivalents) -> None:
    result = _timed(rules_only.verify, response, truth, equivalents)
    assert isinstance(result, VerifyResult)
    assert result.reason in RULES_ONLY_REASONS, result  # ERROR would mean a rule raised
    assert 0.0 <= result.score <= 1.0 and result.accuracy in (0.0, 1.0)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(answers, answers)
def test_verifier_with_symbolic_fallback_returns_in_time(symbolic, answer, truth) -> None:
    response = format_response(["a caption"], "think", answer)
    started = time.monotonic()
    result = symbolic.verify(response, truth)
    # each truth gets one symbolic budget; a restart after a timeout is not waited for
    assert time.monotonic() - started < SYMBOLIC_TIMEOUT_S + 3.0
    assert isinstance(result, VerifyResult) and result.reason in set(Reason)
    assert 0.0 <= result.score <= 1.0
