"""Phases of a run: a discriminated union on ``kind``; RLVR algorithms a union on ``name``.

Defaults are the published settings (PRISM_SPEC §3–5). Each phase owns its data, steps,
batch sizes and optimizer; optimizer defaults depend on the phase kind and algorithm.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from prism_ray.config.kinds import PHASE_KINDS, PhaseKind, register_phase_kind
from prism_ray.config.schema import (
    DataSource,
    Float,
    Frozen,
    Int,
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
    seed: Int | None = Field(None, description="per-phase seed; the run seed when unset")

    def total_steps(self, num_records: int) -> int:
        """Optimizer steps (or, for evaluation, prompts) the phase runs over its records."""
        raise NotImplementedError

    def plan_length(self) -> str:
        """The phase's length as the run plan shows it, before any data is read."""
        raise NotImplementedError

    def check_records(self, records: list) -> None:
        """Raise ValueError if the records cannot serve this phase (run before step 1)."""


class EpochPhase(PhaseBase):
    """A phase that walks offline records in batches: SFT, discriminator warm-up."""

    epochs: Int = Field(1, ge=1)
    steps: Int | None = Field(
        None, ge=1, description="optimizer steps, at most the epochs' worth (stops early); "
                                "None: run the whole epochs")
    batch_size: Int = Field(16, ge=1, description="records per optimizer step")

    def total_steps(self, num_records: int) -> int:
        total = self.epochs * -(-num_records // self.batch_size)
        return min(total, self.steps) if self.steps else total

    def plan_length(self) -> str:
        cap = f" (≤{self.steps} steps)" if self.steps else ""
        return f"{self.epochs} epoch(s){cap}"


def _registered_loss(name: str) -> str:
    """A policy-loss name must be registered in ``prism_ray.algo.registry``."""
    from prism_ray.algo import policy_loss_fn

    policy_loss_fn(name)
    return name


LossName = Annotated[str, AfterValidator(_registered_loss)]
_LOSS_HELP = "registered policy loss (prism_ray.algo.registry): ppo_clip | gspo | your own"


def _registered_correction(name: str) -> str:
    from prism_ray.algo.correction import correction_fn

    correction_fn(name)
    return name


class RolloutCorrection(Frozen):
    """Importance correction against the rollout engine's behaviour log-probs
    (``prism_ray.algo.correction``; docs/async.md says when to use which)."""

    kind: Annotated[str, AfterValidator(_registered_correction)] = Field(
        "none", description="none | tis (truncated IS, weight min(rho, cap)) | mis_token | "
                            "mis_seq (masked IS: drop tokens / sequences with rho outside "
                            "[low, high])")
    cap: Float = Field(2.0, gt=0, description="tis: the largest token weight")
    low: Float = Field(0.5, gt=0, lt=1, description="mis_*: smallest kept ratio")
    high: Float = Field(2.0, gt=1, description="mis_*: largest kept ratio")


_CORRECTION_HELP = "importance correction against the rollout engine's log-probs"


def _with_optimizer_defaults(data, handler, defaults: dict[str, OptimizerConfig]):
    """Validate a phase whose optimizer fields default to ``defaults`` (field → the phase's
    published setting).

    Partial user overrides (e.g. only ``lr``) are merged over that default, not over the
    generic OptimizerConfig, so a recipe can change one knob and keep the rest. Each
    optimizer's ``model_fields_set`` stays what the recipe wrote, so a learning rate left to
    the schema can be told from one the recipe set (``config.run.lr_summary``).
    """
    if not isinstance(data, dict):
        return handler(data)
    merged = dict(data)
    for name, default in defaults.items():
        given = data.get(name)
        if given is None:
            merged[name] = default
        elif isinstance(given, dict):
            merged[name] = {**default.model_dump(), **given}
    phase = handler(merged)
    values = dict(phase)
    for name in defaults:
        given = data.get(name)
        if isinstance(given, OptimizerConfig):
            continue  # a config object keeps its own record
        written = set(given) & set(OptimizerConfig.model_fields) if isinstance(given, dict) \
            else set()
        values[name] = OptimizerConfig.model_construct(written, **dict(values[name]))
    given_fields = phase.model_fields_set - {n for n in defaults if data.get(n) is None}
    return type(phase).model_construct(given_fields, **values)


# ───────────────────────────── SFT ─────────────────────────────

_SFT_OPTIMIZER = OptimizerConfig(lr=1e-5, schedule=Schedule.cosine, warmup_ratio=0.1)


class SFTPhase(EpochPhase):
    kind: Literal["sft"] = "sft"
    name: str = "sft"
    data: tuple[DataSource, ...] = (SyntheticData(),)
    sources: tuple[Literal["teacher", "public"], ...] = Field(
        ("teacher", "public"), description="synthetic data only: which demonstration sources"
    )
    loss_aggregation: Literal["token_mean", "seq_mean"] = "token_mean"
    max_seq_tokens: Int = Field(1024, ge=16)
    optimizer: OptimizerConfig = _SFT_OPTIMIZER

    @model_validator(mode="wrap")
    @classmethod
    def _optimizer_default(cls, data, handler):
        return _with_optimizer_defaults(data, handler, {"optimizer": _SFT_OPTIMIZER})


register_phase_kind(PhaseKind(
    SFTPhase, "prism_ray.driver.sft:run_sft", frozenset({"policy"}),
    data=(SyntheticData, ShareGPTData), synthetic_files=("sft/teacher.json", "sft/public.json")))


# ───────────────────────────── discriminator warm-up ─────────────────────────────

_WARMUP_OPTIMIZER = OptimizerConfig(lr=1e-5, schedule=Schedule.cosine, warmup_ratio=0.1)


class DiscWarmupPhase(EpochPhase):
    kind: Literal["disc_warmup"] = "disc_warmup"
    name: str = "disc_warmup"
    data: tuple[DataSource, ...] = (SyntheticData(),)
    aux_loss_coef: Float = Field(0.01, ge=0, description="MoE load-balancing loss weight")
    optimizer: OptimizerConfig = _WARMUP_OPTIMIZER

    @model_validator(mode="wrap")
    @classmethod
    def _optimizer_default(cls, data, handler):
        return _with_optimizer_defaults(data, handler, {"optimizer": _WARMUP_OPTIMIZER})


register_phase_kind(PhaseKind(
    DiscWarmupPhase, "prism_ray.driver.align:run_disc_warmup", frozenset({"discriminator"}),
    data=(SyntheticData, WarmupJsonlData), synthetic_files=("warmup/pairs.jsonl",)))


# ───────────────────────────── policy-gradient settings shared by align and RLVR ─────────────


class PolicyGradientPhase(PhaseBase):
    data: tuple[DataSource, ...] = (SyntheticData(),)
    steps: Int = Field(500, ge=1)
    prompts_per_step: Int = Field(4, ge=1)
    samples_per_prompt: Int = Field(16, ge=2, description="group size n")
    max_response_tokens: Int = Field(6144, ge=1)
    sampling: SamplingConfig | None = Field(
        None, description="overrides rollout.sampling for this phase"
    )
    updates_per_step: Int = Field(
        1, ge=1, description="optimizer steps per rollout batch: the batch is cut into this "
        "many mini-batches with the old log-probs held fixed (PPO-style); 1 = on-policy")
    max_staleness: Int = Field(
        0, ge=0, le=8, description="asynchronous steps: the rollout workers generate up to "
        "this many steps ahead while the learner updates; a sample is never more than this "
        "many weight versions old (0: synchronous). See docs/async.md")

    def total_steps(self, num_records: int) -> int:
        return self.steps

    def plan_length(self) -> str:
        return f"{self.steps} steps × {self.prompts_per_step}×{self.samples_per_prompt}"

    @model_validator(mode="after")
    def _updates_fit_the_batch(self):
        rollouts = self.prompts_per_step * self.samples_per_prompt
        if self.updates_per_step > rollouts:
            raise ValueError(f"updates_per_step ({self.updates_per_step}) exceeds the "
                             f"{rollouts} rollouts of a step (prompts_per_step × "
                             "samples_per_prompt): a mini-batch would be empty")
        return self


# ───────────────────────────── PRISM alignment ─────────────────────────────

_ALIGN_OPTIMIZER = OptimizerConfig(lr=1e-6)
_ALIGN_DISC_OPTIMIZER = OptimizerConfig(lr=1e-6, weight_decay=0.01)


class AlignPhase(PolicyGradientPhase):
    kind: Literal["align"] = "align"
    name: str = "align"
    alpha: Float = Field(0.5, ge=0, le=1, description="perception vs reasoning advantage mix")
    beta: Float = Field(1.5, ge=0, description="format penalty")
    loss: LossName = Field("ppo_clip", description=_LOSS_HELP)
    rollout_correction: RolloutCorrection = Field(RolloutCorrection(),
                                                  description=_CORRECTION_HELP)
    clip_eps: Float = Field(0.2, gt=0, lt=1, description="symmetric ratio clip")
    dual_clip: Float = Field(3.0, gt=1, description="must exceed 1 + clip_eps")
    loss_aggregation: LossAggregation = LossAggregation.token_mean
    disc_reg_coef: Float = Field(0.001, ge=0)
    optimizer: OptimizerConfig = _ALIGN_OPTIMIZER
    disc_optimizer: OptimizerConfig = _ALIGN_DISC_OPTIMIZER

    def check_records(self, records: list) -> None:
        missing = [r.uid for r in records if r.teacher_caption is None or r.teacher_cot is None]
        if missing:
            raise ValueError(f"alignment needs teacher_caption and teacher_cot; {len(missing)} "
                             f"prompt(s) lack them, e.g. {missing[:3]}")

    @property
    def clip_low(self) -> float:
        return self.clip_eps

    @property
    def clip_high(self) -> float:
        return self.clip_eps

    @model_validator(mode="after")
    def _dual_clip_above_the_clip(self):
        _check_dual_clip(self.dual_clip, self.clip_eps, "clip_eps")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _optimizer_default(cls, data, handler):
        return _with_optimizer_defaults(data, handler, {
            "optimizer": _ALIGN_OPTIMIZER, "disc_optimizer": _ALIGN_DISC_OPTIMIZER})


register_phase_kind(PhaseKind(
    AlignPhase, "prism_ray.driver.align:run_align",
    frozenset({"policy", "rollout", "discriminator"}),
    data=(SyntheticData, RLParquetData), synthetic_files=("align/train.parquet",)))


# ───────────────────────────── RLVR algorithms ─────────────────────────────


class DynamicSampling(Frozen):
    oversample: Float = Field(3.0, ge=1, description="generate this many × the prompt batch")
    max_rounds: Int = Field(10, ge=1, description="regeneration rounds before giving up")


class OverlongPenalty(Frozen):
    max_tokens: Int = Field(8192, ge=1)
    buffer_tokens: Int = Field(4096, ge=1)

    @model_validator(mode="after")
    def _buffer_fits(self) -> OverlongPenalty:
        if self.buffer_tokens > self.max_tokens:
            raise ValueError("buffer_tokens must not exceed max_tokens")
        return self


def _check_dual_clip(dual_clip: float | None, clip_high: float, clip_name: str) -> None:
    """``algo.ClipConfig``'s rule, checked when the recipe is read rather than at step 1."""
    if dual_clip is not None and dual_clip <= 1.0 + clip_high:
        raise ValueError(f"dual_clip ({dual_clip:g}) must exceed 1 + {clip_name} "
                         f"({1.0 + clip_high:g}); or set dual_clip: null to turn it off")


class GRPO(Frozen):
    name: Literal["grpo"] = "grpo"
    loss: LossName = Field("ppo_clip", description=_LOSS_HELP)
    rollout_correction: RolloutCorrection = Field(RolloutCorrection(),
                                                  description=_CORRECTION_HELP)
    clip_low: Float = Field(0.2, gt=0, lt=1)
    clip_high: Float = Field(0.2, gt=0)
    dual_clip: Float | None = Field(3.0, gt=1, description="must exceed 1 + clip_high; null: off")
    kl_coef: Float = Field(
        0.0, ge=0, description="KL penalty to a reference model; must stay 0: prism-ray runs "
                               "no reference model, so no reference log-probs reach the loss")
    loss_aggregation: LossAggregation = LossAggregation.token_mean

    @model_validator(mode="after")
    def _clip_and_kl(self) -> GRPO:
        _check_dual_clip(self.dual_clip, self.clip_high, "clip_high")
        if self.kl_coef > 0:
            raise ValueError(f"kl_coef ({self.kl_coef:g}) must be 0: a KL penalty needs a "
                             "reference model, and prism-ray runs none (no reference "
                             "log-probs reach the loss)")
        return self


class DAPO(Frozen):
    name: Literal["dapo"] = "dapo"
    loss: LossName = Field("ppo_clip", description=_LOSS_HELP)
    rollout_correction: RolloutCorrection = Field(RolloutCorrection(),
                                                  description=_CORRECTION_HELP)
    clip_low: Float = Field(0.2, gt=0, lt=1)
    clip_high: Float = Field(0.28, gt=0)
    dual_clip: Float | None = Field(10.0, gt=1, description="must exceed 1 + clip_high; null: off")
    loss_aggregation: LossAggregation = LossAggregation.token_mean
    dynamic_sampling: DynamicSampling | None = DynamicSampling()
    overlong: OverlongPenalty | None = OverlongPenalty()

    @model_validator(mode="after")
    def _dual_clip_above_the_clip(self) -> DAPO:
        _check_dual_clip(self.dual_clip, self.clip_high, "clip_high")
        return self


class GSPO(Frozen):
    name: Literal["gspo"] = "gspo"
    loss: LossName = Field("gspo", description=_LOSS_HELP)
    rollout_correction: RolloutCorrection = Field(RolloutCorrection(),
                                                  description=_CORRECTION_HELP)
    clip_low: Float = Field(3e-4, gt=0, lt=1)
    clip_high: Float = Field(4e-4, gt=0)
    loss_aggregation: LossAggregation = LossAggregation.seq_mean_token_mean


RLVRAlgorithm = tagged_union("name", "grpo", GRPO, DAPO, GSPO)

# Published optimizer settings per algorithm (PRISM_SPEC §5).
_RLVR_OPTIMIZERS = {
    "grpo": OptimizerConfig(lr=1e-6, weight_decay=0.01),
    "dapo": OptimizerConfig(lr=1e-6, weight_decay=0.1, warmup_steps=10),
    "gspo": OptimizerConfig(lr=1e-6, weight_decay=0.1, warmup_ratio=0.05),
}


class RewardConfig(Frozen):
    accuracy_weight: Float = Field(0.8, ge=0)
    format_weight: Float = Field(0.2, ge=0)
    max_answer_chars: Int = Field(1024, ge=1)


class RLVRPhase(PolicyGradientPhase):
    kind: Literal["rlvr"] = "rlvr"
    name: str = "rlvr"
    algorithm: RLVRAlgorithm = GRPO()
    prompts_per_step: Int = Field(32, ge=1)
    max_response_tokens: Int = Field(8192, ge=1)
    reward: RewardConfig = RewardConfig()
    optimizer: OptimizerConfig = _RLVR_OPTIMIZERS["grpo"]

    @model_validator(mode="wrap")
    @classmethod
    def _optimizer_default(cls, data, handler):
        algorithm = (data.get("algorithm") if isinstance(data, dict) else None) or {}
        name = algorithm.get("name", "grpo") if isinstance(algorithm, dict) \
            else getattr(algorithm, "name", "grpo")
        default = _RLVR_OPTIMIZERS.get(name, _RLVR_OPTIMIZERS["grpo"])
        return _with_optimizer_defaults(data, handler, {"optimizer": default})

    @model_validator(mode="after")
    def _async_without_dynamic_sampling(self) -> RLVRPhase:
        dynamic = getattr(self.algorithm, "dynamic_sampling", None)
        if self.max_staleness > 0 and dynamic is not None:
            raise ValueError("max_staleness > 0 is not supported with DAPO's dynamic "
                             "sampling yet (its regeneration rounds are synchronous): set "
                             "algorithm.dynamic_sampling: null or max_staleness: 0")
        return self


register_phase_kind(PhaseKind(
    RLVRPhase, "prism_ray.driver.rlvr:run_rlvr", frozenset({"policy", "rollout", "verifier"}),
    data=(SyntheticData, RLParquetData), synthetic_files=("rlvr/train.parquet",)))


# ───────────────────────────── evaluation ─────────────────────────────


class EvalPhase(PhaseBase):
    kind: Literal["eval"] = "eval"
    name: str = "eval"
    data: tuple[DataSource, ...] = (SyntheticData(),)
    max_prompts: Int | None = Field(None, ge=1)
    max_response_tokens: Int = Field(8192, ge=1)
    sampling: SamplingConfig = SamplingConfig(temperature=0.0)

    def total_steps(self, num_records: int) -> int:
        return min(num_records, self.max_prompts or num_records)

    def plan_length(self) -> str:
        return f"{self.max_prompts or 'all'} prompts"


register_phase_kind(PhaseKind(
    EvalPhase, "prism_ray.driver.evaluation:run_eval", frozenset({"rollout", "verifier"}),
    data=(SyntheticData, RLParquetData), synthetic_files=("eval/test.parquet",), evaluation=True))

# ``kind`` has no default: a phase must say what it is.
Phase = tagged_union("kind", None, *(kind.config for kind in PHASE_KINDS.values()))
