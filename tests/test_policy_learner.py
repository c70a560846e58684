"""The policy learner: split-invariant updates, ZeRO-2/3 groups on Ray, weight export, SFT.

Reference updates run in-process on one rank (gloo world of 1); each Ray group (2 ranks) lives
for the module. Optimizer: lr 1e-3, eps 1e-6 (a larger eps keeps Adam from turning float noise
in near-zero gradients into full-size updates), no weight decay.
"""

from __future__ import annotations

import math
import socket

import pytest
import torch

from prism_ray.actors.policy import PolicyLearner
from prism_ray.algo import PolicyLoss, SFTAggregation
from prism_ray.config.phases import GRPO, GSPO
from prism_ray.config.run import ClusterConfig, RunConfig
from prism_ray.config.schema import LearnerConfig, OptimizerConfig
from prism_ray.learner.engine import lr_factor
from prism_ray.types import PolicySample

OPT = OptimizerConfig(lr=1e-3, eps=1e-6, weight_decay=0.0, grad_clip=1.0)
ATOL = 5e-6  # max |Δw| between split variants: 0.5% of the ~lr = 1e-3 step (measured ≤ 1.4e-6)
ACTOR_ENV = {"OMP_NUM_THREADS": "1"}
PLACEMENT_TIMEOUT_S = ClusterConfig().placement_timeout_s
SYSTEM_PROMPT = RunConfig().system_prompt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data(tiny_dataset):
    from prism_ray.data.readers import read_rl_parquet, read_sharegpt

    return (read_rl_parquet(tiny_dataset / "rlvr/train.parquet").records,
            read_sharegpt(tiny_dataset / "sft/teacher.json").records)


@pytest.fixture(scope="module")
def samples(data):
    """Six synthetic rollouts over three prompts (two per prompt), mixed advantages."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for i in range(6):
        prompt = data[0][i // 2]
        ids = torch.randint(100, 1500, (4 + 2 * i,), generator=gen).tolist()
        out.append(PolicySample(prompt.question, prompt.images, tuple(ids),
                                advantage=(1.0, -0.5, 0.8, -1.2, 0.3, -0.4)[i],
                                rollout_logprobs=tuple(-7.5 for _ in ids)))
    return out


def local_learner(path, budget: int, stage: int = 2) -> PolicyLearner:
    learner = PolicyLearner(rank=0, world_size=1, model_path=str(path),
                            learner_config=LearnerConfig(zero_stage=stage,
                                                         micro_batch_tokens=budget),
                            system_prompt=SYSTEM_PROMPT)
    learner.setup("127.0.0.1", free_port())
    learner.configure_optimizer(OPT, total_steps=4)
    return learner


@pytest.fixture(scope="module")
def reference(tiny_pair, samples):
    """One-rank, one-micro-batch results: initial weights, log-probs, GRPO-stepped weights."""
    learner = local_learner(tiny_pair[0], budget=100_000)
    initial = learner.full_state_dict()
    logprobs = learner.compute_logprobs(samples)
    metrics = learner.policy_step(samples, PolicyLoss.from_settings(GRPO()))
    assert metrics["micro_batches"] == 1
    return {"initial": initial, "logprobs": logprobs, "grpo": learner.full_state_dict()}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_lr_schedule_warmup_then_cosine():
    opt = OptimizerConfig(lr=1.0, schedule="cosine", warmup_steps=2)
    factors = [lr_factor(s, opt, total_steps=6) for s in range(6)]
    assert factors[:2] == [0.5, 1.0] and factors[2] == 1.0
    assert factors[3] == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert all(a >= b for a, b in zip(factors[1:], factors[2:]))


@pytest.mark.parametrize("algorithm", [GRPO(), GSPO()], ids=["token_mean", "seq_mean"])
def test_micro_batch_split_gives_the_same_update(tiny_pair, samples, reference, algorithm):
    """The same batch in one micro-batch and in ≥ 3 (token budget) updates weights equally."""
    whole = local_learner(tiny_pair[0], budget=100_000)
    split = local_learner(tiny_pair[0], budget=360)
    loss = PolicyLoss.from_settings(algorithm)
    m_whole, m_split = whole.policy_step(samples, loss), split.policy_step(samples, loss)
    assert m_split["micro_batches"] >= 3
    assert m_split["loss"] == pytest.approx(m_whole["loss"], abs=1e-6)
    after = split.full_state_dict()
    assert max_diff(whole.full_state_dict(), after) < ATOL
    assert max_diff(reference["initial"], after) > 1e-4  # it did learn
    if algorithm.name == "grpo":
        assert max_diff(reference["grpo"], after) < ATOL


# ── Ray groups (2 ranks) ─────────────────────────────────────────


def make_group(tiny_pair, stage: int, budget: int):
    from prism_ray.actors.policy_group import PolicyLearnerGroup
    from prism_ray.config.schema import Resources

    config = LearnerConfig(num_ranks=2, zero_stage=stage, micro_batch_tokens=budget,
                           resources=Resources(num_cpus=0.5))
    group = PolicyLearnerGroup(tiny_pair[0], config, 0, env_vars=ACTOR_ENV, call_timeout_s=300,
                               system_prompt=SYSTEM_PROMPT,
                               placement_timeout_s=PLACEMENT_TIMEOUT_S)
    group.configure_optimizer(OPT, total_steps=4)
    return group


@pytest.fixture(scope="module")
def zero2(ray_cluster, tiny_pair):
    group = make_group(tiny_pair, stage=2, budget=4096)
    yield group
    group.shutdown()


@pytest.fixture(scope="module")
def zero3(ray_cluster, tiny_pair):
    group = make_group(tiny_pair, stage=3, budget=64)  # one sample per micro-batch
    yield group
    group.shutdown()


def rank_states(group) -> list[dict]:
    import ray

    return ray.get([a.full_state_dict.remote() for a in group.actors])


@pytest.mark.ray
def test_zero2_step_across_ranks_matches_one_rank(zero2, samples, reference):
    assert zero2.backend == "gloo"
    metrics = zero2.policy_step(samples, PolicyLoss.from_settings(GRPO()))
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert metrics["tokens"] == sum(len(s.response_ids) for s in samples)
    assert metrics["rollout_mismatch_abs"] > 0 and metrics["entropy"] > 0
    first, second = rank_states(zero2)
    assert max_diff(first, second) == 0.0  # identical weights on every rank
    assert max_diff(reference["grpo"], first) < ATOL  # 1 rank × 1 micro == 2 ranks


@pytest.mark.ray
def test_zero3_logprobs_and_uneven_shards(zero3, samples, reference):
    logprobs = zero3.compute_logprobs(samples)  # 3 passes on each rank, results in order
    assert [len(r) for r in logprobs] == [len(s.response_ids) for s in samples]
    flat = torch.tensor([x for r in logprobs for x in r])
    ref = torch.tensor([x for r in reference["logprobs"] for x in r])
    assert torch.allclose(flat, ref, atol=1e-5)
    # 3 samples: rank 0 runs 2 micro-batches, rank 1 one + a padding pass; 1 sample: rank 1
    # has nothing and pads. Neither may hang (the group call times out instead).
    for subset in (samples[:3], samples[:1]):
        metrics = zero3.policy_step(subset, PolicyLoss.from_settings(GRPO()))
        assert metrics["tokens"] == sum(len(s.response_ids) for s in subset)
        assert metrics["micro_batches"] == math.ceil(len(subset) / 2)
    first, second = rank_states(zero3)
    assert max_diff(first, second) == 0.0


@pytest.mark.ray
def test_zero3_weight_buckets_equal_the_saved_checkpoint(zero3, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    from prism_ray.sync.plan import plan_buckets

    zero3.save_hf(tmp_path / "ckpt")
    buckets = zero3.full_state_dict(bucket_bytes=64 * 1024)  # many buckets, each gathered once
    manifest = zero3.weight_manifest()
    hf = AutoModelForImageTextToText.from_pretrained(tmp_path / "ckpt")
    named = dict(hf.named_parameters())
    assert list(buckets) == list(named) == list(manifest.names)
    assert manifest.total_bytes == sum(p.numel() * p.element_size() for p in named.values())
    assert len(plan_buckets(manifest, 64 * 1024)) > 1  # the sync planner takes the manifest
    for name, param in named.items():
        assert torch.equal(buckets[name], param.data), name
    saved = load_file(tmp_path / "ckpt" / "model.safetensors")
    assert all(torch.equal(saved[k], buckets[k]) for k in saved if k in buckets)
    assert (tmp_path / "ckpt" / "processor_config.json").exists()


@pytest.mark.ray
def test_zero3_sft_lowers_the_loss_on_a_repeated_batch(zero3, data):
    zero3.configure_optimizer(OPT, total_steps=4)  # a new phase: the engine is rebuilt
    demos = data[1][:4]
    losses = [zero3.sft_step(demos, SFTAggregation.TOKEN_MEAN, 512)["loss"] for _ in range(4)]
    assert losses[-1] < losses[0] - 0.1, losses


def test_an_alignment_step_moves_log_probs_along_the_advantage(tiny_pair, samples):
    """PRISM alignment's policy update (PPO-clip, ε 0.2, dual-clip 3): rollouts with a
    positive PRISM advantage become more likely, those with a negative one less likely."""
    from prism_ray.config.phases import AlignPhase

    learner = local_learner(tiny_pair[0], budget=100_000)
    before = learner.compute_logprobs(samples)
    learner.policy_step(samples, PolicyLoss.from_settings(AlignPhase()))
    after = learner.compute_logprobs(samples)
    for sample, old, new in zip(samples, before, after):
        change = sum(new) - sum(old)
        assert change * sample.advantage > 0, (sample.advantage, change)


def test_two_updates_per_step_change_the_weights_twice_and_the_ratio_moves(tiny_pair, samples):
    """``updates_per_step`` = 2: two optimizer steps on the two halves of the batch, old
    log-probs held from before the first; the second step sees a ratio away from 1."""
    from prism_ray.learner.updates import ppo_updates

    loss = PolicyLoss.from_settings(GRPO())
    fused = local_learner(tiny_pair[0], budget=100_000)
    initial = fused.full_state_dict()
    metrics = ppo_updates(fused, samples, loss, updates=2)
    assert metrics["updates"] == 2.0
    assert abs(metrics["ratio_mean_last"] - 1.0) > 1e-4, metrics
    by_hand = local_learner(tiny_pair[0], budget=100_000)
    old = by_hand.compute_logprobs(samples)
    first = by_hand.policy_step(samples[:3], loss, old_logprobs=old[:3])
    after_first = by_hand.full_state_dict()
    second = by_hand.policy_step(samples[3:], loss, old_logprobs=old[3:])
    after_second = by_hand.full_state_dict()
    assert first["ratio_mean"] == pytest.approx(1.0, abs=1e-6)  # same weights as the old
    assert second["ratio_mean"] == pytest.approx(metrics["ratio_mean_last"], abs=1e-6)
    assert max_diff(initial, after_first) > 1e-4 and max_diff(after_first, after_second) > 1e-4
    assert max_diff(fused.full_state_dict(), after_second) < ATOL


# ── zero-advantage samples ───────────────────────────────────────


def with_advantages(samples, advantages):
    from dataclasses import replace

    return [replace(s, advantage=a) for s, a in zip(samples, advantages, strict=True)]


@pytest.mark.parametrize("algorithm", [GRPO(), GSPO()], ids=["token_mean", "seq_mean"])
def test_zero_advantage_samples_are_left_out_with_the_same_update(tiny_pair, samples, algorithm,
                                                                  monkeypatch):
    """Two of six samples have advantage 0 (an all-equal group): leaving them out of the
    forward/backward gives the weights of the step that trains on all six, because the
    normaliser still counts them."""
    import prism_ray.actors.policy as policy_module

    batch = with_advantages(samples, (1.0, 0.0, 0.8, -1.2, 0.0, -0.4))
    loss = PolicyLoss.from_settings(algorithm)
    skipping = local_learner(tiny_pair[0], budget=360)
    m_skip = skipping.policy_step(batch, loss)
    monkeypatch.setattr(policy_module, "trains", lambda sample, loss: True)
    everything = local_learner(tiny_pair[0], budget=360)
    m_all = everything.policy_step(batch, loss)
    assert m_skip["skipped_zero_adv_samples"] == 2 and m_all["skipped_zero_adv_samples"] == 0
    assert m_skip["tokens"] == m_all["tokens"] - len(batch[1].response_ids) - len(
        batch[4].response_ids)
    # Adam's first step is nearly scale-free: the loss and the gradient norm are what would
    # show a normaliser that changed with the skipped samples.
    assert m_skip["loss"] == pytest.approx(m_all["loss"], abs=1e-7)
    assert m_skip["grad_norm"] == pytest.approx(m_all["grad_norm"], rel=1e-5)
    assert m_skip["tokens_per_s"] > 0 and 0.0 <= m_skip["padding_frac"] < 1.0
    assert "mfu" not in m_skip  # CPU: no peak to divide by
    after = skipping.full_state_dict()
    assert max_diff(everything.full_state_dict(), after) < ATOL  # micro-batches regroup
    assert max_diff(skipping.full_state_dict(), local_learner(
        tiny_pair[0], budget=360).full_state_dict()) > 1e-4  # it did learn


def test_an_all_zero_step_takes_no_optimizer_step_but_keeps_the_schedule(tiny_pair, samples):
    from prism_ray.learner.updates import ppo_updates

    zero = with_advantages(samples, (0.0,) * 6)
    opt = OptimizerConfig(lr=1e-3, eps=1e-6, weight_decay=0.1, warmup_steps=4)
    learner = local_learner(tiny_pair[0], budget=100_000)
    learner.configure_optimizer(opt, total_steps=4)
    before = learner.full_state_dict()
    metrics = learner.policy_step(zero, PolicyLoss.from_settings(GRPO()))
    assert metrics["optimizer_step_skipped"] == 1.0 and metrics["micro_batches"] == 0
    assert metrics["skipped_zero_adv_samples"] == 6 and metrics["lr"] == pytest.approx(2.5e-4)
    assert max_diff(before, learner.full_state_dict()) == 0.0  # weight decay did not run either
    # Two updates on a batch whose first half is all zero: one real step, at the third lr.
    half = with_advantages(samples, (0.0, 0.0, 0.0, -1.2, 0.3, -0.4))
    merged = ppo_updates(learner, half, PolicyLoss.from_settings(GRPO()), updates=2)
    assert merged["optimizer_step_skipped"] == 1.0 and merged["skipped_zero_adv_samples"] == 3
    assert merged["lr"] == pytest.approx((5e-4 + 7.5e-4) / 2)
    assert merged["tokens"] == sum(len(s.response_ids) for s in half[3:]) / 2
    assert max_diff(before, learner.full_state_dict()) > 1e-4
