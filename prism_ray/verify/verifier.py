"""The RLVR verifier: format gate -> answer extraction -> rules -> symbolic fallback -> reward.

`Verifier` is plain Python (no Ray); a pool of actors wraps it. One `verify` call returns
within `timeout_s` of wall-clock time spent on symbolic checks, whatever the input.

Its settings are the run config's own classes (the ``verifier`` section for limits, a
phase's ``reward`` for the weights), so every default lives in the schema.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from prism_ray.verify.extract import answer_block, extract_answer, has_format_tag
from prism_ray.verify.format_gate import check_format
from prism_ray.verify.judge import Decision, Judgement, judge_answer
from prism_ray.verify.symbolic import SymbolicChecker, SymbolicOutcome

if TYPE_CHECKING:  # the schema is only a type here: verify stays free of the config stack
    from prism_ray.config.phases import RewardConfig
    from prism_ray.config.schema import VerifierConfig


class Reason(str, Enum):
    CORRECT = "correct"
    WRONG = "wrong"
    FORMAT = "format"
    EMPTY_ANSWER = "empty_answer"
    OVERLONG_ANSWER = "overlong_answer"
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True)
class VerifyResult:
    """score: the RLVR reward; accuracy: 1.0 / 0.0 from the judge; reason: why."""

    score: float
    accuracy: float
    format_ok: bool
    reason: Reason


def rlvr_score(format_ok: bool, judged: bool, accuracy: float, reward: RewardConfig) -> float:
    """0 if the format fails; format_weight alone if the answer was not judged (empty or
    overlong); else accuracy_weight * accuracy + format_weight."""
    if not format_ok:
        return 0.0
    return reward.format_weight + (reward.accuracy_weight * accuracy if judged else 0.0)


class Verifier:
    """Scores responses against ground truths. Use as a context manager, or call close().

    The symbolic child is started with multiprocessing's "spawn" context, which re-imports the
    parent's main module: a script that builds a Verifier at import time needs the usual
    `if __name__ == "__main__":` guard (Ray workers, pytest and `python -m` entry points have it).
    """

    def __init__(self, settings: VerifierConfig, reward: RewardConfig, start: bool = True) -> None:
        """``settings``: time and memory limits, and whether the math-verify fallback runs at
        all (without it, an answer the rules cannot decide is wrong and no child process is
        started). ``reward``: the weights and the answer-length limit of the phase."""
        self.settings, self.reward = settings, reward
        self._symbolic = SymbolicChecker(settings) if settings.math_verify else None
        if start and self._symbolic is not None:
            self._symbolic.start()  # pay math-verify's import now, not inside the first timeout

    def verify(
        self, response: str, ground_truth: str, equivalent_answers: str | Sequence[str] = ()
    ) -> VerifyResult:
        """Score one response. Never raises on hostile input: unexpected failures -> ERROR.

        ``equivalent_answers``: further accepted answers; a single string is one answer. A
        wrong type is a caller's bug, not a policy's output, and raises TypeError.
        """
        truths = accepted_answers(ground_truth, equivalent_answers)
        try:
            return self._verify(response, truths)
        except Exception:
            format_ok = False
            try:
                format_ok = check_format(response).ok
            except Exception:
                pass
            return self._result(format_ok, judged=False, reason=Reason.ERROR)

    def verify_batch(
        self,
        responses: Sequence[str],
        ground_truths: Sequence[str],
        equivalent_answers: Sequence[Sequence[str]] | None = None,
    ) -> list[VerifyResult]:
        """verify() over aligned sequences (in order, in this process)."""
        if len(responses) != len(ground_truths):
            raise ValueError("responses and ground_truths differ in length")
        equivalents = equivalent_answers or [()] * len(responses)
        return [
            self.verify(r, g, e)
            for r, g, e in zip(responses, ground_truths, equivalents, strict=True)
        ]

    @property
    def restarts(self) -> int:
        """How often the math-verify child was killed and replaced (timeouts, crashes)."""
        return self._symbolic.restarts if self._symbolic is not None else 0

    @property
    def child_pid(self) -> int | None:
        """Process id of the math-verify child, None when none is running."""
        return self._symbolic.child_pid if self._symbolic is not None else None

    def close(self) -> None:
        """Stop the math-verify child process (idempotent)."""
        if self._symbolic is not None:
            self._symbolic.close()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _verify(self, response: str, truths: Sequence[str]) -> VerifyResult:
        gate = check_format(response)
        if not gate.ok or gate.reasoning is None:
            return self._result(False, judged=False, reason=Reason.FORMAT)
        answer = extract_answer(answer_block(gate.reasoning))
        stripped = "" if answer is None else answer.strip()
        if not stripped:
            return self._result(True, judged=False, reason=Reason.EMPTY_ANSWER)
        if len(stripped) >= self.reward.max_answer_chars:
            return self._result(True, judged=False, reason=Reason.OVERLONG_ANSWER)
        if has_format_tag(stripped):
            return self._result(True, judged=True, reason=Reason.WRONG)  # hedge or leaked template
        reason = self._judge(stripped, truths)
        return self._result(True, judged=True, reason=reason)

    def _judge(self, answer: str, truths: Sequence[str]) -> Reason:
        """Rules against every accepted truth first (cheap), then the symbolic checks that are
        still open, all within one shared deadline."""
        undecided: list[Judgement] = []
        for truth in truths:
            judgement = judge_answer(answer, truth)
            if judgement.decision is Decision.MATCH:
                return Reason.CORRECT
            if judgement.decision is Decision.UNDECIDED:
                undecided.append(judgement)
        if self._symbolic is None:
            return Reason.WRONG  # rules only: what they cannot match is not accepted
        deadline = time.monotonic() + self.settings.timeout_s
        failures: set[SymbolicOutcome] = set()
        for judgement in undecided:
            outcome = _all_equal(self._symbolic, judgement, deadline)
            if outcome is SymbolicOutcome.EQUAL:
                return Reason.CORRECT
            failures.add(outcome)
        if SymbolicOutcome.TIMEOUT in failures:
            return Reason.TIMEOUT
        return Reason.ERROR if SymbolicOutcome.ERROR in failures else Reason.WRONG

    def _result(self, format_ok: bool, judged: bool, reason: Reason) -> VerifyResult:
        accuracy = 1.0 if reason is Reason.CORRECT else 0.0
        score = rlvr_score(format_ok, judged, accuracy, self.reward)
        return VerifyResult(score=score, accuracy=accuracy, format_ok=format_ok, reason=reason)


def accepted_answers(ground_truth: str, equivalent_answers: str | Sequence[str]) -> list[str]:
    """[ground_truth, *equivalent_answers]. A lone string is one answer: unpacked, "NYC" would
    accept "N", "Y" and "C". Anything but a string or a list/tuple of strings is a TypeError."""
    if isinstance(equivalent_answers, str):
        return [ground_truth, equivalent_answers]
    if not isinstance(equivalent_answers, list | tuple):
        got = type(equivalent_answers).__name__
        raise TypeError(f"equivalent_answers must be a str or a list/tuple of str, got {got}")
    for index, answer in enumerate(equivalent_answers):
        if not isinstance(answer, str):
            got = type(answer).__name__
            raise TypeError(f"equivalent_answers[{index}] must be a str, got {got}")
    return [ground_truth, *equivalent_answers]


def _all_equal(symbolic: SymbolicChecker, judgement: Judgement, deadline: float) -> SymbolicOutcome:
    """EQUAL if every pending pair is symbolically equal, else the first other outcome."""
    for predicted, truth in judgement.pending:
        outcome = symbolic.check(predicted, truth, deadline)
        if outcome is not SymbolicOutcome.EQUAL:
            return outcome
    return SymbolicOutcome.EQUAL
