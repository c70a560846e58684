"""Property tests of the config loader: any recipe text and any ``key=value`` override either
resolve or fail with a ``ConfigError`` (never another exception), and quickly."""

from __future__ import annotations

import math
import time

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from prism_ray.config import ConfigError, RunConfig, load_config
from prism_ray.config.kinds import PHASE_KINDS

# Keys a recipe might use (right or wrong), so generated trees reach deep into the schema.
KEYS = [
    "name", "seed", "output_dir", "system_prompt", "models", "policy", "discriminator", "kind",
    "path", "preset", "rollout", "backend", "num_workers", "resize_at", "sampling",
    "temperature", "top_p", "top_k", "vllm", "phases", "steps", "max_steps", "epochs",
    "batch_size", "optimizer", "disc_optimizer", "lr", "betas", "warmup_ratio", "warmup_steps",
    "algorithm", "clip_low", "clip_high", "clip_eps", "dual_clip", "kl_coef", "loss",
    "data", "paths", "size", "image_size", "cluster", "env_vars", "OMP_NUM_THREADS",
    "num_cpus", "num_gpus", "zero_stage", "enabled", "sources", "updates_per_step",
    "prompts_per_step", "samples_per_prompt", "max_prompts", "verifier", "timeout_s",
    "checkpoint", "every_steps", "tracking", "dynamic_sampling", "overlong", "<<", "",
]
WORDS = [*KEYS, *PHASE_KINDS, "grpo", "dapo", "gspo", "ppo_clip", "hf", "vllm", "tiny",
         "synthetic", "rl_parquet", "cosine", "${name}", "${nope}", "${seed}", "???"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(WORDS), st.text(max_size=8),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=6), st.integers(-3, 3))
trees = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(keys, children, max_size=5)),
    max_leaves=25,
)
# Text that looks like YAML: its punctuation, indentation, the schema's words and some noise.
yamlish = st.lists(
    st.one_of(st.sampled_from([": ", "- ", "\n", "  ", "[", "]", "{", "}", ", ", "&a ", "*a",
                               "!!", "|", ">", "'", '"', "#", "%", "@", "`", "?", "---",
                               "...", ".nan", ".inf", "0x_", "1e-6", "true", "null", "=",
                               "\t", "\\", "\ufeff", "<<: "]),
              st.sampled_from(WORDS), st.text(max_size=4)),
    max_size=40,
).map("".join)
recipe_texts = st.one_of(
    yamlish,
    trees.map(lambda tree: yaml.safe_dump(tree, allow_unicode=True, sort_keys=False)),
    st.builds(lambda tree, noise: yaml.safe_dump({"phases": tree}, sort_keys=False) + noise,
              trees, yamlish),
)
key_paths = st.lists(
    st.one_of(st.sampled_from(KEYS), st.sampled_from(list(PHASE_KINDS)),
              st.integers(-2, 7).map(str), st.text(max_size=4)),
    min_size=0, max_size=5,
).map(".".join)
values = st.one_of(
    yamlish, st.sampled_from(WORDS), st.text(max_size=10),
    trees.map(lambda tree: yaml.safe_dump(tree, default_flow_style=True, width=10**6).strip()),
)
overrides = st.one_of(st.text(max_size=30), st.builds(lambda k, v: f"{k}={v}", key_paths, values))

PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
QUICK_S = 2.0  # one load, on a busy 2-core machine


def _load(*args, **kwargs) -> None:
    start = time.perf_counter()
    try:
        config = load_config(*args, **kwargs)
    except ConfigError as error:
        assert str(error).strip(), "an empty error message"
        assert "Traceback" not in str(error)
    else:
        assert isinstance(config, RunConfig)
        _assert_finite(config.model_dump())
    assert time.perf_counter() - start < QUICK_S


def _assert_finite(node) -> None:
    if isinstance(node, float):
        assert math.isfinite(node)
    elif isinstance(node, dict):
        for value in node.values():
            _assert_finite(value)
    elif isinstance(node, list | tuple):
        for value in node:
            _assert_finite(value)


@pytest.fixture(scope="module")
def recipe_path(tmp_path_factory):
    return tmp_path_factory.mktemp("recipes") / "recipe.yaml"


@PROPERTY
@given(text=recipe_texts)
def test_any_recipe_text_resolves_or_is_a_config_error(recipe_path, text):
    recipe_path.write_text(text, encoding="utf-8")
    _load(recipe_path)


@PROPERTY
@given(data=st.binary(max_size=200))
def test_any_recipe_bytes_resolve_or_are_a_config_error(recipe_path, data):
    recipe_path.write_bytes(data)
    _load(recipe_path)


@PROPERTY
@given(texts=st.lists(overrides, max_size=4))
@example(texts=["000=${0}", "000="])  # a key whose value is an interpolation that fails
def test_any_overrides_resolve_or_are_a_config_error(texts):
    _load(None, texts)


@PROPERTY
@given(text=recipe_texts, texts=st.lists(overrides, max_size=3))
@example(text="name: []\n", texts=["name.A="])  # a key stepping into a list by a name
@example(text="name: [1]\n", texts=["name.3=2"])  # ... or past its end
@example(text="phases:\n- kind: sft\n  data: [{kind: synthetic}]\n",
         texts=["phases.0.data.z=1"])  # ... or a list inside a list's item
def test_any_recipe_with_overrides_resolves_or_is_a_config_error(recipe_path, text, texts):
    recipe_path.write_text(text, encoding="utf-8")
    _load(recipe_path, texts)
