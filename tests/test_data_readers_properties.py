"""Property tests for the readers: any bytes in a file, in either bad-row mode, give records, a
counted skip or one DataError naming the file, never another exception, and quickly."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prism_ray.data import (
    DataError,
    OnBadRow,
    ReadResult,
    read_rl_parquet,
    read_sharegpt,
    read_warmup_jsonl,
)
from prism_ray.data.writers import write_jsonl

FAST_S = 2.0
PNG = (  # a 1x1 image, so that some generated rows are complete
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS"
    b"\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00"
    b"\x00\x00IEND\xaeB`\x82"
)

# Byte pieces that break naive line splitting, decoding or parsing.
BYTE_TOKENS = [
    b"\n", b"\r\n", b"\r", b"\xef\xbb\xbf", b"\xe2\x80\xa8", b"\xc2\x85", b"\x0b", b"\x0c",
    b"\x1c", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"{", b"}", b"[", b"]", b'"', b":",
    b",", b'"\\u2028"', b'"\\ud800"', b"9" * 5000, b"[" * 3000, b"null", b"true", b"1e999",
    b'{"prompt": "<image>q"', b'"image": "x.png"', b'"images": ["x.png"]',
    b'"messages": [{"role": "user", "content": "<image>q"}, {"role": "assistant", "content": "a"}]',
]  # fmt: skip
adversarial_bytes = st.lists(st.sampled_from(BYTE_TOKENS) | st.binary(max_size=16), max_size=40)
file_bytes = st.binary(max_size=2000) | adversarial_bytes.map(b"".join)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
WARMUP_KEYS = [
    "prompt",
    "image",
    "teacher_caption",
    "student_caption",
    "teacher_cot",
    "student_cot",
]
warmup_rows = st.fixed_dictionaries(
    {},
    optional={
        key: st.sampled_from(["x.png", "<image>q", "", "\u2028", "a\x00b"]) | json_values
        for key in WARMUP_KEYS
    },
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("properties")
    (out / "x.png").write_bytes(PNG)
    return out


def _read(reader: Callable[..., ReadResult[Any]], path: Path, mode: OnBadRow) -> None:
    """One read: a result whose counts add up, or a one-line DataError naming the file."""
    started = time.monotonic()
    try:
        result = reader(path, on_bad_row=mode)
    except DataError as error:
        assert str(path) in str(error) and "\n" not in str(error)
        if error.row is not None:
            assert mode is OnBadRow.error
    else:
        report = result.report
        assert report.num_rows == len(result.records) + report.num_skipped
        assert mode is OnBadRow.skip or report.num_skipped == 0
        assert str(path) in report.summary()
    assert time.monotonic() - started < FAST_S


@settings(max_examples=150, deadline=None)
@given(data=file_bytes, mode=st.sampled_from(OnBadRow))
def test_any_bytes_in_a_jsonl_file(folder: Path, data: bytes, mode: OnBadRow) -> None:
    path = folder / "any.jsonl"
    path.write_bytes(data)
    _read(read_warmup_jsonl, path, mode)
    _read(read_sharegpt, path, mode)


@settings(max_examples=100, deadline=None)
@given(data=file_bytes, mode=st.sampled_from(OnBadRow), list_document=st.booleans())
def test_any_bytes_in_a_sharegpt_json_file(
    folder: Path, data: bytes, mode: OnBadRow, list_document: bool
) -> None:
    path = folder / "any.json"
    path.write_bytes((b"[" if list_document else b"") + data)
    _read(read_sharegpt, path, mode)


@settings(max_examples=30, deadline=None)
@given(data=file_bytes, mode=st.sampled_from(OnBadRow))
def test_any_bytes_in_a_parquet_file(folder: Path, data: bytes, mode: OnBadRow) -> None:
    path = folder / "any.parquet"
    path.write_bytes(data)
    _read(read_rl_parquet, path, mode)


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(warmup_rows | json_values, max_size=6), mode=st.sampled_from(OnBadRow))
def test_rows_of_any_json_from_our_writer(folder: Path, rows: list[Any], mode: OnBadRow) -> None:
    """Valid JSON lines of any shape: every line is one row, kept or counted, never lost."""
    path = folder / "rows.jsonl"
    write_jsonl(path, rows)
    _read(read_warmup_jsonl, path, mode)
    if mode is OnBadRow.skip:
        assert read_warmup_jsonl(path, on_bad_row=mode).report.num_rows == len(rows)


@settings(max_examples=100, deadline=None)
@given(text=st.text(), key=st.sampled_from(WARMUP_KEYS[2:]))
def test_any_text_field_round_trips(folder: Path, text: str, key: str) -> None:
    """Whatever a text field holds (line separators, NUL, BOMs), our writer and reader agree."""
    row = dict.fromkeys(WARMUP_KEYS, "t") | {"prompt": "<image>q", "image": "x.png", key: text}
    path = folder / "text.jsonl"
    write_jsonl(path, [row, row])
    records = read_warmup_jsonl(path).records
    assert [getattr(record, key) for record in records] == [text, text]
    assert json.loads(path.read_bytes().split(b"\n")[0]) == row
