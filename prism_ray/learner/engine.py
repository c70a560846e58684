"""A DeepSpeed ZeRO engine from ``LearnerConfig`` + ``OptimizerConfig``.

On CPU nothing is compiled: the optimizer is torch's AdamW (DeepSpeed's FusedAdam builds a C++
op, ≈ 2 min), optimizer offload keeps torch's AdamW too (DeepSpeed would insist on its CPU Adam,
another ≈ 2.5 min build), and the shared-memory all-reduce op is switched off before DeepSpeed
starts its communication backend (``disable_shm_comm_op``). On GPU: NCCL and torch's fused AdamW
(a CUDA kernel shipped with torch, so no build there either).

Gradient accumulation is driven by the caller (``set_gradient_accumulation_boundary``): the
number of micro-batches varies per step, and losses arrive already normalised to the global
batch (``learner.microbatch``), so DeepSpeed's own 1/gas scaling is never applied.
"""

from __future__ import annotations

import math
import os

import torch

from prism_ray.config.schema import Dtype, LearnerConfig, OptimizerConfig, Schedule

TORCH_DTYPES = {Dtype.float32: torch.float32, Dtype.bfloat16: torch.bfloat16,
                Dtype.float16: torch.float16}


def disable_shm_comm_op() -> None:
    """Keep DeepSpeed from building its shared-memory all-reduce op on CPU (≈ 1 min compile).

    DeepSpeed's torch backend builds the op whenever ``deepspeed.ops.__compatible_ops__`` says
    it can; that dict is computed once and cached, and edits to it persist. The op only serves
    ``inference_all_reduce`` (tensor-parallel inference); training collectives go through gloo.
    """
    import deepspeed

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def init_distributed(rank: int, world_size: int, master_addr: str, port: int) -> str:
    """torch.distributed through DeepSpeed: gloo on CPU, NCCL on GPU. Returns the backend."""
    import deepspeed

    on_gpu = torch.cuda.is_available()
    if on_gpu:
        torch.cuda.set_device(0)  # Ray shows each learner only its own GPU
    else:
        disable_shm_comm_op()
    os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK="0")
    backend = "nccl" if on_gpu else "gloo"
    deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False,
                               rank=rank, world_size=world_size)
    return backend


def warmup_steps(optimizer: OptimizerConfig, total_steps: int) -> int:
    if optimizer.warmup_steps:
        return min(optimizer.warmup_steps, total_steps)
    return math.ceil(optimizer.warmup_ratio * total_steps)


def lr_factor(step: int, optimizer: OptimizerConfig, total_steps: int) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based).

    Linear warm-up reaches the peak at the last warm-up step, so the first step already
    learns (a factor of 0 there would waste a step); cosine then decays towards 0 at the end.
    """
    warmup = warmup_steps(optimizer, total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if optimizer.schedule is Schedule.constant:
        return 1.0
    progress = (step - warmup) / max(total_steps - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: decaying norm gains and biases pulls them to 0 for no benefit."""
    decay, plain = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else plain).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": plain, "weight_decay": 0.0}]


def deepspeed_config(learner: LearnerConfig, optimizer: OptimizerConfig, world_size: int) -> dict:
    zero: dict = {"stage": learner.zero_stage}
    if learner.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    return {
        # One "micro-batch" per backward as DeepSpeed counts them; the real accumulation is
        # caller-driven, so these only keep DeepSpeed's batch-size arithmetic consistent.
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "train_batch_size": world_size,
        "gradient_clipping": optimizer.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": learner.dtype is Dtype.bfloat16},
        "fp16": {"enabled": learner.dtype is Dtype.float16},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


def build_engine(
    model: torch.nn.Module,
    learner: LearnerConfig,
    optimizer: OptimizerConfig,
    total_steps: int,
    world_size: int,
):
    """Wrap ``model`` (already on its device, in the learner dtype) in a DeepSpeed engine with
    a fresh AdamW and LambdaLR schedule. DeepSpeed steps the schedule once per optimizer step."""
    import deepspeed

    if learner.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    fused = torch.cuda.is_available() and not learner.offload_optimizer
    adamw = torch.optim.AdamW(param_groups(model, optimizer.weight_decay), lr=optimizer.lr,
                              betas=optimizer.betas, eps=optimizer.eps, fused=fused)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        adamw, lambda step: lr_factor(step, optimizer, total_steps))
    engine, *_ = deepspeed.initialize(
        model=model, optimizer=adamw, lr_scheduler=schedule,
        config=deepspeed_config(learner, optimizer, world_size),
    )
    return engine


STATE_TAG = "state"


def save_engine_state(engine, directory: str, rank: int) -> None:
    """Weights, optimizer, schedule and this rank's RNG streams (a collective on all ranks).

    These are DeepSpeed's own shards (pickled); they are read back only by a resume of the
    same run. Exported models, the files meant to be shared, are safetensors.
    """
    rng = {"torch": torch.get_rng_state(), "python": __import__("random").getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    engine.save_checkpoint(directory, tag=STATE_TAG, client_state={f"rng_rank{rank}": rng})


def load_engine_state(engine, directory: str, rank: int) -> None:
    """Restore what ``save_engine_state`` wrote; the engine must be built for the same phase."""
    _, client = engine.load_checkpoint(directory, tag=STATE_TAG, load_optimizer_states=True,
                                       load_lr_scheduler_states=True)
    if client is None:
        raise RuntimeError(f"no learner state under {directory} (tag {STATE_TAG!r})")
    rng = client.get(f"rng_rank{rank}")
    if rng is not None:
        torch.set_rng_state(rng["torch"])
        __import__("random").setstate(rng["python"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
