"""Rollout pool against bare vLLM at the same batch, in one run on one GPU.

    python bench/rollout_pool.py                   # the published 2B shape, 8 prompts × 8
    python bench/rollout_pool.py --checkpoint DIR  # reuse (or build once into) DIR

First the pool as a run uses it: a ``RolloutPool`` of one vLLM worker (Ray actor, CUDA
graphs, the recipes' settings), ``--calls`` timed calls of ``--prompts`` prompts × ``--n``
samples after a warm-up call. Then, in this process, bare vLLM on the same checkpoint,
prompts, images and engine settings: ``LLM.generate`` with plain sampling parameters (the
sampled token's log-prob requested too, as the pool returns it), and once more with the
vocabulary-sized ``allowed_token_ids`` list the worker used to ban the image placeholders.
Every engine's start time is reported (the second start finds vLLM's compile cache on disk).
A random-init model rarely stops early, so every call generates about prompts × n ×
max_tokens tokens; the table counts the tokens actually generated.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL = 0.95


def build_checkpoint(directory: Path, shape: str) -> Path:
    from prism_ray.models.tiny import create_tiny_checkpoint

    if (directory / "config.json").exists():
        return directory
    return create_tiny_checkpoint(directory, "policy" if shape == "tiny" else shape, seed=0)


def timed_calls(call, calls: int) -> tuple[float, int]:
    """Median seconds per call and tokens per call, after one warm-up call."""
    call()
    seconds, tokens = [], []
    for _ in range(calls):
        started = time.perf_counter()
        tokens.append(call())
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), int(statistics.median(tokens))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="qwen3vl-2b-shape", choices=("tiny", "qwen3vl-2b-shape"))
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    args = parser.parse_args()

    import ray
    import torch

    if not torch.cuda.is_available():
        sys.exit("bench/rollout_pool.py: needs a CUDA GPU and vllm")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from prism_ray.actors.rollout_pool import RolloutPool
    from prism_ray.config.run import RunConfig
    from prism_ray.config.schema import Resources, RolloutConfig, VllmOptions
    from prism_ray.data.readers import read_rl_parquet
    from prism_ray.data.synthetic import synthesize
    from prism_ray.types import SamplingParams

    system_prompt = RunConfig().system_prompt
    tmp = tempfile.TemporaryDirectory()
    path = build_checkpoint(args.checkpoint or Path(tmp.name) / "policy", args.shape)
    synthesize(Path(tmp.name) / "data", size="tiny", image_size=224)
    prompts = read_rl_parquet(Path(tmp.name) / "data" / "rlvr" / "train.parquet").records
    prompts = prompts[: args.prompts]
    options = VllmOptions(gpu_memory_utilization=args.gpu_memory_utilization,
                          enforce_eager=False, max_model_len=2048)
    params = SamplingParams(n=args.n, temperature=1.0, max_tokens=args.max_tokens, seed=0)
    rows, starts = [], []

    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter()
    pool = RolloutPool(RolloutConfig(backend="vllm", num_workers=1, vllm=options,
                                     resources=Resources(num_cpus=2, num_gpus=1)),
                       str(path), seed=0, system_prompt=system_prompt, placement_timeout_s=900)
    starts.append(("pool (Ray actor + engine)", time.perf_counter() - started))

    def pool_call() -> int:
        return sum(len(r.token_ids) for g in pool.generate(prompts, params) for r in g)

    rows.append(("rollout pool (1 vLLM worker)", *timed_calls(pool_call, args.calls)))
    pool.shutdown()
    ray.shutdown()

    from vllm import LLM
    from vllm import SamplingParams as VllmSamplingParams

    from prism_ray.models.inputs import decode_images, prompt_text, vision_token_ids
    from prism_ray.models.processor import load_processor
    from prism_ray.rollout.base import END_OF_TURN

    processor = load_processor(path)
    tokenizer = processor.tokenizer
    requests = [{"prompt": prompt_text(processor, p.question, len(p.images),
                                       system_prompt=system_prompt),
                 "multi_modal_data": {"image": decode_images(p.images)}} for p in prompts]
    started = time.perf_counter()
    llm = LLM(model=str(path), seed=0, dtype="auto",
              gpu_memory_utilization=options.gpu_memory_utilization,
              enforce_eager=False, max_model_len=options.max_model_len,
              logprobs_mode="raw_logprobs", limit_mm_per_prompt={"image": 8, "video": 0})
    starts.append(("bare vLLM (compile cache warm)", time.perf_counter() - started))
    stop = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    banned = set(vision_token_ids(tokenizer))
    allowed = [i for i in range(len(tokenizer)) if i not in banned]

    def bare_call(**extra) -> int:
        sampling = [VllmSamplingParams(n=args.n, temperature=1.0, max_tokens=args.max_tokens,
                                       seed=i * args.n, logprobs=0, stop_token_ids=[stop],
                                       detokenize=False, **extra)
                    for i in range(len(requests))]
        outputs = llm.generate(requests, sampling, use_tqdm=False)
        return sum(len(s.token_ids) for out in outputs for s in out.outputs)

    rows.append(("bare vLLM LLM.generate", *timed_calls(bare_call, args.calls)))
    rows.append(("bare vLLM + allowed_token_ids",
                 *timed_calls(lambda: bare_call(allowed_token_ids=allowed), args.calls)))

    bare = rows[1][2] / rows[1][1]
    print(f"\nrollout, {args.shape}, {args.prompts} prompts × {args.n} samples, ≤ "
          f"{args.max_tokens} new tokens, CUDA graphs, {torch.cuda.get_device_name()}, "
          f"median of {args.calls} calls after a warm-up")
    print(f"{'path':34s} {'s/call':>7s} {'tokens':>7s} {'tokens/s':>9s} {'vs bare':>8s} "
          f"{'goal':>5s}")
    for label, seconds, tokens in rows:
        rate = tokens / seconds
        print(f"{label:34s} {seconds:7.2f} {tokens:7d} {rate:9.0f} {rate / bare:7.2f}× "
              f"{GOAL:5.2f}")
    for label, seconds in starts:
        print(f"engine start, {label}: {seconds:.0f} s")
    tmp.cleanup()


if __name__ == "__main__":
    main()
