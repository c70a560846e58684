"""Reading a benchmark's published files into ``RLPrompt`` records.

A ``Benchmark`` is a name, the title of its column in the paper's table and a row adapter:
one function from a raw row (a dict, as pyarrow or json gives it) to an ``Item`` (question
text with any options rendered as lettered choices, images as encoded bytes, the ground truth
in the form the verifier scores). Everything else is shared here: which files a path names
(a file, a directory searched recursively, or a glob), parquet/JSON/JSONL rows, image columns
in any of their published shapes, and the bad-row policy of ``prism_ray.data`` (a bad row
stops the read, or is skipped and counted in a ``BadRowReport`` per file).

Record uids are "<benchmark>/<file>:<row>" (rows 0-based in file order).
"""

from __future__ import annotations

import ast
import glob
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from prism_ray.data.errors import BadRow, BadRowReason, BadRowReport, DataError, OnBadRow
from prism_ray.data.validation import load_image_file, validated_image
from prism_ray.types import RLPrompt

SUFFIXES = (".parquet", ".json", ".jsonl")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
CHOICE_LETTERS = "ABCDEFGH"  # what verify.choice reads as an option letter


@dataclass(frozen=True)
class Item:
    """What an adapter makes of one row; ``read_benchmark`` adds the uid and source."""

    question: str
    images: tuple[bytes, ...]
    answer: str
    equivalent_answers: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)


Adapter = Callable[[dict[str, Any], Path], Item]  # (row, directory of its file) -> Item


@dataclass(frozen=True)
class Benchmark:
    name: str  # the registry key (--bench NAME=PATH)
    title: str  # its column in the results table
    adapter: Adapter
    layout: str  # one line: the files and columns it reads


@dataclass
class BenchmarkData:
    """The prompts of one benchmark and one skip report per file read."""

    name: str
    records: list[RLPrompt]
    reports: list[BadRowReport]

    @property
    def rows_read(self) -> int:
        return sum(r.num_rows for r in self.reports)

    @property
    def skipped(self) -> int:
        return sum(r.num_skipped for r in self.reports)

    def summary(self) -> str:
        return "; ".join(report.summary() for report in self.reports)


def read_benchmark(
    benchmark: Benchmark, path: str | Path, limit: int | None = None,
    on_bad_row: OnBadRow | str = OnBadRow.skip,
) -> BenchmarkData:
    """The first ``limit`` good prompts (all when None) of the files ``path`` names, in file
    and row order. Reading stops once ``limit`` prompts are kept."""
    policy = OnBadRow(on_bad_row)
    records: list[RLPrompt] = []
    reports: list[BadRowReport] = []
    for file in benchmark_files(path):
        report = BadRowReport(file)
        reports.append(report)
        for row, raw in _rows(file):
            if limit is not None and len(records) >= limit:
                break
            report.num_rows += 1
            try:
                if isinstance(raw, _MalformedLine):
                    raise BadRow(BadRowReason.MALFORMED_JSON, f"malformed JSON line ({raw.detail})")
                if not isinstance(raw, dict):
                    raise BadRow(BadRowReason.WRONG_TYPE,
                                 f"row must be an object, got {type(raw).__name__}")
                item = benchmark.adapter(raw, file.parent)
            except BadRow as bad:
                if policy is OnBadRow.error:
                    raise DataError(file, bad.detail, row=row, kind=bad.kind) from None
                report.add(row, bad)
                continue
            records.append(RLPrompt(
                uid=f"{benchmark.name}/{file.name}:{row}", data_source=benchmark.name,
                images=item.images, question=item.question, ground_truth=item.answer,
                equivalent_answers=item.equivalent_answers,
                extra_info={"benchmark": benchmark.name, **item.info}))
        if limit is not None and len(records) >= limit:
            break
    return BenchmarkData(benchmark.name, records, reports)


def benchmark_files(path: str | Path) -> list[Path]:
    """A file; every parquet/JSON/JSONL file under a directory; or the files a glob matches
    (e.g. "MMMU/*/validation-*.parquet"), sorted."""
    text = str(path)
    if any(c in text for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True))
        what = "pattern matches"
    elif Path(text).is_dir():
        files = sorted(p for p in Path(text).rglob("*"))
        what = "directory holds"
    elif Path(text).is_file():
        files = [Path(text)]
        what = "file is"
    else:
        raise DataError(text, "file not found")
    files = [f for f in files if f.is_file() and f.suffix.lower() in SUFFIXES]
    if not files:
        raise DataError(text, f"no {'/'.join(SUFFIXES)} file: the {what} none")
    return files


# ── rows ────────────────────────────────────────────────────────


def _rows(file: Path) -> Iterator[tuple[int, Any]]:
    if file.suffix.lower() == ".parquet":
        return _parquet_rows(file)
    return _json_rows(file)


def _parquet_rows(file: Path) -> Iterator[tuple[int, Any]]:
    try:
        reader = pq.ParquetFile(file)
    except (pa.ArrowException, OSError) as error:
        raise DataError(file, f"not a readable parquet file ({error})") from None
    row = 0
    for batch in reader.iter_batches(batch_size=64):  # streamed: --limit stops early
        for raw in batch.to_pylist():
            yield row, raw
            row += 1


def _json_rows(file: Path) -> Iterator[tuple[int, Any]]:
    """A JSON list of rows, a JSON object of rows (keyed by id, as MathVista's own
    testmini.json), or JSON lines (one row per non-blank line)."""
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise DataError(file, f"cannot read the file ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise DataError(file, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    stripped = text.lstrip()
    if file.suffix.lower() == ".json" and stripped[:1] in ("[", "{"):
        try:
            document = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise DataError(file, f"not valid JSON ({' '.join(str(error).split())})") from None
        if isinstance(document, dict):
            values = list(document.values())
            if values and all(isinstance(v, dict) for v in values):
                return iter(enumerate(values))
            raise DataError(file, "expected a list of rows or an object of rows")
        if not isinstance(document, list):
            raise DataError(file, f"expected a list of rows, got {type(document).__name__}")
        return iter(enumerate(document))
    return _jsonl_rows(text)


def _jsonl_rows(text: str) -> Iterator[tuple[int, Any]]:
    for row, line in enumerate(text.split("\n")):
        if not line.strip():
            continue
        try:
            yield row, json.loads(line)
        except (ValueError, RecursionError) as error:
            yield row, _MalformedLine(" ".join(str(error).split()))


class _MalformedLine:
    """A JSON line that does not parse: ``read_benchmark`` reports it as MALFORMED_JSON."""

    def __init__(self, detail: str) -> None:
        self.detail = detail


# ── fields ──────────────────────────────────────────────────────


def text_field(row: dict[str, Any], *keys: str, required: bool = True) -> str:
    """The first of ``keys`` that holds a non-empty string (stripped); "" when none does and
    ``required`` is False."""
    for key in keys:
        value = row.get(key)
        if value is None:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise BadRow(BadRowReason.WRONG_TYPE,
                         f"field {key!r} must be a string, got {type(value).__name__}")
        if value.strip():
            return value.strip()
    if not required:
        return ""
    if any(row.get(key) is not None for key in keys):
        raise BadRow(BadRowReason.EMPTY_QUESTION if "question" in keys[0] else
                     BadRowReason.MISSING_FIELD, f"field {keys[0]!r} is empty")
    raise BadRow(BadRowReason.MISSING_FIELD, f"missing field {' / '.join(map(repr, keys))}")


def question_field(row: dict[str, Any], *keys: str) -> str:
    text = text_field(row, *keys, required=False)
    if not text:
        raise BadRow(BadRowReason.EMPTY_QUESTION,
                     f"the question ({' / '.join(map(repr, keys))}) is missing or empty")
    return text


def image_value(value: Any, base: Path, name: str) -> bytes:
    """An image column in any published shape: a datasets Image struct ``{bytes, path}``,
    raw bytes, or a path relative to the file's directory (or absolute)."""
    if isinstance(value, dict):
        if isinstance(value.get("bytes"), bytes) and value["bytes"]:
            return validated_image(value["bytes"], f"{name}.bytes")
        value = value.get("path")
    if isinstance(value, bytes) and value:
        return validated_image(value, name)
    if isinstance(value, str) and value.strip():
        return load_image_file(value.strip(), base)
    raise BadRow(BadRowReason.MISSING_IMAGE, f"{name} has neither image bytes nor a path")


def first_image(row: dict[str, Any], base: Path, *keys: str) -> bytes:
    """The image of the first of ``keys`` present and not null."""
    for key in keys:
        if row.get(key) is not None:
            return image_value(row[key], base, key)
    raise BadRow(BadRowReason.MISSING_IMAGE, f"no image: {' / '.join(map(repr, keys))} missing")


def numbered_images(row: dict[str, Any], base: Path, prefix: str = "image_",
                    most: int = 7) -> tuple[bytes, ...]:
    """image_1 … image_7 (MMMU): the ones present, in order; at least one."""
    images = tuple(image_value(row[f"{prefix}{i}"], base, f"{prefix}{i}")
                   for i in range(1, most + 1) if row.get(f"{prefix}{i}") is not None)
    if not images:
        raise BadRow(BadRowReason.MISSING_IMAGE, f"no image: {prefix}1 … {prefix}{most} empty")
    return images


def option_list(value: Any, name: str = "options") -> list[str]:
    """Options as a list of strings: a list, or a stringified Python/JSON list (MMMU)."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise BadRow(BadRowReason.WRONG_TYPE,
                         f"{name} is not a list nor a stringified list: {text[:60]!r}") from None
    if not isinstance(value, (list, tuple)):
        raise BadRow(BadRowReason.WRONG_TYPE, f"{name} must be a list, got {type(value).__name__}")
    return [str(option).strip() for option in value]


# ── multiple choice ─────────────────────────────────────────────


def render_choices(question: str, options: Sequence[str]) -> str:
    """The question followed by its options as "(A) text" lines."""
    if len(options) > len(LETTERS):
        raise BadRow(BadRowReason.WRONG_TYPE, f"{len(options)} options; at most {len(LETTERS)}")
    lines = "\n".join(f"({LETTERS[i]}) {option}" for i, option in enumerate(options))
    return f"{question}\nChoices:\n{lines}"


def choice_truth(letter: str, options: Sequence[str] | None = None) -> tuple[str, tuple[str, ...]]:
    """(ground truth, equivalent answers) of a multiple-choice item: the letter, and "(L) text"
    so that the option's text is accepted as well as its letter (the verifier reads the letter
    of a "(L) text" truth first; another letter is wrong). Letters past H, which the verifier's
    choice rule does not read, also accept "(L)" and "L."."""
    letter = letter.strip().upper()
    equivalents: list[str] = []
    if options is not None:
        index = LETTERS.index(letter)
        if index >= len(options):
            raise BadRow(BadRowReason.MISSING_FIELD,
                         f"answer {letter!r} but only {len(options)} option(s)")
        text = options[index].strip()
        if text and letter in CHOICE_LETTERS:
            equivalents.append(f"({letter}) {text}")
        elif text:
            equivalents.append(text)
    if letter not in CHOICE_LETTERS:
        equivalents += [f"({letter})", f"{letter}."]
    return letter, tuple(equivalents)


def answer_letter(answer: Any, num_options: int | None = None) -> str:
    """The letter an MC answer names: "B", "(B)", "B." or "B:"; within the options when their
    number is known."""
    text = str(answer).strip() if answer is not None else ""
    bare = text.strip("()").rstrip(".:").strip().upper()
    if len(bare) == 1 and bare in LETTERS and (num_options is None
                                               or LETTERS.index(bare) < num_options):
        return bare
    raise BadRow(BadRowReason.MISSING_FIELD, f"answer {text[:60]!r} is not an option letter")


def letter_of_option(answer: str, options: Sequence[str]) -> str:
    """The letter of the option whose text is ``answer`` (MathVista gives the text): exact
    first, then ignoring case and surrounding space."""
    text = answer.strip()
    stripped = [option.strip() for option in options]
    if text in stripped:
        return LETTERS[stripped.index(text)]
    folded = [option.casefold() for option in stripped]
    if folded.count(text.casefold()) == 1:
        return LETTERS[folded.index(text.casefold())]
    raise BadRow(BadRowReason.MISSING_FIELD, f"answer {text[:60]!r} is none of the options")
