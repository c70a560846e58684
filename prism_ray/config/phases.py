"""Phases of a run: a discriminated union on ``kind``; RLVR algorithms a union on ``name``.

Defaults are the published settings (PRISM_SPEC §3–5). Each phase owns its data, steps,
batch sizes and optimizer; optimizer defaults depend on the phase kind and algorithm.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from prism_ray.config.schema import (
    DataSource,
    Frozen,
    LossAggregation,
    OptimizerConfig,
    RLParquetData,
    SamplingConfig,
    Schedule,
    ShareGPTData,
    SyntheticData,
    WarmupJsonlData,
    tagged_union,
)


class PhaseBase(Frozen):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")
    enabled: bool = True
    init_from: str | None = Field(
        None, description="checkpoint directory to start from instead of the previous phase's"
    )
    seed: int | None = Field(None, description="per-phase seed; the run seed when unset")


def _default_optimizer(data: dict, optimizer: OptimizerConfig) -> dict:
    """Fill ``optimizer`` with a phase's published default when the user gave none.

    Partial user overrides (e.g. only ``lr``) are merged over that default, not over the
    generic OptimizerConfig, so a recipe can change one knob and keep the rest.
    """
    if not isinstance(data, dict):
        return data
    given = data.get("optimizer")
    if given is None:
        return {**data, "optimizer": optimizer}
    if isinstance(given, dict):
        return {**data, "optimizer": {**optimizer.model_dump(), **given}}
    return data


# ───────────────────────────── SFT ─────────────────────────────

_SFT_OPTIMIZER = OptimizerConfig(lr=1e-5, schedule=Schedule.cosine, warmup_ratio=0.1)


class SFTPhase(PhaseBase):
    kind: Literal["sft"] = "sft"
    name: str = "sft"
    data: tuple[DataSource, ...] = (SyntheticData(),)
    sources: tuple[Literal["teacher", "public"], ...] = Field(
        ("teacher", "public"), description="synthetic data only: which demonstration sources"
    )
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop early after this many steps")
    batch_size: int = Field(16, ge=1, description="sequences per optimizer step")
    loss_aggregation: Literal["token_mean", "seq_mean"] = "token_mean"
    max_seq_tokens: int = Field(1024, ge=16)
    optimizer: OptimizerConfig = _SFT_OPTIMIZER

    @model_validator(mode="before")
    @classmethod
    def _optimizer_default(cls, data):
        return _default_optimizer(data, _SFT_OPTIMIZER)


# ───────────────────────────── discriminator warm-up ─────────────────────────────

_WARMUP_OPTIMIZER = OptimizerConfig(lr=1e-5, schedule=Schedule.cosine, warmup_ratio=0.1)


class DiscWarmupPhase(PhaseBase):
    kind: Literal["disc_warmup"] = "disc_warmup"
    name: str = "disc_warmup"
    data: tuple[DataSource, ...] = (SyntheticData(),)
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1, description="pairs per optimizer step")
    aux_loss_coef: float = Field(0.01, ge=0, description="MoE load-balancing loss weight")
    optimizer: OptimizerConfig = _WARMUP_OPTIMIZER

    @model_validator(mode="before")
    @classmethod
    def _optimizer_default(cls, data):
        return _default_optimizer(data, _WARMUP_OPTIMIZER)


# ───────────────────────────── policy-gradient settings shared by align and RLVR ─────────────


class PolicyGradientPhase(PhaseBase):
    data: tuple[DataSource, ...] = (SyntheticData(),)
    steps: int = Field(500, ge=1)
    prompts_per_step: int = Field(4, ge=1)
    samples_per_prompt: int = Field(16, ge=2, description="group size n")
    max_response_tokens: int = Field(6144, ge=1)
    sampling: SamplingConfig | None = Field(
        None, description="overrides rollout.sampling for this phase"
    )
    updates_per_step: int = Field(1, ge=1, description="optimizer steps per rollout batch")


# ───────────────────────────── PRISM alignment ─────────────────────────────

_ALIGN_OPTIMIZER = OptimizerConfig(lr=1e-6)
_ALIGN_DISC_OPTIMIZER = OptimizerConfig(lr=1e-6, weight_decay=0.01)


class AlignPhase(PolicyGradientPhase):
    kind: Literal["align"] = "align"
    name: str = "align"
    alpha: float = Field(0.5, ge=0, le=1, description="perception vs reasoning advantage mix")
    beta: float = Field(1.5, ge=0, description="format penalty")
    clip_eps: float = Field(0.2, gt=0)
    dual_clip: float = Field(3.0, gt=1)
    loss_aggregation: LossAggregation = LossAggregation.token_mean
    disc_reg_coef: float = Field(0.001, ge=0)
    optimizer: OptimizerConfig = _ALIGN_OPTIMIZER
    disc_optimizer: OptimizerConfig = _ALIGN_DISC_OPTIMIZER

    @model_validator(mode="before")
    @classmethod
    def _optimizer_default(cls, data):
        data = _default_optimizer(data, _ALIGN_OPTIMIZER)
        if isinstance(data, dict) and isinstance(data.get("disc_optimizer"), dict):
            data = {**data, "disc_optimizer": {**_ALIGN_DISC_OPTIMIZER.model_dump(),
                                               **data["disc_optimizer"]}}
        return data


# ───────────────────────────── RLVR algorithms ─────────────────────────────


class DynamicSampling(Frozen):
    oversample: float = Field(3.0, ge=1, description="generate this many × the prompt batch")
    max_rounds: int = Field(10, ge=1, description="regeneration rounds before giving up")


class OverlongPenalty(Frozen):
    max_tokens: int = Field(8192, ge=1)
    buffer_tokens: int = Field(4096, ge=1)

    @model_validator(mode="after")
    def _buffer_fits(self) -> OverlongPenalty:
        if self.buffer_tokens > self.max_tokens:
            raise ValueError("buffer_tokens must not exceed max_tokens")
        return self


class GRPO(Frozen):
    name: Literal["grpo"] = "grpo"
    clip_low: float = Field(0.2, gt=0)
    clip_high: float = Field(0.2, gt=0)
    dual_clip: float | None = Field(3.0, gt=1)
    kl_coef: float = Field(0.0, ge=0, description="off in PRISM; needs a reference model when > 0")
    loss_aggregation: LossAggregation = LossAggregation.token_mean


class DAPO(Frozen):
    name: Literal["dapo"] = "dapo"
    clip_low: float = Field(0.2, gt=0)
    clip_high: float = Field(0.28, gt=0)
    dual_clip: float | None = Field(10.0, gt=1)
    loss_aggregation: LossAggregation = LossAggregation.token_mean
    dynamic_sampling: DynamicSampling | None = DynamicSampling()
    overlong: OverlongPenalty | None = OverlongPenalty()


class GSPO(Frozen):
    name: Literal["gspo"] = "gspo"
    clip_low: float = Field(3e-4, gt=0)
    clip_high: float = Field(4e-4, gt=0)
    loss_aggregation: LossAggregation = LossAggregation.seq_mean_token_mean


RLVRAlgorithm = tagged_union("name", "grpo", GRPO, DAPO, GSPO)

# Published optimizer settings per algorithm (PRISM_SPEC §5).
_RLVR_OPTIMIZERS = {
    "grpo": OptimizerConfig(lr=1e-6, weight_decay=0.01),
    "dapo": OptimizerConfig(lr=1e-6, weight_decay=0.1, warmup_steps=10),
    "gspo": OptimizerConfig(lr=1e-6, weight_decay=0.1, warmup_ratio=0.05),
}


class RewardConfig(Frozen):
    accuracy_weight: float = Field(0.8, ge=0)
    format_weight: float = Field(0.2, ge=0)
    max_answer_chars: int = Field(1024, ge=1)


class RLVRPhase(PolicyGradientPhase):
    kind: Literal["rlvr"] = "rlvr"
    name: str = "rlvr"
    algorithm: RLVRAlgorithm = GRPO()
    prompts_per_step: int = Field(32, ge=1)
    max_response_tokens: int = Field(8192, ge=1)
    reward: RewardConfig = RewardConfig()
    optimizer: OptimizerConfig = _RLVR_OPTIMIZERS["grpo"]

    @model_validator(mode="before")
    @classmethod
    def _optimizer_default(cls, data):
        if not isinstance(data, dict):
            return data
        algorithm = data.get("algorithm") or {}
        name = algorithm.get("name", "grpo") if isinstance(algorithm, dict) else algorithm.name
        return _default_optimizer(data, _RLVR_OPTIMIZERS.get(name, _RLVR_OPTIMIZERS["grpo"]))


# ───────────────────────────── evaluation ─────────────────────────────


class EvalPhase(PhaseBase):
    kind: Literal["eval"] = "eval"
    name: str = "eval"
    data: tuple[DataSource, ...] = (SyntheticData(),)
    max_prompts: int | None = Field(None, ge=1)
    max_response_tokens: int = Field(8192, ge=1)
    sampling: SamplingConfig = SamplingConfig(temperature=0.0)


# ``kind`` has no default: a phase must say what it is.
Phase = tagged_union("kind", None, SFTPhase, DiscWarmupPhase, AlignPhase, RLVRPhase, EvalPhase)

# Which data formats each phase can read.
ACCEPTED_DATA = {
    "sft": (SyntheticData, ShareGPTData),
    "disc_warmup": (SyntheticData, WarmupJsonlData),
    "align": (SyntheticData, RLParquetData),
    "rlvr": (SyntheticData, RLParquetData),
    "eval": (SyntheticData, RLParquetData),
}
