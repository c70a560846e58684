"""The system prompt is a recipe setting: one field, passed to every role that encodes prompts
(so rollout and learner log-probs are of the same ids), and absent when set to null."""

from __future__ import annotations

from pathlib import Path

import pytest

from prism_ray.config import load_config
from prism_ray.data.writers import rl_row, sharegpt_row
from prism_ray.models.inputs import encode_prompt
from prism_ray.models.processor import load_processor

CUSTOM = "Answer in one word."
SYSTEM_TURN = "<|im_start|>system"


def recipe(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(f"{line}\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def processor(tiny_pair):
    return load_processor(tiny_pair[0])


def decoded_prompt(processor, system_prompt: str | None, images: tuple[bytes, ...] = ()) -> str:
    ids = encode_prompt(processor, "How many circles?", images, system_prompt=system_prompt)
    return processor.tokenizer.decode(ids.input_ids)


def test_a_recipes_system_prompt_is_in_the_prompt_ids(tmp_path, processor):
    config = load_config(recipe(tmp_path, f"system_prompt: {CUSTOM}"))
    assert config.system_prompt == CUSTOM
    text = decoded_prompt(processor, config.system_prompt)
    assert f"{SYSTEM_TURN}\n{CUSTOM}<|im_end|>" in text
    assert load_config().system_prompt not in text  # the default is replaced, not added


@pytest.mark.parametrize("line", ["system_prompt: null", "system_prompt: ''"])
def test_null_or_empty_system_prompt_means_no_system_turn(tmp_path, processor, line):
    config = load_config(recipe(tmp_path, line))
    text = decoded_prompt(processor, config.system_prompt)
    assert SYSTEM_TURN not in text
    assert text.startswith("<|im_start|>user") and "How many circles?" in text


def test_the_default_recipe_keeps_the_published_system_prompt(processor):
    default = load_config().system_prompt
    assert default and default in decoded_prompt(processor, default)


def test_rollout_engine_and_learner_encoding_agree_on_a_custom_prompt(tiny_pair, processor,
                                                                       tiny_dataset):
    from prism_ray.data.readers import read_rl_parquet
    from prism_ray.rollout.hf import HFEngine

    prompt = read_rl_parquet(tiny_dataset / "rlvr/train.parquet").records[0]
    engine = HFEngine(tiny_pair[0], system_prompt=CUSTOM)
    batch = engine._encode_batch([prompt])
    learner_ids = encode_prompt(processor, prompt.question, prompt.images,
                                system_prompt=CUSTOM).input_ids
    assert batch["input_ids"][0].tolist() == learner_ids.tolist()


def test_written_rows_carry_the_given_system_turn_or_none():
    row = sharegpt_row("How many?", "<caption>x</caption>", ["a.png"], system_prompt=CUSTOM)
    assert row["messages"][0] == {"role": "system", "content": CUSTOM}
    bare = rl_row(data_source="s", question="How many?", image_png=b"", ground_truth="3",
                  equivalent_answers=[], extra_info={}, ability="a", system_prompt=None)
    assert [m["role"] for m in bare["prompt"]] == ["user"]
