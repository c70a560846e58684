"""Benchmark adapters on tiny files in each public layout, the verifier on their ground
truths, and ``prism-ray eval`` end to end (generate, score, rescore) on the tiny policy."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from prism_ray.benchmarks import BENCHMARKS, UnknownBenchmark, get_benchmark, read_benchmark
from prism_ray.config.phases import RewardConfig
from prism_ray.config.schema import VerifierConfig
from prism_ray.data.errors import BadRowReason, DataError
from prism_ray.prompting import format_response
from prism_ray.verify import Verifier

CORRUPT_PNG = b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4


def png(color: tuple[int, int, int] = (200, 30, 30), size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def image_struct(data: bytes | None, path: str | None = None) -> dict[str, Any]:
    """A datasets ``Image`` column value, as pyarrow reads it from the published parquet."""
    return {"bytes": data, "path": path}


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_json(path: Path, rows: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def decodes(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
    return True


def read(name: str, path: Path, **kwargs):
    data = read_benchmark(get_benchmark(name), path, **kwargs)
    return data.records, data


def skipped(data) -> dict[BadRowReason, int]:
    return {kind: n for report in data.reports for kind, n in report.counts.items()}


# ── the seven layouts ───────────────────────────────────────────


def mathvista_file(root: Path) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "images" / "2.png").write_bytes(png((0, 0, 255)))
    common = {"unit": None, "metadata": {"source": "fixture"}, "query": "Hint: ..."}
    return write_parquet(root / "testmini.parquet", [
        {"pid": "1", "question": "Which bar is taller?", "image": "images/1.jpg",
         "decoded_image": image_struct(png()), "choices": ["left", "right"], "answer": "right",
         "question_type": "multi_choice", "answer_type": "text", "precision": None, **common},
        {"pid": "2", "question": "What is the length of the bar?", "image": "images/2.png",
         "decoded_image": None, "choices": None, "answer": "1.5",
         "question_type": "free_form", "answer_type": "float", "precision": 1.0, **common},
        {"pid": "3", "question": "Which?", "image": "images/3.jpg",
         "decoded_image": image_struct(png()), "choices": ["a", "b"], "answer": "c",
         "question_type": "multi_choice", "answer_type": "text", "precision": None, **common},
    ])


def test_mathvista(tmp_path):
    records, data = read("mathvista", mathvista_file(tmp_path))
    mc, free = records
    assert mc.question == "Which bar is taller?\nChoices:\n(A) left\n(B) right"
    assert (mc.ground_truth, mc.equivalent_answers) == ("B", ("(B) right",))
    assert free.question.startswith("What is the length of the bar?\n")
    assert "1 decimal place" in free.question
    assert (free.ground_truth, free.equivalent_answers) == ("1.5", ())
    assert free.images == (png((0, 0, 255)),) and all(decodes(r.images[0]) for r in records)
    assert mc.uid == "mathvista/testmini.parquet:0" and mc.extra_info["id"] == "1"
    assert data.rows_read == 3 and skipped(data) == {BadRowReason.MISSING_FIELD: 1}


def test_mathverse(tmp_path):
    path = write_parquet(tmp_path / "testmini.parquet", [
        {"sample_index": "1", "problem_version": "Text Lite", "question": "Find the angle.",
         "question_for_eval": "As shown, find angle 1.\nChoices:\nA:55°\nB:35°\nC:145°",
         "image": image_struct(png()), "answer": "B", "question_type": "multi-choice"},
        {"sample_index": "2", "problem_version": "Vision Only", "question": "",
         "question_for_eval": "Answer the question in the image.",
         "image": image_struct(png()), "answer": "12", "question_type": "free-form"},
        {"sample_index": "3", "problem_version": "Text Lite", "question": "q",
         "question_for_eval": "q", "image": None, "answer": "1", "question_type": "free-form"},
    ])
    records, data = read("mathverse", path)
    mc, free = records
    assert mc.question.endswith("Choices:\nA:55°\nB:35°\nC:145°")
    assert (mc.ground_truth, mc.equivalent_answers) == ("B", ("(B) 35°",))
    assert (free.question, free.ground_truth) == ("Answer the question in the image.", "12")
    assert all(decodes(r.images[0]) for r in records)
    assert skipped(data) == {BadRowReason.MISSING_IMAGE: 1}


def test_mathvision(tmp_path):
    path = write_parquet(tmp_path / "test.parquet", [
        {"id": "1", "question": "<image1> How many cubes?", "options": ["1", "2", "3", "4", "5"],
         "image": "images/1.jpg", "decoded_image": image_struct(png()), "answer": "C",
         "subject": "counting", "level": 1},
        {"id": "2", "question": "<image1> Compute x.", "options": [], "image": "images/2.jpg",
         "decoded_image": image_struct(png()), "answer": "7", "subject": "algebra", "level": 2},
        {"id": "3", "question": "Pick one.", "options": ["1", "2"], "image": "images/3.jpg",
         "decoded_image": image_struct(png()), "answer": "F", "subject": "x", "level": 1},
    ])
    records, data = read("mathvision", path)
    mc, free = records
    assert mc.question.endswith("Choices:\n(A) 1\n(B) 2\n(C) 3\n(D) 4\n(E) 5")
    assert (mc.ground_truth, mc.equivalent_answers) == ("C", ("(C) 3",))
    assert (free.question, free.ground_truth) == ("<image1> Compute x.", "7")
    assert skipped(data) == {BadRowReason.MISSING_FIELD: 1}


def test_wemath(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "w1.png").write_bytes(png())
    path = write_json(tmp_path / "testmini.json", [
        {"ID": "1-1", "split": "testmini", "question": "How long is the side?",
         "option": "A. 3 cm; B. 4 cm; C. 5 cm; D. No correct answer", "answer": "B",
         "image_path": "images/w1.png", "key": "1"},
        {"ID": "1-2", "split": "testmini", "question": "And this one?",
         "option": "A. 1; B. 2", "answer": "A", "image_path": "images/missing.png"},
        {"ID": "1-3", "split": "testmini", "question": "", "option": "A. 1", "answer": "A",
         "image_path": "images/w1.png"},
    ])
    records, data = read("wemath", path)
    (record,) = records
    assert record.question == ("How long is the side?\nChoices:\n(A) 3 cm\n(B) 4 cm\n(C) 5 cm\n"
                               "(D) No correct answer")
    assert (record.ground_truth, record.equivalent_answers) == ("B", ("(B) 4 cm",))
    assert record.images == (png(),)
    assert skipped(data) == {BadRowReason.MISSING_IMAGE: 1, BadRowReason.EMPTY_QUESTION: 1}


def mmmu_row(**fields: Any) -> dict[str, Any]:
    images = {f"image_{i}": None for i in range(1, 8)}
    return {"id": "validation_Art_1", "question": "<image 1> What is shown?",
            "options": "['a cat', 'a dog']", "explanation": "", **images,
            "img_type": "['Photos']", "answer": "B", "topic_difficulty": "Easy",
            "question_type": "multiple-choice", "subfield": "Art", **fields}


def mmmu_files(root: Path) -> Path:
    """MMMU's per-subject parquet files, one directory per subject."""
    write_parquet(root / "Art" / "validation-00000-of-00001.parquet", [
        mmmu_row(image_1=image_struct(png()), image_2=image_struct(png((0, 255, 0)))),
        mmmu_row(options="['unclosed'", image_1=image_struct(png())),
    ])
    write_parquet(root / "Math" / "validation-00000-of-00001.parquet", [
        mmmu_row(id="validation_Math_1", question="<image 1> Solve for x.", options="[]",
                 answer="['24/7', '3.429']", question_type="open",
                 image_1=image_struct(png())),
    ])
    return root


def test_mmmu(tmp_path):
    root = mmmu_files(tmp_path / "MMMU")
    records, data = read("mmmu", root)
    mc, open_ = records
    assert mc.question == "<image 1> What is shown?\nChoices:\n(A) a cat\n(B) a dog"
    assert len(mc.images) == 2 and all(decodes(i) for i in mc.images)
    assert (mc.ground_truth, mc.equivalent_answers) == ("B", ("(B) a dog",))
    assert (open_.ground_truth, open_.equivalent_answers) == ("24/7", ("3.429",))
    assert open_.uid.startswith("mmmu/validation-00000-of-00001.parquet")
    assert skipped(data) == {BadRowReason.WRONG_TYPE: 1}
    # a glob names the same files; --limit stops early
    records, _ = read("mmmu", tmp_path / "MMMU" / "*" / "validation-*.parquet", limit=1)
    assert [r.ground_truth for r in records] == ["B"]


def test_mmmu_pro(tmp_path):
    options = str([f"option {i}" for i in range(10)])
    standard = write_parquet(tmp_path / "standard" / "test.parquet", [
        {"id": "1", "question": "<image 1> Which?", "options": options, "explanation": "",
         "image_1": image_struct(png()), "image_2": None, "answer": "J", "subject": "Art"},
        {"id": "2", "question": "Which?", "options": options, "explanation": "",
         "image_1": image_struct(CORRUPT_PNG), "image_2": None, "answer": "A",
         "subject": "Art"},
    ])
    vision = write_parquet(tmp_path / "vision" / "test.parquet", [
        {"id": "3", "image": image_struct(png()), "options": "['x', 'y', 'z']", "answer": "C",
         "subject": "Math"},
    ])
    (record,), data = read("mmmu_pro", standard)
    assert record.question.endswith("(I) option 8\n(J) option 9")
    # past H the verifier's choice rule does not apply: the marked letter is accepted too
    assert (record.ground_truth, record.equivalent_answers) == ("J", ("option 9", "(J)", "J."))
    assert skipped(data) == {BadRowReason.CORRUPT_IMAGE: 1}
    (screenshot,), _ = read("mmmu_pro", vision)
    assert "shown in the image" in screenshot.question and len(screenshot.images) == 1
    assert (screenshot.ground_truth, screenshot.equivalent_answers) == ("C", ("(C) z",))


def hallusion_file(root: Path) -> Path:
    figure = root / "hallusion_bench" / "VD" / "chart"
    figure.mkdir(parents=True, exist_ok=True)
    (figure / "0_0.png").write_bytes(png())
    base = {"category": "VD", "subcategory": "chart", "set_id": "0", "figure_id": "0",
            "sample_note": "", "gt_answer_details": ""}
    return write_json(root / "HallusionBench.json", [
        {**base, "visual_input": "1", "question_id": "0", "question": "Is the bar red?",
         "gt_answer": "1", "filename": "./hallusion_bench/VD/chart/0_0.png"},
        {**base, "visual_input": "0", "question_id": "1",
         "question": "Is Paris the capital of Italy?", "gt_answer": "0", "filename": None},
        {**base, "visual_input": "1", "question_id": "2", "question": "Is it blue?",
         "gt_answer": "maybe", "filename": "./hallusion_bench/VD/chart/0_0.png"},
    ])


def test_hallusionbench(tmp_path):
    records, data = read("hallusionbench", hallusion_file(tmp_path))
    seen, unseen = records
    assert seen.question == "Is the bar red?\nAnswer yes or no."
    assert (seen.ground_truth, unseen.ground_truth) == ("yes", "no")
    assert seen.images == (png(),) and unseen.images == ()
    assert seen.extra_info["category"] == "VD"
    assert skipped(data) == {BadRowReason.MISSING_FIELD: 1}


# ── registry, policy, verifier ──────────────────────────────────


def test_registry_and_bad_row_policy(tmp_path):
    assert list(BENCHMARKS) == ["mathvista", "mathverse", "mathvision", "wemath", "mmmu",
                                "mmmu_pro", "hallusionbench"]
    assert get_benchmark("MMMU-Pro").name == "mmmu_pro"
    with pytest.raises(UnknownBenchmark, match="unknown benchmark 'mathvistaa'; known: mathvista"):
        get_benchmark("mathvistaa")
    path = mathvista_file(tmp_path)
    with pytest.raises(DataError, match=r"row 2 \(0-based\).*names no option|none of the"):
        read_benchmark(get_benchmark("mathvista"), path, on_bad_row="error")
    with pytest.raises(DataError, match="file not found"):
        read_benchmark(get_benchmark("mathvista"), tmp_path / "absent.parquet")
    lines = tmp_path / "rows.jsonl"
    lines.write_text('{"question": "q", "gt_answer": "1", "visual_input": "0"}\n{oops\n')
    records, data = read("hallusionbench", lines)
    assert len(records) == 1 and skipped(data) == {BadRowReason.MALFORMED_JSON: 1}


def answer(text: str) -> str:
    return format_response(["a figure"], "Reasoning.", text)


@pytest.mark.parametrize("response, truth, equivalents, correct", [
    ("B", "B", ("(B) right",), True),
    ("right", "B", ("(B) right",), True),
    ("(B) right", "B", ("(B) right",), True),
    ("A", "B", ("(B) right",), False),
    ("(J)", "J", ("option 9", "(J)", "J."), True),
    ("Yes", "yes", (), True),
    ("No", "yes", (), False),
    ("1.5", "1.5", (), True),
])
def test_ground_truths_are_what_the_verifier_scores(response, truth, equivalents, correct):
    with Verifier(VerifierConfig(math_verify=False), RewardConfig()) as verifier:
        result = verifier.verify(answer(response), truth, equivalents)
    assert (result.accuracy == 1.0) is correct


# ── end to end ──────────────────────────────────────────────────


@pytest.mark.ray
def test_eval_command_generates_scores_and_rescores(ray_cluster, tiny_pair, tmp_path):
    from prism_ray.cli import main

    mathvista = mathvista_file(tmp_path / "MathVista")
    hallusion = hallusion_file(tmp_path / "HallusionBench")
    out = tmp_path / "eval"
    code = main(["eval", str(tiny_pair[0]), "--bench", f"mathvista={mathvista}",
                 "--bench", f"HallusionBench={hallusion}", "--limit", "2", "--max-tokens", "4",
                 "--workers", "1", "--out", str(out)])
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    rows = doc["benchmarks"]
    assert list(rows) == ["mathvista", "hallusionbench"]
    assert [rows[name]["prompts"] for name in rows] == [2, 2]
    assert doc["average"]["prompts"] == 4
    for row in rows.values():
        assert row["samples"] == 1 and row["pass_at_k"] is None
        assert 0 < row["response_len"] <= 4
        assert sum(row["failures"].values()) == round(2 * (1 - row["accuracy"]))
    assert doc["settings"]["limit"] == 2 and doc["settings"]["temperature"] == 0.0
    generations = (out / "generations.jsonl").read_text().splitlines()
    assert len(generations) == 4
    markdown = (out / "results.md").read_text()
    assert "| MathVista | HallusionBench | Avg |" in markdown

    again = tmp_path / "rescored"
    assert main(["eval", "--rescore", str(out), "--out", str(again)]) == 0
    redone = json.loads((again / "results.json").read_text())
    assert redone["benchmarks"] == rows and redone["average"] == doc["average"]
    assert redone["settings"]["rescored"] is True
    table = markdown.split("Accuracy (%):")[1]
    assert (again / "results.md").read_text().split("Accuracy (%):")[1] == table

    assert main(["eval", str(tiny_pair[0]), "--bench", f"nope={mathvista}"]) == 2
