"""Saved generations, their scores and the results table (no Ray, no torch).

``generations.jsonl`` holds one line per prompt (its benchmark, uid, ground truth and the
sampled responses), so ``rescore`` re-verifies a run without generating. ``results.json``
and ``results.md`` hold, per benchmark, the prompts, accuracy (mean@k over the k samples of
each prompt; with k > 1 also pass@k), format rate, mean response length in tokens, the share
cut at the token limit, and the failures counted by verifier reason; plus an average row
over benchmarks (each benchmark weighs the same, as in the paper's table).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prism_ray.benchmarks import BENCHMARKS
from prism_ray.data.errors import DataError
from prism_ray.verify import Reason, Verifier, VerifyResult

GENERATIONS = "generations.jsonl"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"


@dataclass(frozen=True)
class Generation:
    """The k sampled responses to one benchmark prompt, as saved for rescoring."""

    benchmark: str
    uid: str
    ground_truth: str
    equivalent_answers: tuple[str, ...]
    responses: tuple[str, ...]
    lengths: tuple[int, ...]  # response tokens
    finish_reasons: tuple[str, ...]  # "stop" | "length"

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Generation:
        return cls(row["benchmark"], row["uid"], row["ground_truth"],
                   tuple(row.get("equivalent_answers", ())), tuple(row["responses"]),
                   tuple(row["lengths"]), tuple(row["finish_reasons"]))


def write_generations(path: Path, generations: Sequence[Generation], append: bool) -> None:
    with path.open("a" if append else "w", encoding="utf-8") as out:
        for generation in generations:
            out.write(json.dumps(asdict(generation), ensure_ascii=False) + "\n")


def read_generations(path: Path) -> list[Generation]:
    if not path.is_file():
        raise DataError(path, "file not found (written by `prism-ray eval`)")
    generations = []
    for row, line in enumerate(path.read_text(encoding="utf-8").split("\n")):
        if not line.strip():
            continue
        try:
            generations.append(Generation.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError) as error:
            raise DataError(path, f"not a saved generation ({error})", row=row) from None
    return generations


# ── scores ──────────────────────────────────────────────────────


def summarize(generations: Sequence[Generation], results: Sequence[Sequence[VerifyResult]],
              skipped_rows: int = 0) -> dict[str, Any]:
    """One benchmark's row: ``results[i]`` are the verdicts on ``generations[i].responses``."""
    flat = [r for group in results for r in group]
    lengths = [n for g in generations for n in g.lengths]
    finishes = [f for g in generations for f in g.finish_reasons]
    samples = max((len(g.responses) for g in generations), default=0)
    n = len(flat) or 1
    failures = Counter(r.reason.value for r in flat if r.reason is not Reason.CORRECT)
    return {
        "prompts": len(generations),
        "samples": samples,
        "accuracy": sum(r.accuracy for r in flat) / n,
        "pass_at_k": (sum(any(r.accuracy > 0 for r in group) for group in results)
                      / (len(results) or 1)) if samples > 1 else None,
        "format_rate": sum(r.format_ok for r in flat) / n,
        "response_len": sum(lengths) / (len(lengths) or 1),
        "truncated": finishes.count("length") / (len(finishes) or 1),
        "failures": dict(sorted(failures.items())),
        "skipped_rows": skipped_rows,
    }


def average(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The mean over benchmarks of each rate (every benchmark weighs the same); prompts and
    failures are summed."""
    scored = [row for row in rows.values() if row["prompts"]]
    if not scored:
        return {"prompts": 0}

    def mean(key: str) -> float | None:
        values = [row[key] for row in scored if row.get(key) is not None]
        return sum(values) / len(values) if values else None

    failures: Counter[str] = Counter()
    for row in scored:
        failures.update(row.get("failures") or {})
    return {"prompts": sum(row["prompts"] for row in scored),
            **{key: mean(key) for key in ("accuracy", "pass_at_k", "format_rate",
                                          "response_len", "truncated")},
            "failures": dict(sorted(failures.items()))}  # summed, not averaged


def verify_generations(generations: Sequence[Generation], verifier: Verifier
                       ) -> list[list[VerifyResult]]:
    """Score saved generations in this process (``rescore``)."""
    return [[verifier.verify(text, g.ground_truth, g.equivalent_answers) for text in g.responses]
            for g in generations]


def by_benchmark(generations: Sequence[Generation]) -> dict[str, list[Generation]]:
    grouped: dict[str, list[Generation]] = {}
    for generation in generations:
        grouped.setdefault(generation.benchmark, []).append(generation)
    return grouped


def ordered(names: Sequence[str]) -> list[str]:
    """The paper's column order (the registry's), then any other name as given."""
    known = [name for name in BENCHMARKS if name in names]
    return known + [name for name in names if name not in BENCHMARKS]


# ── the table ───────────────────────────────────────────────────


def document(rows: dict[str, dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    rows = {name: rows[name] for name in ordered(list(rows))}
    return {"settings": settings, "benchmarks": rows, "average": average(rows)}


def write_results(out: Path, doc: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_JSON).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    (out / RESULTS_MD).write_text(markdown(doc), encoding="utf-8")


def _title(name: str) -> str:
    return BENCHMARKS[name].title if name in BENCHMARKS else name


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _table(cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(lines)


def paper_table(doc: dict[str, Any]) -> str:
    """One row, the paper's layout: accuracy (%) per benchmark and their average."""
    rows = doc["benchmarks"]
    header = [_title(name) for name in rows] + ["Avg"]
    values = [_pct(row.get("accuracy")) for row in rows.values()]
    return _table([header, values + [_pct(doc["average"].get("accuracy"))]])


def detail_table(doc: dict[str, Any]) -> str:
    samples = max((row.get("samples", 1) for row in doc["benchmarks"].values()), default=1)
    multi = samples > 1
    header = ["benchmark", "prompts", f"mean@{samples}" if multi else "accuracy",
              *([f"pass@{samples}"] if multi else []), "format", "response tokens",
              "truncated", "failures", "skipped rows"]
    cells = [header]
    for name, row in [*doc["benchmarks"].items(), ("average", doc["average"])]:
        if not row.get("prompts"):
            cells.append([_title(name), "0"] + ["–"] * (len(header) - 2))
            continue
        failures = row.get("failures")
        cells.append([
            "**average**" if name == "average" else _title(name), str(row["prompts"]),
            _pct(row["accuracy"]), *([_pct(row.get("pass_at_k"))] if multi else []),
            _pct(row["format_rate"]), f"{row['response_len']:.1f}", _pct(row["truncated"]),
            "–" if failures is None else (", ".join(f"{k} {v}" for k, v in failures.items())
                                          or "none"),
            "–" if name == "average" else str(row.get("skipped_rows", 0)),
        ])
    return _table(cells)


def markdown(doc: dict[str, Any]) -> str:
    settings = doc["settings"]
    shown = ", ".join(f"{key} {settings[key]}" for key in
                      ("samples", "temperature", "max_tokens", "limit", "backend")
                      if key in settings)
    return (f"# Evaluation of `{settings.get('checkpoint', '?')}`\n\n"
            f"{shown}{' (rescored)' if settings.get('rescored') else ''}\n\n"
            f"Accuracy (%):\n\n{paper_table(doc)}\n\n"
            f"Per benchmark (rates in %):\n\n{detail_table(doc)}\n")
