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
from prism_ray.data.writers import write_json, write_jsonl
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


# ---- text encoding: line ends, separators inside strings, bad bytes, BOMs ---------------------

SEPARATORS = "a\u2028b\u2029c\u0085d\x0be\x0cf\x1cg\x1dh\x1ei"  # all split by str.splitlines()


def _warmup_rows(dataset: Path) -> list[Row]:
    return [
        json.loads(line)
        for line in (dataset / "warmup/pairs.jsonl").read_bytes().split(b"\n")
        if line
    ]


def test_warmup_row_with_line_separators_round_trips_through_our_writer(workdir: Path) -> None:
    rows = _warmup_rows(workdir)
    rows[BAD_ROW]["student_cot"] = SEPARATORS
    path = workdir / "warmup/separators.jsonl"
    write_jsonl(path, rows)
    assert "\u2028" in path.read_text(encoding="utf-8")  # written unescaped, as JSON allows
    result = read_warmup_jsonl(path)
    assert len(result.records) == len(rows) and result.report.num_skipped == 0
    assert result.records[BAD_ROW].student_cot == SEPARATORS
    assert result.records[BAD_ROW].uid.endswith(f":{BAD_ROW}")


def test_sharegpt_rows_with_line_separators_round_trip(workdir: Path) -> None:
    rows = json.loads((workdir / "sft/teacher.json").read_text())
    rows[BAD_ROW]["messages"][-1]["content"] += SEPARATORS
    for name, write in (("lines.jsonl", write_jsonl), ("list.json", write_json)):
        write(workdir / "sft" / name, rows)
        records = read_sharegpt(workdir / "sft" / name).records
        assert len(records) == len(rows) and records[BAD_ROW].response.endswith(SEPARATORS)


def _with_bad_byte(workdir: Path) -> tuple[Path, int]:
    lines = (workdir / "warmup/pairs.jsonl").read_bytes().split(b"\n")
    lines[BAD_ROW] = lines[BAD_ROW].replace(b'"prompt": "', b'"prompt": "\xff', 1)
    path = workdir / "warmup/latin1.jsonl"
    path.write_bytes(b"\n".join(lines))
    return path, len([line for line in lines if line.strip()])


def test_a_bad_utf8_byte_costs_one_row(workdir: Path) -> None:
    path, total = _with_bad_byte(workdir)
    with pytest.raises(DataError) as error:
        read_warmup_jsonl(path)
    _assert_named(error.value, path, BadRowReason.BAD_ENCODING)
    assert f"line {BAD_ROW + 1}, byte" in str(error.value) and "0xff" in str(error.value)
    assert "\n" not in str(error.value)
    _assert_counted_skip(
        read_warmup_jsonl(path, on_bad_row="skip"), total, BadRowReason.BAD_ENCODING
    )


def test_a_utf8_bom_is_accepted(workdir: Path) -> None:
    warmup = workdir / "warmup/pairs.jsonl"
    bom = workdir / "warmup/bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + warmup.read_bytes())
    assert read_warmup_jsonl(bom).records == [
        replace(r, uid=r.uid.replace("pairs", "bom")) for r in read_warmup_jsonl(warmup).records
    ]
    teacher = workdir / "sft/teacher.json"
    for name, data in (
        ("bom.json", teacher.read_bytes()),
        ("bom.jsonl", b"\n".join(json.dumps(r).encode() for r in json.loads(teacher.read_text()))),
    ):
        (workdir / "sft" / name).write_bytes(b"\xef\xbb\xbf" + data)
        assert len(read_sharegpt(workdir / "sft" / name).records) == len(read_sharegpt(teacher))


def test_a_sharegpt_json_that_is_not_utf8_is_one_clear_error(workdir: Path) -> None:
    path = workdir / "sft/latin1.json"
    text = (workdir / "sft/teacher.json").read_text()
    path.write_bytes(text.replace("[", '[\n"caf\xe9",', 1).encode("latin-1"))
    with pytest.raises(DataError, match=r"not UTF-8 text: line 2, byte 5 is 0xe9") as error:
        read_sharegpt(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "line",
    ["[" * 100_000, '{"prompt": ' + "9" * 5000 + "}", "\u2028", '"just a string"'],
    ids=["deep-nesting", "huge-int", "separator-only", "not-an-object"],
)
def test_hostile_json_lines_are_bad_rows(workdir: Path, line: str) -> None:
    path = workdir / "warmup/hostile.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"row 0 \(0-based\)"):
        read_warmup_jsonl(path)
    assert read_warmup_jsonl(path, on_bad_row="skip").report.num_skipped == 1


def test_an_image_path_with_a_nul_byte_is_a_missing_image(workdir: Path) -> None:
    rows = _warmup_rows(workdir)
    rows[BAD_ROW]["image"] = "images/a\x00b.png"
    path = workdir / "warmup/nul.jsonl"
    write_jsonl(path, rows)
    result = read_warmup_jsonl(path, on_bad_row="skip")
    assert result.report.counts == {BadRowReason.MISSING_IMAGE: 1}
