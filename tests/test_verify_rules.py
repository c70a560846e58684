import pytest

from prism_ray.verify import (
    Decision,
    clean_answer,
    is_safe_for_symbolic,
    judge_answer,
    parse_choice_truth,
    parse_quantity,
    parse_tuple,
    predicted_letter,
    split_values,
)
from prism_ray.verify.choice import predicted_letters
from prism_ray.verify.structure import alternatives
from prism_ray.verify.symbolic import integer_tower


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("(1) 5 (2) 7", ["5", "7"]),
        ("(1) 5, (2) 7 and (3) 9", ["5", "7", "9"]),
        ("5; 7", ["5", "7"]),
        ("5, 7", ["5", "7"]),
        ("1,000", ["1,000"]),
        ("1,000, 2", ["1,000", "2"]),
        ("(5, 7)", ["(5, 7)"]),
        ("\\frac{1}{2}, \\{1, 2\\}", ["\\frac{1}{2}", "\\{1, 2\\}"]),
        ("f(1,2)", ["f(1,2)"]),
    ],
)
def test_split_values(text, parts):
    assert split_values(text) == parts


def test_tuples_are_parenthesised_only():
    assert parse_tuple("(3, -4)") == ["3", "-4"]
    assert parse_tuple("[0, 1]") is None
    assert parse_tuple("(1)(2)") is None
    assert parse_tuple("(5)") is None


@pytest.mark.parametrize(
    ("prediction", "letter"),
    [
        ("B", "B"),
        ("b", "B"),
        ("The answer is C", "C"),
        ("answer: D", "D"),
        ("I'd say (A), but the answer is C", "C"),  # "answer is X" outranks "(X)"
        ("(E) because", "E"),
        ("(E) looks right, G. is not", "E"),  # "(X)" outranks "X."
        ("G. is the one", "G"),
        ("F) twelve", "F"),
        ("a cat", None),
        ("e.g. nothing", None),
        ("I", None),
    ],
)
def test_predicted_letter_priority(prediction, letter):
    assert predicted_letter(prediction) == letter


def test_choice_truths():
    assert parse_choice_truth("B").letter == "B"
    assert parse_choice_truth("(C) 45°").option_text == "45°"
    assert parse_choice_truth("D. twelve").option_text == "twelve"
    assert parse_choice_truth("I") is None and parse_choice_truth("b") is None
    assert parse_choice_truth("Boston") is None


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("1,234.5 cm", 1234.5, "cm"),
        ("50%", 50.0, "%"),
        ("30^\\circ", 30.0, "°"),
        ("30 degrees", 30.0, "°"),
        ("3/4", 0.75, ""),
        ("-\\frac{3}{4}", -0.75, ""),
        ("1.5 \\times 10^{3}", 1500.0, ""),
        ("12 \\text{cm}", 12.0, "cm"),
        ("\\$5", 5.0, ""),
    ],
)
def test_parse_quantity(text, value, unit):
    quantity = parse_quantity(text)
    assert quantity is not None
    assert quantity.value == pytest.approx(value) and quantity.unit == unit


@pytest.mark.parametrize("text", ["2x", "2\\pi", "3 + 4", "x", "5 x", "1e99999", "10^(10^10)"])
def test_not_quantities(text):
    assert parse_quantity(text) is None


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("x^2+1", True),
        ("(x^2)^3", True),
        ("2^{1/2}", True),
        ("10^(10^10)", False),
        ("9**9**9", False),
        ("x^2^3", False),
        ("2^{99999}", False),
        ("100000!", False),
        ("{" * 20 + "}" * 20, False),
        ("x" * 600, False),
    ],
)
def test_symbolic_screen(text, safe):
    assert is_safe_for_symbolic(text) is safe


def test_judge_defers_only_math_to_symbolic():
    assert judge_answer("x^2+1", "1+x^2").decision is Decision.UNDECIDED
    assert judge_answer("x^2+1", "1+x^2").pending == (("x^2+1", "1+x^2"),)
    assert judge_answer("red", "blue").decision is Decision.MISMATCH
    assert judge_answer("0.5", "1/2").decision is Decision.MATCH
    both = judge_answer("x+1, 3", "1+x, 3")
    assert both.decision is Decision.UNDECIDED and both.pending == (("x+1", "1+x"),)
    assert judge_answer("x+1, 4", "1+x, 3").decision is Decision.MISMATCH


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("Ａ", "A"),
        ("（Ｂ）", "(B)"),
        ("１２３", "123"),
        ("x²", "x^2"),
        ("x¹⁰", "x^{10}"),
        ("10⁻³", "10^{-3}"),
        ("a₁", "a_1"),
        ("½", "1/2"),
        ("3½", "3+1/2"),
        ("－５", "-5"),
        ("℃", "°C"),
    ],
)
def test_clean_answer_folds_compatibility_forms(text, cleaned):
    assert clean_answer(text) == cleaned


@pytest.mark.parametrize(
    ("predicted", "truth"),
    [("Ａ", "A"), ("（Ｂ）", "(B)"), ("(B)", "（Ｂ）"), ("Ｂ", "(B) 45"), ("１２", "12"),
     ("12 cm²", "12 cm^2"), ("5 µm", "5 μm"), ("５０％", "50%")],
)  # fmt: skip
def test_full_width_and_compatibility_forms_match(predicted, truth):
    assert judge_answer(predicted, truth).decision is Decision.MATCH


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("2 or 3", ["2", "3"]),
        ("either 2 or 3", ["2", "3"]),
        ("Either 2, or 3", ["2", "3"]),
        ("A or B or C", ["A", "B", "C"]),
        ("x=2 \\text{ or } x=3", ["x=2", "x=3"]),
        ("f(a or b)", ["f(a or b)"]),  # inside brackets "or" belongs to the value
        ("north", ["north"]),
        ("color", ["color"]),
        ("2 or", ["2 or"]),
    ],
)
def test_alternatives(text, parts):
    assert alternatives(text) == parts


@pytest.mark.parametrize(
    ("predicted", "truth"),
    [
        ("(A) (B) (C) (D)", "A"),
        ("(A)(B)", "(B) 45"),
        ("A or B", "A"),
        ("(A) or (B)", "B"),
        ("the answer is A or B", "A"),
        ("answer: A, answer: B", "B"),
        ("2 or 3", "2"),
        ("either 2 or 3", "3"),
        ("x=2 or x=3", "2"),
        ("red or blue", "red"),
    ],
)
def test_a_hedge_between_different_answers_is_wrong(predicted, truth):
    assert judge_answer(predicted, truth).decision is Decision.MISMATCH


@pytest.mark.parametrize(
    ("predicted", "truth"),
    [
        ("B, i.e. (B)", "B"),
        ("B or (B)", "B"),
        ("2 or 2.0", "2"),
        ("either 1/2 or 0.5", "0.5"),
        ("red or blue", "red or blue"),  # the truth is itself a disjunction
        ("I'd say (A), but the answer is C", "C"),  # a stated answer outranks "(A)"
    ],
)
def test_repeating_one_answer_is_not_a_hedge(predicted, truth):
    assert judge_answer(predicted, truth).decision is Decision.MATCH


def test_predicted_letters_at_the_winning_level():
    assert predicted_letters("(A) (B) (C) (D)") == {"A", "B", "C", "D"}
    assert predicted_letter("(A) (B)") is None
    assert predicted_letters("B, i.e. (B)") == {"B"}
    assert predicted_letters("the answer is C, not (A) or (B)") == {"C"}


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("2^{2^{2}}", True),
        ("2^{2^{2^{2}}}", True),
        ("2^(2^3)", True),
        ("x^{2^{3}}", True),
        ("2^{-2^{2}}", True),
        ("10^{10^{10}}", False),
        ("10^{10^{10^{10}}}", False),
        ("2^{2}^{2}", False),
        ("e^{x^2}", False),
        ("2^{3^{99999}}", False),
    ],
)
def test_symbolic_screen_lets_small_integer_towers_through(text, safe):
    assert is_safe_for_symbolic(text) is safe


def test_integer_tower():
    assert integer_tower("{2^{2^{2}}}", bound=10**4) == 16
    assert integer_tower("(3^2)", bound=10**4) == 9
    assert integer_tower("{10^{10}}", bound=10**4) is None
    assert integer_tower("{x^2}", bound=10**4) is None
    assert integer_tower("{1^{9999}}", bound=10**4) == 1
