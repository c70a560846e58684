"""Writers for the published formats (PRISM_SPEC §7): sharegpt JSON, warm-up JSONL, RL parquet.

Every writer is byte-reproducible: fixed key order, explicit parquet schema, no timestamps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from prism_ray.prompting import IMAGE_PLACEHOLDER

_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
# scene: the ground-truth scene as compact JSON (prism_ray.data.fidelity.scene_to_json).
_EXTRA_INFO = pa.struct(
    [
        ("split", pa.string()),
        ("index", pa.int64()),
        ("question_type", pa.string()),
        ("scene", pa.string()),
    ]
)
RL_SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", pa.list_(_MESSAGE)),
        ("images", pa.list_(_IMAGE)),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", _EXTRA_INFO),
        ("equivalent_answers", pa.list_(pa.string())),
    ]
)
ALIGN_SCHEMA = RL_SCHEMA.append(pa.field("teacher_caption", pa.string())).append(
    pa.field("teacher_cot", pa.string())
)


def chat_prompt(
    question: str, num_images: int = 1, *, system_prompt: str | None
) -> list[dict[str, str]]:
    """System turn (none when ``system_prompt`` is None or empty) + user turn, images first
    (one placeholder each), as every stage sees them."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*system, {"role": "user", "content": IMAGE_PLACEHOLDER * num_images + question}]


def sharegpt_row(
    question: str, response: str, image_paths: list[str], *, system_prompt: str | None
) -> dict[str, Any]:
    messages = [
        *chat_prompt(question, len(image_paths), system_prompt=system_prompt),
        {"role": "assistant", "content": response},
    ]
    return {"messages": messages, "images": image_paths}


def rl_row(
    *,
    data_source: str,
    question: str,
    image_png: bytes,
    ground_truth: str,
    equivalent_answers: list[str],
    extra_info: dict[str, Any],
    ability: str,
    system_prompt: str | None,
) -> dict[str, Any]:
    return {
        "data_source": data_source,
        "prompt": chat_prompt(question, system_prompt=system_prompt),
        "images": [{"bytes": image_png, "path": None}],
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": extra_info,
        "equivalent_answers": equivalent_answers,
    }


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    path.write_text("".join(lines), encoding="utf-8")


def write_parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, compression="zstd")
