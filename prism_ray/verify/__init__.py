"""Rule-based RLVR verifier (stdlib + math-verify only; no torch, no Ray).

Format gate, answer extraction, the rule-based judge, and symbolic equivalence in a child
process with a hard timeout, put together by `Verifier`.
"""

from prism_ray.verify.choice import (
    ChoiceTruth,
    parse_choice_truth,
    predicted_letter,
    predicted_letters,
)
from prism_ray.verify.extract import answer_block, extract_answer, has_format_tag
from prism_ray.verify.format_gate import FormatResult, check_format
from prism_ray.verify.judge import Decision, Judgement, judge_answer, judge_value
from prism_ray.verify.normalize import Quantity, clean_answer, normalize_text, parse_quantity
from prism_ray.verify.structure import alternatives, parse_tuple, split_values
from prism_ray.verify.symbolic import SymbolicChecker, SymbolicOutcome, is_safe_for_symbolic
from prism_ray.verify.verifier import (
    Reason,
    Verifier,
    VerifyResult,
    accepted_answers,
    rlvr_score,
)

__all__ = [
    "ChoiceTruth",
    "Decision",
    "FormatResult",
    "Judgement",
    "Quantity",
    "Reason",
    "SymbolicChecker",
    "SymbolicOutcome",
    "Verifier",
    "VerifyResult",
    "accepted_answers",
    "alternatives",
    "answer_block",
    "check_format",
    "clean_answer",
    "extract_answer",
    "has_format_tag",
    "is_safe_for_symbolic",
    "judge_answer",
    "judge_value",
    "normalize_text",
    "parse_choice_truth",
    "parse_quantity",
    "parse_tuple",
    "predicted_letter",
    "predicted_letters",
    "rlvr_score",
    "split_values",
]
