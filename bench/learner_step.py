"""Policy learner steps on synthetic rollouts: chunked vs full-logits log-prob path.

    python bench/learner_step.py --shape tiny [--steps 4]                      # CPU
    python bench/learner_step.py --shape qwen3vl-2b-shape --dtype bfloat16 \\
        --gradient-checkpointing --samples 64 --response-tokens 256            # one GPU

Builds a random-init checkpoint of the shape (``models.tiny`` presets), one DeepSpeed rank of
the real ``PolicyLearner`` and GRPO steps on synthetic samples (one image per prompt, random
response ids, advantages ±1 with ``--zero-adv`` of the groups all zero). Each path runs
``--steps`` timed steps after one warm-up, the two paths alternating so that load on a shared
machine falls on both; the table gives medians. "full" is the path before chunking: the
model's [B, T, V] logits and an fp32 log-softmax of the response rows.

Peak memory: on a GPU ``torch.cuda.max_memory_allocated`` over the timed steps; on CPU, where
torch keeps no allocator statistics, the largest single tensor any op allocated during one
extra step (counted with a dispatch mode), which is where the two paths differ.
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import tempfile
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from prism_ray.actors.policy import PolicyLearner
from prism_ray.algo import PolicyLoss
from prism_ray.config.phases import GRPO
from prism_ray.config.run import RunConfig
from prism_ray.config.schema import LearnerConfig, OptimizerConfig
from prism_ray.models.batching import Batch, continuation_logits, continuation_logprobs
from prism_ray.types import PolicySample

SYSTEM_PROMPT = RunConfig().system_prompt


class FullLogitsLearner(PolicyLearner):
    """The learner with the log-prob path switchable back to full logits."""

    full = False

    def _scores(self, batch: Batch, with_entropy: bool = False):
        if not self.full:
            return super()._scores(batch, with_entropy)
        logits = self._logits(batch)
        entropy = None
        if with_entropy:
            with torch.no_grad():
                log_p = torch.log_softmax(continuation_logits(logits, batch).float(), -1)
                entropy = -(log_p.exp() * log_p).sum(-1)
        return continuation_logprobs(logits, batch), entropy


# Buffers made by factory ops are left out: DeepSpeed's ZeRO-2 reduce bucket (5e8 elements,
# 1.9 GiB in fp32) would be the largest tensor of both paths and hide the logits.
FACTORIES = {"empty", "empty_strided", "empty_like", "zeros", "zeros_like", "ones", "full",
             "new_empty", "new_empty_strided", "new_zeros", "new_ones", "new_full"}


class LargestComputed(TorchDispatchMode):
    """Bytes of the largest tensor an op (not a factory) returns inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.largest, self.op = 0, ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket.__name__ in FACTORIES:
            return out
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() * t.element_size() > self.largest:
                self.largest, self.op = t.numel() * t.element_size(), str(func)
        return out


def checkpoint(shape: str, out: Path, vocab: int | None) -> Path:
    from dataclasses import replace

    from prism_ray.models.tiny import PRESETS, create_tiny_checkpoint, default_corpus
    from prism_ray.models.tokenizer import train_tokenizer

    # A small tokenizer serves every shape: prompts only; response ids are drawn directly.
    tokenizer = train_tokenizer(default_corpus(0, SYSTEM_PROMPT, n=400),
                                vocab_size=PRESETS["policy"].vocab_size)
    preset = "policy" if shape == "tiny" else shape  # the embedded default policy is "tiny"
    if vocab:  # a bench-only preset: this shape with another vocabulary
        PRESETS[f"{preset}-vocab{vocab}"] = replace(PRESETS[preset], vocab_size=vocab)
        preset = f"{preset}-vocab{vocab}"
    return create_tiny_checkpoint(out / shape, preset, seed=0, tokenizer=tokenizer)


def synthetic_samples(args, vocab: int, image_token: int) -> list[PolicySample]:
    from prism_ray.data.scenes import render_png, sample_scene

    rng = random.Random(0)
    groups = max(1, args.samples // args.group)
    out = []
    for g in range(groups):
        image = render_png(sample_scene(rng), args.image_side)
        question = f"Prompt {g}: which shape is red? " + "Look closely. " * args.prompt_words
        zero = g < round(args.zero_adv * groups)
        for _ in range(args.group):
            n = rng.randint(args.response_tokens // 2, args.response_tokens)
            ids = tuple(rng.choice(range(300, vocab)) for _ in range(n))
            assert image_token not in ids
            out.append(PolicySample(question, (image,), ids,
                                    advantage=0.0 if zero else rng.choice((-1.0, 1.0))))
    return out


def run(args) -> list[tuple]:
    with tempfile.TemporaryDirectory() as tmp:
        path = checkpoint(args.shape, Path(tmp), args.vocab)
        config = LearnerConfig(zero_stage=args.zero_stage, dtype=args.dtype,
                               micro_batch_tokens=args.micro_batch_tokens,
                               gradient_checkpointing=args.gradient_checkpointing,
                               logprob_chunk_tokens=args.chunk_tokens)
        learner = FullLogitsLearner(0, 1, str(path), config, system_prompt=SYSTEM_PROMPT)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        learner.setup("127.0.0.1", port)
        learner.configure_optimizer(OptimizerConfig(lr=1e-6), total_steps=10_000)
        text = learner._unwrapped().config.text_config
        samples = synthetic_samples(args, text.vocab_size, learner.spec.image_token_id)
        loss = PolicyLoss.from_settings(GRPO())
        timed: dict[str, list[dict]] = {"chunked": [], "full": []}
        peak: dict[str, float] = {}
        cuda = torch.cuda.is_available()
        for full in (False, True):  # warm-up, one step each
            learner.full = full
            learner.policy_step(samples, loss)
        for _ in range(args.steps):
            for name in timed:
                learner.full = name == "full"
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                timed[name].append(learner.policy_step(samples, loss))
                if cuda:
                    peak[name] = max(peak.get(name, 0.0), torch.cuda.max_memory_allocated())
        if args.profile:
            learner.full = False
            print_profile(lambda: learner.policy_step(samples, loss), args.profile, cuda)
        if not cuda:
            for name in timed:
                learner.full = name == "full"
                with LargestComputed() as counter:
                    learner.policy_step(samples, loss)
                peak[name] = float(counter.largest)
                print(f"{name}: largest computed tensor {counter.largest / 2**20:.1f} MiB "
                      f"({counter.op})")
        rows = []
        for name, steps in timed.items():
            median = {k: statistics.median(m[k] for m in steps)
                      for k in ("tokens_per_s", "padding_frac", "tokens")}
            mfu = statistics.median(m["mfu"] for m in steps) if "mfu" in steps[0] else None
            rows.append((name, median["tokens_per_s"], mfu, peak[name] / 2**20,
                         median["padding_frac"], steps[0]["skipped_zero_adv_samples"],
                         median["tokens"]))
        return rows


def print_profile(step, rows: int, cuda: bool) -> None:
    """One ``step()`` under torch.profiler: the operators that took the most time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        step()
        if cuda:
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="tiny", choices=("tiny", "qwen3vl-2b-shape"))
    parser.add_argument("--vocab", type=int, default=None,
                        help="override the shape's vocabulary (e.g. 151936 on the tiny shape)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--group", type=int, default=8, help="samples per prompt")
    parser.add_argument("--response-tokens", type=int, default=64, help="max; min is half")
    parser.add_argument("--prompt-words", type=int, default=4)
    parser.add_argument("--image-side", type=int, default=64)
    parser.add_argument("--zero-adv", type=float, default=0.0,
                        help="fraction of groups whose advantages are all zero")
    parser.add_argument("--micro-batch-tokens", type=int, default=4096)
    parser.add_argument("--chunk-tokens", type=int, default=1024)
    parser.add_argument("--zero-stage", type=int, default=2)
    parser.add_argument("--dtype", default=None, help="default: float32 (tiny), bfloat16 (2B)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS",
                        help="after the timed steps, profile one chunked step and print the "
                             "ROWS operators that took the most device (or CPU) time")
    args = parser.parse_args()
    if args.shape == "tiny":
        args.dtype = args.dtype or "float32"
    else:
        args.dtype = args.dtype or "bfloat16"
    rows = run(args)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    memory = "peak alloc MiB" if torch.cuda.is_available() else "largest computed tensor MiB"
    vocab = f" (vocab {args.vocab})" if args.vocab else ""
    print(f"\nshape {args.shape}{vocab}, {args.dtype}, {device}, {args.samples} samples, "
          f"ZeRO-{args.zero_stage}, chunk {args.chunk_tokens}, medians of {args.steps} steps\n")
    print(f"| path | tokens/s | MFU | {memory} | padding | skipped samples | response tokens |")
    print("|---|---|---|---|---|---|---|")
    for name, tps, mfu, mem, pad, skipped, tokens in rows:
        mfu_text = f"{mfu:.1%}" if mfu is not None else "–"
        print(f"| {name} | {tps:,.0f} | {mfu_text} | {mem:,.1f} | {pad:.1%} | {skipped:.0f} "
              f"| {tokens:,.0f} |")
    (_, c_tps, _, c_mem, *_), (_, f_tps, _, f_mem, *_) = rows
    print(f"| chunked / full | {c_tps / f_tps:.2f}× | | {c_mem / f_mem:.2f}× | | | |")


if __name__ == "__main__":
    main()
