"""Readers: round trips of the synthesized products, and every kind of bad row named by file/row."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prism_ray.data import (
    BadRowReason,
    DataError,
    OnBadRow,
    ReadResult,
    read_rl_parquet,
    read_sharegpt,
    read_warmup_jsonl,
    synthesize,
)
from prism_ray.prompting import FORMAT_PATTERN

Row = dict[str, Any]
BAD_ROW = 2  # the row each broken file damages (0-based)
CORRUPT_PNG = b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dataset")
    synthesize(out, seed=0, size="tiny")
    return out


@pytest.fixture
def workdir(dataset: Path, tmp_path: Path) -> Path:
    """A private copy: the broken files are written next to the synthesized images."""
    shutil.copytree(dataset, tmp_path / "data")
    return tmp_path / "data"


def test_sharegpt_round_trip(dataset: Path) -> None:
    path = dataset / "sft/teacher.json"
    result = read_sharegpt(path)
    rows = json.loads(path.read_text())
    assert len(result.records) == len(rows) and result.report.num_skipped == 0
    for record, row in zip(result.records, rows, strict=True):
        assert record.question == row["messages"][1]["content"].removeprefix("<image>")
        assert record.response == row["messages"][2]["content"]
        assert FORMAT_PATTERN.match(record.response)
        assert record.images == ((dataset / "sft" / row["images"][0]).read_bytes(),)
        assert record.source == "teacher"
    assert len({record.uid for record in result.records}) == len(rows)


def test_sharegpt_jsonl_conversations_and_absolute_paths(dataset: Path, tmp_path: Path) -> None:
    rows = json.loads((dataset / "sft/public.json").read_text())
    lines = []
    for row in rows:
        turns = [
            {
                "from": {"user": "human", "assistant": "gpt"}.get(m["role"], m["role"]),
                "value": m["content"],
            }
            for m in row["messages"]
        ]
        images = [str(dataset / "sft" / image) for image in row["images"]]
        lines.append(json.dumps({"conversations": turns, "images": images}))
    path = tmp_path / "elsewhere" / "public.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n\n")  # a trailing blank line is not a row
    moved, original = (
        read_sharegpt(path).records,
        read_sharegpt(dataset / "sft/public.json").records,
    )
    assert [replace(r, uid="") for r in moved] == [replace(r, uid="") for r in original]
    assert moved[1].uid == "elsewhere/public.jsonl:1"


def test_rl_parquet_round_trip(dataset: Path) -> None:
    align = read_rl_parquet(dataset / "align/train.parquet").records
    rows = pq.read_table(dataset / "align/train.parquet").to_pylist()
    for record, row in zip(align, rows, strict=True):
        assert record.teacher_caption == row["teacher_caption"] and record.teacher_cot
        assert record.ground_truth == row["reward_model"]["ground_truth"]
        assert record.equivalent_answers == tuple(row["equivalent_answers"])
        assert record.images == (row["images"][0]["bytes"],)
        assert record.extra_info == row["extra_info"]
        assert record.question == row["prompt"][1]["content"].removeprefix("<image>")
    for product in ("rlvr/train.parquet", "eval/test.parquet"):
        records = read_rl_parquet(dataset / product).records
        assert records and all(r.teacher_caption is None and r.teacher_cot is None for r in records)


def test_rl_parquet_with_image_paths_and_answers_inside_reward_model(
    dataset: Path, tmp_path: Path
) -> None:
    rows = pq.read_table(dataset / "rlvr/train.parquet").to_pylist()
    for index, row in enumerate(rows):
        (tmp_path / f"{index}.png").write_bytes(row["images"][0]["bytes"])
        row["images"] = [{"bytes": None, "path": f"{index}.png"}]
        row["reward_model"]["equivalent_answers"] = row.pop("equivalent_answers") + ["extra"]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "paths.parquet")
    original = read_rl_parquet(dataset / "rlvr/train.parquet").records
    for moved, record in zip(
        read_rl_parquet(tmp_path / "paths.parquet").records, original, strict=True
    ):
        assert moved.images == record.images
        assert moved.equivalent_answers == (*record.equivalent_answers, "extra")


def test_warmup_round_trip(dataset: Path) -> None:
    path = dataset / "warmup/pairs.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for pair, line in zip(read_warmup_jsonl(path).records, lines, strict=True):
        assert pair.prompt == line["prompt"] and pair.student_cot == line["student_cot"]
        assert pair.image == (dataset / "warmup" / line["image"]).read_bytes()


@pytest.mark.parametrize(
    ("reader", "path", "reason"),
    [
        (read_sharegpt, "missing.json", "file not found"),
        (read_sharegpt, "sft/teacher.csv", "expected a .json or .jsonl file"),
        (read_rl_parquet, "rlvr/train.json", "expected a .parquet file"),
        (read_warmup_jsonl, "warmup/pairs.json", "expected a .jsonl file"),
    ],
)
def test_missing_file_or_wrong_extension(
    dataset: Path, reader: Callable[..., Any], path: str, reason: str
) -> None:
    with pytest.raises(DataError, match=reason) as error:
        reader(dataset / path)
    assert str(dataset / path) in str(error.value)


def test_unreadable_parquet_and_missing_column(workdir: Path) -> None:
    broken = workdir / "broken.parquet"
    broken.write_bytes(b"PAR1 but not really")
    with pytest.raises(DataError, match="not a readable parquet file"):
        read_rl_parquet(broken)
    table = pq.read_table(workdir / "rlvr/train.parquet").drop_columns(["reward_model"])
    pq.write_table(table, broken)
    with pytest.raises(DataError, match=r"missing required column.*reward_model"):
        read_rl_parquet(broken)


# Each breaker damages one row of a product (in a copy under `workdir`) in one way.
def _corrupt_file(workdir: Path, subdir: str) -> Callable[[Row], None]:
    def breaks(row: Row) -> None:
        key = "images" if "images" in row else "image"
        image = row[key][0] if key == "images" else row[key]
        (workdir / subdir / image).write_bytes(CORRUPT_PNG)

    return breaks


def _sharegpt_breakers(workdir: Path) -> dict[BadRowReason, Callable[[Row], None]]:
    def user(row: Row) -> Row:
        return row["messages"][1]

    return {
        BadRowReason.CORRUPT_IMAGE: _corrupt_file(workdir, "sft"),
        BadRowReason.MISSING_IMAGE: lambda row: row.update(images=["images/nowhere.png"]),
        BadRowReason.MISSING_FIELD: lambda row: row.pop("messages"),
        BadRowReason.EMPTY_QUESTION: lambda row: user(row).update(content="<image>  "),
        BadRowReason.IMAGE_COUNT_MISMATCH: lambda row: user(row).update(
            content="<image><image>" + user(row)["content"]
        ),
        BadRowReason.WRONG_TYPE: lambda row: user(row).update(content=7),
        BadRowReason.EMPTY_RESPONSE: lambda row: row["messages"][2].update(content=" "),
    }


def _assert_named(error: DataError, path: Path, reason: BadRowReason) -> None:
    assert str(path) in str(error) and f"row {BAD_ROW} (0-based)" in str(error)
    assert (error.row, error.kind) == (BAD_ROW, reason)


def _assert_counted_skip(result: ReadResult[Any], total: int, reason: BadRowReason) -> None:
    assert len(result.records) == total - 1
    assert result.report.num_rows == total and result.report.num_skipped == 1
    assert result.report.counts == {reason: 1} and result.report.first_rows[reason] == [BAD_ROW]
    assert reason.value in result.report.summary()


@pytest.mark.parametrize("reason", list(_sharegpt_breakers(Path())))
def test_sharegpt_bad_rows(workdir: Path, reason: BadRowReason) -> None:
    rows = json.loads((workdir / "sft/teacher.json").read_text())
    _sharegpt_breakers(workdir)[reason](rows[BAD_ROW])
    path = workdir / "sft/broken.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(DataError) as error:
        read_sharegpt(path)
    _assert_named(error.value, path, reason)
    _assert_counted_skip(read_sharegpt(path, on_bad_row="skip"), len(rows), reason)


def _rl_breakers(workdir: Path) -> dict[BadRowReason, Callable[[Row], None]]:
    def user(row: Row) -> Row:
        return row["prompt"][1]

    return {
        BadRowReason.CORRUPT_IMAGE: lambda row: row["images"][0].update(bytes=CORRUPT_PNG),
        BadRowReason.MISSING_IMAGE: lambda row: row.update(
            images=[{"bytes": None, "path": "x.png"}]
        ),
        BadRowReason.MISSING_FIELD: lambda row: row["reward_model"].update(ground_truth=None),
        BadRowReason.EMPTY_QUESTION: lambda row: user(row).update(content="<image>"),
        BadRowReason.IMAGE_COUNT_MISMATCH: lambda row: user(row).update(content="no placeholder"),
    }


@pytest.mark.parametrize("reason", list(_rl_breakers(Path())))
def test_rl_parquet_bad_rows(workdir: Path, reason: BadRowReason) -> None:
    table = pq.read_table(workdir / "align/train.parquet")
    rows = table.to_pylist()
    _rl_breakers(workdir)[reason](rows[BAD_ROW])
    path = workdir / "align/broken.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    with pytest.raises(DataError) as error:
        read_rl_parquet(path)
    _assert_named(error.value, path, reason)
    _assert_counted_skip(read_rl_parquet(path, on_bad_row=OnBadRow.skip), len(rows), reason)


def test_rl_parquet_wrong_type(workdir: Path) -> None:
    rows = pq.read_table(workdir / "rlvr/train.parquet").to_pylist()
    for row in rows:  # an int column: the type is wrong on every row
        row["reward_model"]["ground_truth"] = len(row["reward_model"]["ground_truth"])
    path = workdir / "rlvr/ints.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(DataError, match=r"row 0 \(0-based\).*must be str, got int"):
        read_rl_parquet(path)
    result = read_rl_parquet(path, on_bad_row="skip")
    assert result.records == [] and result.report.counts == {BadRowReason.WRONG_TYPE: len(rows)}


def _warmup_breakers(workdir: Path) -> dict[BadRowReason, Callable[[Row], str]]:
    """Each returns the JSON line written for the damaged row."""
    corrupt = _corrupt_file(workdir, "warmup")

    def without(key: str) -> Callable[[Row], str]:
        return lambda row: json.dumps({k: v for k, v in row.items() if k != key})

    return {
        BadRowReason.CORRUPT_IMAGE: lambda row: (corrupt(row), json.dumps(row))[1],
        BadRowReason.MISSING_IMAGE: lambda row: json.dumps({**row, "image": "images/nowhere.png"}),
        BadRowReason.MISSING_FIELD: without("teacher_cot"),
        BadRowReason.EMPTY_QUESTION: lambda row: json.dumps({**row, "prompt": " <image> "}),
        BadRowReason.WRONG_TYPE: lambda row: json.dumps({**row, "student_caption": ["a", "b"]}),
        BadRowReason.MALFORMED_JSON: lambda row: json.dumps(row)[:-5],  # cut off mid-object
    }


@pytest.mark.parametrize("reason", list(_warmup_breakers(Path())))
def test_warmup_bad_rows(workdir: Path, reason: BadRowReason) -> None:
    lines = (workdir / "warmup/pairs.jsonl").read_text().splitlines()
    lines[BAD_ROW] = _warmup_breakers(workdir)[reason](json.loads(lines[BAD_ROW]))
    path = workdir / "warmup/broken.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as error:
        read_warmup_jsonl(path)
    _assert_named(error.value, path, reason)
    _assert_counted_skip(read_warmup_jsonl(path, on_bad_row="skip"), len(lines), reason)


def test_skip_report_lists_several_reasons(workdir: Path) -> None:
    rows = json.loads((workdir / "sft/teacher.json").read_text())
    rows[0]["images"] = []
    rows[3].pop("images")
    rows[5]["images"] = ["images/missing.png"]
    path = workdir / "sft/many.json"
    path.write_text(json.dumps(rows))
    report = read_sharegpt(path, on_bad_row="skip").report
    assert report.counts == {
        BadRowReason.IMAGE_COUNT_MISMATCH: 1,
        BadRowReason.MISSING_FIELD: 1,
        BadRowReason.MISSING_IMAGE: 1,
    }
    assert f"kept {len(rows) - 3} of {len(rows)} rows" in report.summary()
