"""The verifier end to end: a table of answers across every rule, hostile inputs with a time
bound, and the child-process lifecycle (timeouts, restarts, no processes left behind)."""

import os
import time

import pytest

from prism_ray.config.phases import RewardConfig
from prism_ray.config.schema import VerifierConfig
from prism_ray.prompting import format_response
from prism_ray.verify import Reason, SymbolicChecker, SymbolicOutcome, Verifier

TIMEOUT_S = 5.0
MARGIN_S = 3.0  # behavioural bound only: a hostile input must not run past the timeout


def respond(answer: str) -> str:
    return format_response(["a diagram"], "work it out", answer)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a reaped-late zombie counts as gone
        return stat.read().split()[2] != "Z"


@pytest.fixture(scope="module")
def verifier():
    with Verifier(VerifierConfig(timeout_s=TIMEOUT_S), RewardConfig()) as instance:
        yield instance
        pid = instance.child_pid
    assert not _alive(pid)


# (answer, ground truth, equivalent answers, correct?)
CASES = [
    # multi-value
    ("3, 4", "3, 4", (), True),
    ("4, 3", "3, 4", (), False),
    ("3", "3, 4", (), False),
    ("5, 7, 9", "5, 7", (), False),
    ("(1) 5 (2) 7", "5; 7", (), True),
    ("5; 7", "(1) 5 (2) 7", (), True),
    ("\\frac{1}{2}, 2", "0.5, 2", (), True),
    ("x+1, 2x", "1+x, 2x", (), True),
    ("(1) 12 cm (2) 30°", "(1) 12 (2) 30", (), True),
    ("5, 6", "5", (), False),
    # coordinate tuples
    ("(3, 4)", "(3, 4)", (), True),
    ("(3,4)", "(3, 4)", (), True),
    ("(4, 3)", "(3, 4)", (), False),
    ("(0.5, -2)", "(\\frac{1}{2}, -2)", (), True),
    ("(1, 2, 3)", "(1, 2)", (), False),
    ("(\\sqrt{2}, 1)", "(2^{1/2}, 1)", (), True),
    # multiple choice
    ("B", "B", (), True),
    ("b", "B", (), True),
    ("C", "B", (), False),
    ("The answer is B", "B", (), True),
    ("(B)", "B", (), True),
    ("B. 45°", "B", (), True),
    ("B)", "B", (), True),
    ("(C) 30", "(B) 45", (), False),
    ("45", "(B) 45", (), True),
    ("B", "(B) 45", (), True),
    ("B", "B. 45 degrees", (), True),
    ("the option is D", "D", (), True),
    ("I'd say (A), but the answer is C", "C", (), True),
    ("A", "E", (), False),
    ("none of them", "A", (), False),
    ("Choice: H", "H", (), True),
    # exact and normalised strings
    ("blue", "blue", (), True),
    ("\\pi", "\\pi", (), True),
    ("Blue", "blue", (), True),
    ("\\text{blue}", "Blue", (), True),
    ("red", "blue", (), False),
    ("  North   America ", "north america", (), True),
    ("Yes", "yes", (), True),
    ("no", "yes", (), False),
    # numbers
    ("1,000", "1000", (), True),
    ("1000", "1,000", (), True),
    ("1,234,567.5", "1234567.5", (), True),
    ("3.0", "3", (), True),
    ("3.0000001", "3", (), True),
    ("3.0001", "3", (), False),
    ("\u22127", "-7", (), True),
    ("1e3", "1000", (), True),
    ("1.5 \\times 10^{3}", "1500", (), True),
    ("0.75", "3/4", (), True),
    ("0.0", "0", (), True),
    ("0.000001", "0", (), False),
    ("50%", "50", (), True),
    ("\\$5", "5", (), True),
    ("\\boxed{12}", "12", (), True),
    ("$12$.", "12", (), True),
    # units
    ("12 cm", "12", (), True),
    ("12", "12 cm", (), True),
    ("12 cm", "12 m", (), False),
    ("12\\text{ cm}", "12 cm", (), True),
    ("30^\\circ", "30", (), True),
    ("30°", "30 degrees", (), True),
    ("30^{\\circ}", "60°", (), False),
    ("5 m/s", "5", (), True),
    ("12 cm^2", "12 \\text{cm}^2", (), True),
    ("\\frac{3}{2}\\text{ m}", "1.5", (), True),
    # symbolic (math-verify in the child process)
    ("\\frac{1}{2}", "0.5", (), True),
    ("\\dfrac{1}{2}", "\\frac12", (), True),
    ("x^2+2x+1", "(x+1)^2", (), True),
    ("\\sqrt{8}", "2\\sqrt{2}", (), True),
    ("\\sqrt{2}", "\\sqrt{3}", (), False),
    ("2\\pi", "\\pi \\cdot 2", (), True),
    ("\\frac{\\pi}{2}", "\\pi/2", (), True),
    ("x=3", "3", (), True),
    ("\\{1,2\\}", "\\{2,1\\}", (), True),
    ("[0,1)", "[0, 1)", (), True),
    ("2x", "x", (), False),
    ("\\log_2 8", "3", (), True),
    ("\\frac{6}{4}", "\\frac{3}{2}", (), True),
    # compatibility forms (NFKC), on either side
    ("Ａ", "A", (), True),
    ("（Ｂ）", "(B)", (), True),
    ("B", "（Ｂ）", (), True),
    ("１２ cm", "12", (), True),
    ("x²+2x+1", "(x+1)^2", (), True),
    # nested exponents of small integers are numbers, not power towers
    ("2^{2^{2}}", "16", (), True),
    ("16", "2^{2^{2}}", (), True),
    ("2^{2^{3}}", "16", (), False),
    # hedges between different answers are wrong even when one is right
    ("(A) (B) (C) (D)", "A", (), False),
    ("A or B", "A", (), False),
    ("2 or 3", "2", (), False),
    ("either 2 or 3", "3", (), False),
    ("B, i.e. (B)", "B", (), True),
    # equivalent answers
    ("NYC", "New York City", ("NYC",), True),
    ("0.333", "1/3", ("0.333",), True),
    ("foo", "bar", ("baz",), False),
    ("\\frac{1}{3}", "0.333", ("1/3",), True),
]


@pytest.mark.parametrize(("answer", "truth", "equivalents", "correct"), CASES)
def test_answer_table(verifier, answer, truth, equivalents, correct):
    result = verifier.verify(respond(answer), truth, equivalents)
    assert result.format_ok
    assert result.reason is (Reason.CORRECT if correct else Reason.WRONG), result
    assert result.accuracy == (1.0 if correct else 0.0)
    assert result.score == pytest.approx(1.0 if correct else 0.2)


# (full response, ground truth, expected reason, expected score)
RESPONSES = [
    ("just 5", "5", Reason.FORMAT, 0.0),
    ("<think>t</think><answer>5</answer>", "5", Reason.FORMAT, 0.0),
    ("<caption>c</caption><answer>5</answer>", "5", Reason.FORMAT, 0.0),
    (respond("5") + " trailing", "5", Reason.FORMAT, 0.0),
    ("<caption>c</caption><think>t</think><answer></answer>", "5", Reason.EMPTY_ANSWER, 0.2),
    (respond("   \n "), "5", Reason.EMPTY_ANSWER, 0.2),
    (respond("1" * 1024), "1" * 1024, Reason.OVERLONG_ANSWER, 0.2),
    (respond("1" * 1023), "1" * 1023, Reason.CORRECT, 1.0),
    (
        "<caption>c</caption><think>t</think><answer>4</answer><answer>5</answer>",
        "4",
        Reason.CORRECT,
        1.0,
    ),
    (
        "<caption>c</caption><think>t</think><answer>4</answer><answer>5</answer>",
        "5",
        Reason.WRONG,
        0.2,
    ),
    (
        "<caption>c</caption><think>t</think><answer><answer>5</answer></answer>",
        "5",
        Reason.WRONG,
        0.2,
    ),
    (
        "<caption>c</caption><think>draft <answer>7</answer></think><answer>5</answer>",
        "5",
        Reason.CORRECT,
        1.0,
    ),
    (respond("5 <caption>x</caption>"), "5", Reason.WRONG, 0.2),
    ("\n\n " + respond("5") + "\n\n", "5", Reason.CORRECT, 1.0),
    (respond("5").replace("work it out", "work\x00it\x07out"), "5", Reason.CORRECT, 1.0),
]


@pytest.mark.parametrize(("response", "truth", "reason", "score"), RESPONSES)
def test_response_table(verifier, response, truth, reason, score):
    result = verifier.verify(response, truth)
    assert result.reason is reason, result
    assert result.score == pytest.approx(score)


HOSTILE = {
    "power-tower-parens": (respond("10^(10^10)"), "5"),
    "power-tower-python": (respond("9**9**9"), "1"),
    "power-tower-latex": (respond("10^{10^{10^{10}}}"), "1"),
    "huge-exponent": (respond("2^{99999999}"), "1"),
    "nested-big-power": (respond("(9^{9999})^{9999}"), "1"),
    "huge-factorial": (respond("100000!"), "1"),
    "deep-braces": (respond("{" * 500 + "1" + "}" * 500), "1"),
    "unbalanced-fracs": (respond("\\frac{" * 300), "1"),
    "deep-parens": (respond("(" * 400 + ")" * 400), "()"),
    "float-overflow": (respond("1e99999999"), "1"),
    "thousand-digits": (respond("9" * 1000), "9" * 999),
    "megabyte-answer": (respond("x" * 1_000_000), "x"),
    "nul-bytes": (respond("\x00\x00\x00"), "0"),
    "ansi-escapes": (respond("\x1b[31m5\x1b[0m"), "5"),
    "mixed-scripts": (respond("Ωмега 5 数学 ٥"), "5"),
    "repeated-open-tags": (respond("<answer>" * 1000), "1"),
    "looping-tags": (
        "<caption>x" + "</caption><think>t</think><answer>A</answer>" * 2000 + "x",
        "A",
    ),
    "only-open-captions": ("<caption>" * 100_000, "1"),
    "nested-roots": (respond("\\sqrt{" * 10 + "2" + "}" * 10), "2^{1/1024}"),
    "wide-matrix": (respond("\\begin{pmatrix}" + " & ".join(["1"] * 200) + "\\end{pmatrix}"), "1"),
    "combining-mark": (respond("x" * 1023), "x" * 1023 + "\u0301"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_hostile_input_is_bounded_and_never_crashes(verifier, case):
    response, truth = HOSTILE[case]
    started = time.monotonic()
    result = verifier.verify(response, truth)
    elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT_S + MARGIN_S, f"{elapsed:.1f}s"
    assert result.reason in set(Reason)
    assert 0.0 <= result.score <= 1.0


def test_hostile_answers_are_not_accepted(verifier):
    for answer in ("10^(10^10)", "9**9**9", "\x00\x00"):
        assert verifier.verify(respond(answer), "5").accuracy == 0.0


def test_a_single_equivalent_answer_string_is_one_answer(verifier):
    assert verifier.verify(respond("NYC"), "New York City", "NYC").reason is Reason.CORRECT
    assert verifier.verify(respond("N"), "New York City", "NYC").reason is Reason.WRONG
    assert verifier.verify(respond("N"), "New York City", ["NYC"]).reason is Reason.WRONG


@pytest.mark.parametrize(
    ("equivalents", "message"),
    [
        (5, "equivalent_answers must be a str or a list/tuple of str, got int"),
        (b"NYC", "got bytes"),
        ({"NYC"}, "got set"),
        (["NYC", 5], r"equivalent_answers\[1\] must be a str, got int"),
    ],
)
def test_equivalent_answers_of_a_wrong_type_is_a_clear_error(verifier, equivalents, message):
    with pytest.raises(TypeError, match=message):
        verifier.verify(respond("NYC"), "New York City", equivalents)


def test_batch_matches_single_calls(verifier):
    responses = [respond("5"), respond("6"), "bad"]
    truths = ["5", "5", "5"]
    results = verifier.verify_batch(responses, truths, [(), ("6",), ()])
    assert [r.reason for r in results] == [Reason.CORRECT, Reason.CORRECT, Reason.FORMAT]
    with pytest.raises(ValueError):
        verifier.verify_batch(responses, truths[:2])


def test_a_stuck_check_times_out_and_the_child_is_replaced():
    with SymbolicChecker(VerifierConfig(timeout_s=0.3)) as checker:
        checker.start()
        first_pid = checker.child_pid
        started = time.monotonic()
        # passes the screen but takes math-verify well over a second
        assert checker.check("(9^{9999})^{9999}", "1") is SymbolicOutcome.TIMEOUT
        assert time.monotonic() - started < 0.3 + MARGIN_S
        assert checker.restarts == 1 and checker.child_pid != first_pid
        assert not _alive(first_pid)
        checker.start()  # wait for the replacement to finish importing
        relaxed = time.monotonic() + 30.0  # a loaded machine must not fail the second check
        assert checker.check("x^2-1", "(x-1)(x+1)", deadline=relaxed) is SymbolicOutcome.EQUAL
        second_pid = checker.child_pid
    assert not _alive(second_pid)


def test_verifier_reports_timeout_within_its_budget():
    with Verifier(VerifierConfig(timeout_s=0.5), RewardConfig()) as short:
        started = time.monotonic()
        result = short.verify(respond("(9^{9999})^{9999}"), "1")
        assert time.monotonic() - started < 0.5 + MARGIN_S
        assert result.reason is Reason.TIMEOUT and result.score == pytest.approx(0.2)
        pid = short.child_pid
    assert not _alive(pid)


def test_refused_input_never_reaches_the_child():
    with SymbolicChecker(VerifierConfig()) as checker:
        assert checker.check("9**9**9", "1") is SymbolicOutcome.REFUSED
        assert checker.child_pid is None  # nothing was started for it


def test_a_child_that_cannot_start_gives_error_not_an_exception():
    config = VerifierConfig(timeout_s=2.0, memory_limit_mb=32)  # too little to import math-verify
    with Verifier(config, RewardConfig(), start=False) as broken:
        started = time.monotonic()
        result = broken.verify(respond("x+1"), "1+x")
        assert time.monotonic() - started < 2.0 + MARGIN_S
        assert result.reason is Reason.ERROR and result.score == pytest.approx(0.2)
        assert broken.verify(respond("5"), "5").reason is Reason.CORRECT  # rules still work
        pid = broken.child_pid
    assert not _alive(pid)


def test_without_math_verify_the_rules_decide_alone(verifier):
    with Verifier(VerifierConfig(math_verify=False), RewardConfig()) as rules_only:
        assert rules_only.child_pid is None  # no child process is started for it
        assert rules_only.verify(respond("5"), "5").reason is Reason.CORRECT
        symbolic_only = rules_only.verify(respond("x^2+2x+1"), "(x+1)^2")
        assert symbolic_only.reason is Reason.WRONG and rules_only.child_pid is None
    assert verifier.verify(respond("x^2+2x+1"), "(x+1)^2").reason is Reason.CORRECT
