"""The HF rollout engine alone (no Ray): format, determinism, log-probs, the vision-token ban,
exact weight loading (whole, bucketed, packed)."""

from __future__ import annotations

import pytest
import torch

from prism_ray.actors.rollout import RolloutWorker
from prism_ray.config.run import RunConfig
from prism_ray.config.schema import RolloutConfig
from prism_ray.data.readers import read_rl_parquet
from prism_ray.data.synthetic import synthesize
from prism_ray.models.inputs import encode_prompt, vision_token_ids
from prism_ray.models.tiny import PRESETS, build_tiny_model
from prism_ray.models.tokenizer import SPECIAL_TOKENS
from prism_ray.rollout.base import END_OF_TURN
from prism_ray.rollout.hf import HFEngine
from prism_ray.types import SamplingParams

# Measured max |Δ| between generate's per-step log-probs and an unpadded teacher-forced
# forward: 9.5e-7 (float32, CPU). The bound leaves room for other BLAS builds.
TEACHER_FORCED_TOL = 1e-5
MAX_TOKENS = 12
SYSTEM_PROMPT = RunConfig().system_prompt  # the schema's default


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    out = tmp_path_factory.mktemp("rl_data")
    synthesize(out, size="tiny")
    return read_rl_parquet(out / "align" / "train.parquet").records[:3]


@pytest.fixture(scope="module")
def engine(tiny_pair):
    return HFEngine(tiny_pair[0], seed=0, system_prompt=SYSTEM_PROMPT)


def update_model(engine: HFEngine, seed: int = 7):
    """Another tiny policy (other random weights) with the engine's vocabulary."""
    ids = {t: engine.tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return build_tiny_model(PRESETS["policy"], ids, seed=seed)


def biased(engine: HFEngine, token_ids: list[int], bias: float = 40.0):
    """A forward hook on the LM head: these tokens' logits get ``bias`` (a model that
    "wants" them). Returns the hook handle; remove it after use."""
    cols = torch.tensor(token_ids)

    def hook(module, inputs, output):
        output = output.clone()
        output[..., cols] += bias
        return output

    return engine.model.lm_head.register_forward_hook(hook)


def test_batch_encoding_is_the_canonical_one(engine, prompts):
    batch = engine._encode_batch(prompts)
    for row, prompt in enumerate(prompts):
        ids = batch["input_ids"][row][batch["attention_mask"][row].bool()]
        assert torch.equal(ids, encode_prompt(engine.processor, prompt.question, prompt.images,
                                              system_prompt=SYSTEM_PROMPT).input_ids)
    assert (batch["attention_mask"][:, -1] == 1).all()  # left padding


def test_generate_shapes_and_format(engine, prompts):
    groups = engine.generate(prompts, SamplingParams(n=2, max_tokens=MAX_TOKENS, seed=3))
    assert [g[0].prompt_uid for g in groups] == [p.uid for p in prompts]
    for group in groups:
        assert [r.sample_index for r in group] == [0, 1]
        for r in group:
            assert 1 <= len(r.token_ids) <= MAX_TOKENS
            assert len(r.logprobs) == len(r.token_ids)
            assert all(lp <= 0 for lp in r.logprobs)
            stopped = r.token_ids[-1] == engine.stop_id
            assert r.finish_reason == ("stop" if stopped else "length")
            assert stopped or len(r.token_ids) == MAX_TOKENS
            assert engine.stop_id not in r.token_ids[:-1]
            assert r.text == engine.tokenizer.decode(r.token_ids, skip_special_tokens=True)
            assert r.weight_version == 0


def test_end_of_turn_is_kept_when_sampled(engine, prompts):
    handle = biased(engine, [engine.stop_id])
    try:
        groups = engine.generate(prompts[:1], SamplingParams(n=2, max_tokens=MAX_TOKENS, seed=0))
    finally:
        handle.remove()
    for r in groups[0]:
        assert r.token_ids == (engine.tokenizer.convert_tokens_to_ids(END_OF_TURN),)
        assert r.finish_reason == "stop" and r.text == ""


def test_seeded_generation_is_reproducible_and_leaves_global_rng(engine, prompts):
    params = SamplingParams(n=2, max_tokens=8, seed=42)
    state = torch.random.get_rng_state()
    first = engine.generate(prompts[:2], params)
    assert torch.equal(state, torch.random.get_rng_state())
    assert engine.generate(prompts[:2], params) == first
    other = engine.generate(prompts[:2], SamplingParams(n=2, max_tokens=8, seed=43))
    assert [r.token_ids for g in other for r in g] != [r.token_ids for g in first for r in g]


def test_logprobs_equal_teacher_forced(engine, prompts):
    groups = engine.generate(prompts, SamplingParams(n=2, max_tokens=MAX_TOKENS, seed=5))
    flat = [r for g in groups for r in g]
    forced = engine.logprobs_of([p for p in prompts for _ in range(2)],
                                [r.token_ids for r in flat])
    worst = max(abs(a - b) for r, f in zip(flat, forced) for a, b in zip(r.logprobs, f))
    assert worst < TEACHER_FORCED_TOL


def test_vision_placeholders_are_never_sampled(engine, prompts):
    banned = vision_token_ids(engine.tokenizer)
    assert len(banned) >= 3
    handle = biased(engine, banned)
    try:
        # The biased model puts nearly all its raw mass on the placeholders ...
        enc = encode_prompt(engine.processor, prompts[0].question, prompts[0].images,
                            system_prompt=SYSTEM_PROMPT)
        with torch.no_grad():
            logits = engine.model(input_ids=enc.input_ids[None],
                                  mm_token_type_ids=enc.mm_token_type_ids[None],
                                  pixel_values=enc.pixel_values,
                                  image_grid_thw=enc.image_grid_thw).logits[0, -1]
        assert torch.softmax(logits, -1)[banned].sum() > 0.99
        groups = engine.generate(prompts, SamplingParams(n=3, max_tokens=8, seed=1))
    finally:
        handle.remove()
    sampled = [t for g in groups for r in g for t in r.token_ids]
    assert not set(sampled) & set(banned)  # ... and never samples one
    # The reported log-probs are the raw model's: the tokens drawn were improbable under it.
    assert max(lp for g in groups for r in g for lp in r.logprobs) < -10


def test_load_weights_exact_in_buckets_with_version(tiny_pair, prompts):
    engine = HFEngine(tiny_pair[0], system_prompt=SYSTEM_PROMPT)
    source = update_model(engine)
    named = list(source.named_parameters())
    thirds = [named[i::3] for i in range(3)]  # interleaved buckets: any split must work
    for i, bucket in enumerate(thirds):
        engine.load_weights(bucket, version=4, last=i == 2)
        assert engine.weight_version == (4 if i == 2 else 0)
    target = dict(engine.model.named_parameters())
    for name, tensor in named:
        assert torch.equal(target[name], tensor), name
    rollouts = engine.generate(prompts[:1], SamplingParams(n=1, max_tokens=4, seed=0))
    assert rollouts[0][0].weight_version == 4


def test_partial_load_touches_only_given_tensors(tiny_pair):
    engine = HFEngine(tiny_pair[0], system_prompt=SYSTEM_PROMPT)
    before = {n: p.clone() for n, p in engine.model.named_parameters()}
    name = "model.language_model.layers.0.mlp.down_proj.weight"
    new = torch.randn_like(before[name])
    engine.load_weights([(name, new)], version=1)
    for n, p in engine.model.named_parameters():
        assert torch.equal(p, new if n == name else before[n]), n
    with pytest.raises(KeyError, match="not_a_weight"):
        engine.load_weights([("not_a_weight", new)], version=2)
    with pytest.raises(ValueError, match="shape"):
        engine.load_weights([(name, new.T)], version=2)


def test_worker_bucketed_load_is_bit_exact(tiny_pair, prompts):
    config = RolloutConfig()
    # The actor class, used in-process.
    worker = RolloutWorker(tiny_pair[0], config.backend, config.sampling, config.vllm, seed=0,
                           system_prompt=SYSTEM_PROMPT)
    named = list(update_model(worker.engine, seed=9).named_parameters())
    half = len(named) // 2
    assert worker.load_weights(named[:half], version=2, last=False) == 0
    with pytest.raises(RuntimeError, match="weight sync"):
        worker.generate(prompts[:1])
    assert worker.load_weights(named[half:], version=2, last=True) == 2
    target = dict(worker.engine.model.named_parameters())
    assert all(torch.equal(target[n], t) for n, t in named)
    assert worker.weight_version() == 2
