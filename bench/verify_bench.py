"""Verifier throughput and latency on a mixed case set, in one process.

    .venv/bin/python bench/verify_bench.py [--checks 1000] [--seed 0]

Cases are generated with fresh numbers so math-verify's parse cache does not flatter the
symbolic path. "child" counts the cases that reach the math-verify process (the rules could
not decide and the hostile-input screen let them through).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from prism_ray.config.phases import RewardConfig
from prism_ray.config.schema import VerifierConfig
from prism_ray.prompting import format_response
from prism_ray.verify import Decision, Verifier, extract_answer, is_safe_for_symbolic, judge_answer
from prism_ray.verify.symbolic import prepare_latex

Case = tuple[str, str]  # (response, ground truth)


def _respond(answer: str) -> str:
    return format_response(["a chart with bars"], "Read the values and compute.", answer)


def _numeric(rng: random.Random) -> Case:
    n = rng.randint(1_000, 9_999_999)
    return _respond(f"{n:,}" if rng.random() < 0.5 else str(n + rng.randint(0, 1))), str(n)


def _choice(rng: random.Random) -> Case:
    letter = rng.choice("ABCDEFGH")
    return _respond(
        rng.choice([letter, f"The answer is {rng.choice('ABCD')}", f"({letter})"])
    ), letter


def _units(rng: random.Random) -> Case:
    n = rng.randint(1, 500)
    return _respond(f"{n} {rng.choice(['cm', 'm'])}"), f"{n} cm"


def _text(rng: random.Random) -> Case:
    word = rng.choice(["blue", "red", "north", "increasing", "triangle"])
    return _respond(rng.choice([word.upper(), f"\\text{{{word}}}", "green"])), word


def _symbolic(rng: random.Random) -> Case:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    pairs = [
        (f"{a}x^2+{b}x", f"x({a}x+{b})"),
        (f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}"),
        (f"\\frac{{\\pi}}{{{a}}}", f"\\pi/{a}"),
        (f"\\frac{{{a}}}{{{b}}}\\sqrt{{2}}", f"{a}\\sqrt{{2}}/{b + rng.randint(0, 1)}"),
    ]
    answer, truth = rng.choice(pairs)
    return _respond(answer), truth


def _format_fail(rng: random.Random) -> Case:
    return rng.choice(["The answer is 5.", "<think>5</think><answer>5</answer>"]), "5"


def _hostile(rng: random.Random) -> Case:
    return _respond(rng.choice(["10^(10^10)", "9**9**9", "{" * 300 + "}" * 300, "x" * 5000])), "1"


MIX: dict[str, tuple[float, Callable[[random.Random], Case]]] = {
    "numeric": (0.25, _numeric),
    "multiple choice": (0.20, _choice),
    "units": (0.10, _units),
    "text": (0.10, _text),
    "symbolic": (0.20, _symbolic),
    "format fail": (0.10, _format_fail),
    "hostile": (0.05, _hostile),
}


def _hits_child(response: str, truth: str) -> bool:
    answer = extract_answer(response)
    if answer is None or len(answer.strip()) >= 1024:
        return False
    judgement = judge_answer(answer.strip(), truth)
    screened = all(
        is_safe_for_symbolic(prepare_latex(p)) and is_safe_for_symbolic(prepare_latex(t))
        for p, t in judgement.pending
    )
    return judgement.decision is Decision.UNDECIDED and screened


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    names = list(MIX)
    weights = [MIX[name][0] for name in names]
    plan = [rng.choices(names, weights)[0] for _ in range(args.checks)]
    cases = [(name, *MIX[name][1](rng)) for name in plan]
    latencies: dict[str, list[float]] = {name: [] for name in names}
    child: dict[str, int] = dict.fromkeys(names, 0)
    with Verifier(VerifierConfig(), RewardConfig()) as verifier:  # the schema's defaults
        started = time.perf_counter()
        for name, response, truth in cases:
            tick = time.perf_counter()
            verifier.verify(response, truth)
            latencies[name].append(time.perf_counter() - tick)
        total = time.perf_counter() - started
        restarts = verifier.restarts
    for name, response, truth in cases:
        child[name] += _hits_child(response, truth)
    _print_table(latencies, child, total, restarts)


def _print_table(
    latencies: dict[str, list[float]], child: dict[str, int], total: float, restarts: int
) -> None:
    header = f"{'case':<16}{'n':>6}{'child':>8}{'p50 ms':>10}{'p99 ms':>10}{'checks/s':>11}"
    print(header)
    print("-" * len(header))
    everything: list[float] = []
    for name, values in latencies.items():
        if not values:
            continue
        everything.extend(values)
        rate = len(values) / sum(values)
        print(
            f"{name:<16}{len(values):>6}{child[name]:>8}{_percentile(values, 0.5) * 1e3:>10.3f}"
            f"{_percentile(values, 0.99) * 1e3:>10.3f}{rate:>11.0f}"
        )
    print("-" * len(header))
    print(
        f"{'all':<16}{len(everything):>6}{sum(child.values()):>8}"
        f"{_percentile(everything, 0.5) * 1e3:>10.3f}{_percentile(everything, 0.99) * 1e3:>10.3f}"
        f"{len(everything) / total:>11.0f}"
    )
    print(f"mean {statistics.fmean(everything) * 1e3:.3f} ms/check; child restarts: {restarts}")


if __name__ == "__main__":
    main()
