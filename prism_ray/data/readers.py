"""Readers for the published formats (PRISM_SPEC §7) into the typed records of prism_ray.types.

Every reader returns a `ReadResult` (records + report). A bad row raises a `DataError` naming the
file, the 0-based row and the reason; under `OnBadRow.skip` it is left out and counted in the
report instead, never dropped silently. Each image is decoded once here, so a record that exists
holds images Pillow can open. Record uids are "<dir>/<file>:<row>".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from prism_ray.data.errors import (
    BadRow,
    BadRowReason,
    BadRowReport,
    DataError,
    OnBadRow,
    ReadResult,
)
from prism_ray.data.validation import (
    load_image_file,
    parse_turns,
    question_from,
    require,
    require_str_list,
    validated_image,
)
from prism_ray.types import Demonstration, RLPrompt, WarmupPair

T = TypeVar("T")
RL_REQUIRED_COLUMNS = ("data_source", "prompt", "images", "reward_model")
WARMUP_TEXT_FIELDS = ("teacher_caption", "student_caption", "teacher_cot", "student_cot")
BOM = b"\xef\xbb\xbf"  # UTF-8 byte order mark


def read_sharegpt(
    path: str | Path, on_bad_row: OnBadRow | str = OnBadRow.error
) -> ReadResult[Demonstration]:
    """LLaMA-Factory sharegpt-multimodal (JSON list, or JSONL) -> Demonstrations.

    Rows hold `messages` (role/content) or `conversations` (from/value) and `images` (paths
    relative to the file's directory, or absolute). The question is the user turn before the
    last assistant turn, `<image>` placeholders removed; the response is that assistant turn.
    `source` of each record is the file's stem (e.g. "teacher", "public").
    """
    file = _existing_file(path, (".json", ".jsonl"))
    rows = _json_rows(file)

    def parse(row: int, raw: Any) -> Demonstration:
        return _demonstration(raw, _uid(file, row), file.parent, source=file.stem)

    return _read_rows(file, rows, parse, OnBadRow(on_bad_row))


def read_rl_parquet(
    path: str | Path, on_bad_row: OnBadRow | str = OnBadRow.error
) -> ReadResult[RLPrompt]:
    """verl-style RL parquet -> RLPrompts. Teacher columns and `equivalent_answers` (a column or
    a key of `reward_model`) are optional; images are `{bytes}` or `{path}` structs."""
    file = _existing_file(path, (".parquet",))
    try:
        table = pq.read_table(file)
    except (pa.ArrowException, OSError) as error:
        raise DataError(file, f"not a readable parquet file ({error})") from None
    missing = [name for name in RL_REQUIRED_COLUMNS if name not in table.column_names]
    if missing:
        raise DataError(file, f"missing required column(s) {missing}; has {table.column_names}")

    def parse(row: int, raw: Any) -> RLPrompt:
        return _rl_prompt(raw, _uid(file, row), file.parent)

    return _read_rows(file, enumerate(table.to_pylist()), parse, OnBadRow(on_bad_row))


def read_warmup_jsonl(
    path: str | Path, on_bad_row: OnBadRow | str = OnBadRow.error
) -> ReadResult[WarmupPair]:
    """Discriminator warm-up JSONL -> WarmupPairs. `image` is a path relative to the file's
    directory (or absolute); `prompt` is the question (any `<image>` placeholder is removed)."""
    file = _existing_file(path, (".jsonl",))

    def parse(row: int, raw: Any) -> WarmupPair:
        return _warmup_pair(raw, _uid(file, row), file.parent)

    return _read_rows(file, _jsonl_rows(file), parse, OnBadRow(on_bad_row))


def _read_rows(
    file: Path,
    rows: Iterator[tuple[int, Any]],
    parse: Callable[[int, Any], T],
    on_bad_row: OnBadRow,
) -> ReadResult[T]:
    report, records = BadRowReport(file), []
    for row, raw in rows:
        report.num_rows += 1
        try:
            if isinstance(raw, BadRow):  # found while reading the row (an undecodable line)
                raise raw
            records.append(parse(row, raw))
        except BadRow as bad:
            if on_bad_row is OnBadRow.error:
                raise DataError(file, bad.detail, row=row, kind=bad.kind) from None
            report.add(row, bad)
    return ReadResult(records, report)


def _existing_file(path: str | Path, suffixes: tuple[str, ...]) -> Path:
    file = Path(path)
    if file.suffix.lower() not in suffixes:
        raise DataError(file, f"expected a {' or '.join(suffixes)} file, got {file.suffix!r}")
    if not file.is_file():
        raise DataError(file, "file not found")
    return file


def _uid(file: Path, row: int) -> str:
    return f"{file.parent.name}/{file.name}:{row}"


def _read_bytes(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as error:
        raise DataError(file, f"cannot read the file ({error.strerror})") from None


def _encoding_detail(data: bytes, error: UnicodeDecodeError, first_line: int = 1) -> str:
    """'line 3, byte 7 is 0xff (invalid start byte)': where the first undecodable byte of `data`
    sits (both 1-based), so a user can find it in an editor."""
    line = first_line + data.count(b"\n", 0, error.start)
    column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
    return f"line {line}, byte {column} is 0x{data[error.start]:02x} ({error.reason})"


def _json_rows(file: Path) -> Iterator[tuple[int, Any]]:
    """A .json file holding a list is one document; anything else is read as JSON lines."""
    data = _read_bytes(file)
    if file.suffix.lower() == ".jsonl" or not data.removeprefix(BOM).lstrip().startswith(b"["):
        return _jsonl_rows(file, data)
    try:
        text = data.decode("utf-8-sig")  # a leading BOM is dropped (editors on Windows write one)
    except UnicodeDecodeError as error:
        raise DataError(file, f"not UTF-8 text: {_encoding_detail(data, error)}") from None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, int digit limit, depth
        raise DataError(file, f"not valid JSON ({_one_line(error)})") from None
    if not isinstance(document, list):
        raise DataError(file, f"expected a JSON list of rows, got {type(document).__name__}")
    return enumerate(document)


def _jsonl_rows(file: Path, data: bytes | None = None) -> Iterator[tuple[int, str | BadRow]]:
    """(row, line text) for every non-blank line, row = line number - 1; a line that is not
    UTF-8 comes as the `BadRow` that `_read_rows` reports for it.

    Lines end at b"\\n" only: `str.splitlines()` also splits at U+2028, U+0085 and other
    separators that JSON allows unescaped inside strings (our own writer emits them). Each line
    is decoded and parsed on its own, so one bad byte or malformed line costs one row, not the
    file. A UTF-8 BOM before the first line is dropped.
    """
    lines = (_read_bytes(file) if data is None else data).split(b"\n")
    lines[0] = lines[0].removeprefix(BOM)
    return ((row, _decode_line(line, row)) for row, line in enumerate(lines) if line.strip())


def _decode_line(line: bytes, row: int) -> str | BadRow:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as error:
        detail = _encoding_detail(line, error, first_line=row + 1)
        return BadRow(BadRowReason.BAD_ENCODING, f"not UTF-8 text: {detail}")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _json_object(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError) as error:  # JSONDecodeError, int digit limit, depth
            raise BadRow(
                BadRowReason.MALFORMED_JSON, f"malformed JSON line ({_one_line(error)})"
            ) from None
    if not isinstance(raw, dict):
        raise BadRow(
            BadRowReason.WRONG_TYPE, f"row must be a JSON object, got {type(raw).__name__}"
        )
    return raw


def _demonstration(raw: Any, uid: str, base: Path, source: str) -> Demonstration:
    row = _json_object(raw)
    key = "messages" if "messages" in row else "conversations"
    turns = parse_turns(require(row, key, list))
    if not turns or turns[-1][0] != "assistant":
        raise BadRow(BadRowReason.MISSING_FIELD, f"{key}: the last turn must be the assistant's")
    if len(turns) < 2 or turns[-2][0] != "user":
        raise BadRow(BadRowReason.MISSING_FIELD, f"{key}: no user turn before the assistant's")
    response = turns[-1][1].strip()
    if not response:
        raise BadRow(BadRowReason.EMPTY_RESPONSE, "the assistant response is empty")
    paths = require_str_list(row, "images")
    question = question_from(turns, num_images=len(paths))
    images = tuple(load_image_file(reference, base) for reference in paths)
    return Demonstration(uid, images, question, response, source=source)


def _rl_prompt(row: dict[str, Any], uid: str, base: Path) -> RLPrompt:
    turns = parse_turns(require(row, "prompt", list))
    structs = require(row, "images", list)
    question = question_from(turns, num_images=len(structs))
    images = tuple(_image_from_struct(item, index, base) for index, item in enumerate(structs))
    reward = require(row, "reward_model", dict)
    equivalents = [*_optional_str_list(row, "equivalent_answers")]
    equivalents += [
        a for a in _optional_str_list(reward, "equivalent_answers") if a not in equivalents
    ]
    caption, cot = (_optional_str(row, name) for name in ("teacher_caption", "teacher_cot"))
    if (caption is None) != (cot is None):
        raise BadRow(BadRowReason.MISSING_FIELD, "teacher_caption and teacher_cot come together")
    extra_info = row.get("extra_info")  # optional column: absent and null both mean "none"
    if extra_info is not None and not isinstance(extra_info, dict):
        raise BadRow(BadRowReason.WRONG_TYPE, "extra_info must be a struct")
    return RLPrompt(
        uid=uid,
        data_source=require(row, "data_source", str),
        images=images,
        question=question,
        ground_truth=require(reward, "ground_truth", str, "reward_model.ground_truth"),
        equivalent_answers=tuple(equivalents),
        teacher_caption=caption,
        teacher_cot=cot,
        extra_info=dict(extra_info or {}),
    )


def _image_from_struct(item: Any, index: int, base: Path) -> bytes:
    name = f"images[{index}]"
    if not isinstance(item, dict):
        raise BadRow(BadRowReason.WRONG_TYPE, f"{name} must be a struct with bytes or path")
    if item.get("bytes") is not None:
        data = item["bytes"]
        if not isinstance(data, bytes):
            raise BadRow(BadRowReason.WRONG_TYPE, f"{name}.bytes must be binary")
        return validated_image(data, f"{name}.bytes")
    if isinstance(item.get("path"), str) and item["path"]:
        return load_image_file(item["path"], base)
    raise BadRow(BadRowReason.MISSING_IMAGE, f"{name} has neither bytes nor a path")


def _optional_str(row: dict[str, Any], key: str) -> str | None:
    value = row.get(key)  # optional column
    if value is not None and not isinstance(value, str):
        raise BadRow(BadRowReason.WRONG_TYPE, f"{key} must be a string, got {type(value).__name__}")
    return value


def _optional_str_list(row: dict[str, Any], key: str) -> list[str]:
    return require_str_list(row, key) if row.get(key) is not None else []


def _warmup_pair(raw: Any, uid: str, base: Path) -> WarmupPair:
    row = _json_object(raw)
    texts = {name: require(row, name, str) for name in WARMUP_TEXT_FIELDS}
    question = question_from([("user", require(row, "prompt", str))], num_images=None)
    image = load_image_file(require(row, "image", str), base)
    return WarmupPair(uid=uid, prompt=question, image=image, **texts)
