"""The one configuration schema of prism-ray. Defaults here are the embedded default run
(tiny model, synthetic data, the whole PRISM pipeline on CPU); recipes are sparse overlays.

Published hyperparameters (PRISM_SPEC §3–5) are the defaults of each phase; the embedded
default shrinks only steps, batch sizes and lengths.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Strict, Tag, model_validator

# Numbers are strict: ``true`` is not 1 and "3" is not 3 (YAML and overrides give real
# numbers). A float field still takes an int (``lr: 1`` is 1.0). nan and inf are refused
# everywhere (``Frozen.model_config``).
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]


class Frozen(BaseModel):
    """Every config node: immutable, unknown keys rejected, numbers finite."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, use_enum_values=False, allow_inf_nan=False)


def tagged_union(field: str, default: str | None, *models: type[BaseModel]) -> Any:
    """A union discriminated by ``field``; a node that omits it gets ``default``.

    (So ``algorithm: {clip_high: 0.3}`` means GRPO with a wider clip, not an error.)
    """

    def tag_of(value: Any) -> str | None:
        if isinstance(value, dict):
            return value.get(field, default)
        return getattr(value, field, default)

    members = tuple(Annotated[m, Tag(m.model_fields[field].default)] for m in models)
    return Annotated[Union[members], Discriminator(tag_of)]  # noqa: UP007


# ───────────────────────────── enums ─────────────────────────────


class RolloutBackend(str, Enum):
    hf = "hf"
    vllm = "vllm"


class Dtype(str, Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Schedule(str, Enum):
    constant = "constant"
    cosine = "cosine"


class LossAggregation(str, Enum):
    token_mean = "token_mean"
    seq_mean_token_mean = "seq_mean_token_mean"
    seq_mean_token_sum = "seq_mean_token_sum"


class OnBadRow(str, Enum):
    error = "error"
    skip = "skip"


class SyntheticSize(str, Enum):
    tiny = "tiny"
    small = "small"
    full = "full"


# ───────────────────────────── models ─────────────────────────────


class TinyModel(Frozen):
    """A Qwen3-VL-architecture model built in code with random weights (no download)."""

    kind: Literal["tiny"] = "tiny"
    preset: Literal["policy", "discriminator", "qwen3vl-2b-shape"] = Field(
        "policy", description="qwen3vl-2b-shape: the published 2B shape, random weights "
                              "(for GPU benchmarks)")
    seed: Int = 0


class PretrainedModel(Frozen):
    """A local HF checkpoint directory or a hub id (resolved on the user's cluster)."""

    kind: Literal["pretrained"] = "pretrained"
    path: str = Field(min_length=1)
    trust_remote_code: bool = Field(
        False, description="never needed: Qwen3-VL is native to transformers; refused when on")

    @model_validator(mode="after")
    def _no_remote_code(self) -> PretrainedModel:
        # Secure default: a checkpoint cannot bring code to run on the cluster. The models
        # prism-ray trains are native transformers architectures, so nothing needs it.
        if self.trust_remote_code:
            raise ValueError(f"{self.path}: trust_remote_code is not supported; prism-ray "
                             "loads native transformers architectures only")
        return self


ModelSource = tagged_union("kind", "tiny", TinyModel, PretrainedModel)


class ModelsConfig(Frozen):
    policy: ModelSource = TinyModel(preset="policy")
    discriminator: ModelSource = TinyModel(preset="discriminator")


# ───────────────────────────── data ─────────────────────────────


class SyntheticData(Frozen):
    """The embedded synthetic visual-reasoning task, synthesized into the run directory."""

    kind: Literal["synthetic"] = "synthetic"
    size: SyntheticSize = SyntheticSize.small
    seed: Int = 0
    image_size: Int = Field(
        48, ge=16, le=1024,
        description="pixels per side; 48 gives the tiny policy (8-pixel patches, 2x2 merge) one "
                    "vision token per grid cell")
    public_perception_error: Float = Field(
        0.25, ge=0, le=1,
        description="how often the public demonstrations' captions misperceive: the chance "
                    "that an object is left out; wrong colour or shape, a missed digit, a "
                    "hallucinated object and a miscounted header scale with it (0: captions "
                    "as true as the teacher's). The teacher never errs")
    public_reasoning_error: Float = Field(
        0.1, ge=0, le=1,
        description="chance that a public demonstration that does not drift (below) takes "
                    "a shortcut to a random wrong answer ('The answer is X.')")
    public_answer_drift: Float = Field(
        0.7, ge=0, le=1,
        description="chance that a public demonstration's steps are right but its answer "
                    "drifts from them the same way every time (one more than the count, the "
                    "next option): the systematic slip of a careless source")
    digit_probability: Float = Field(
        0.0, ge=0, le=1,
        description="chance that a shape carries a digit (0: no digits and no digit "
                    "questions, an easier task)")
    warmup_matched_negatives: Float = Field(
        0.0, ge=0, le=1,
        description="share of the discriminator warm-up pairs whose student caption keeps "
                    "the teacher's form (header, one line per object) with one colour, shape "
                    "or position wrong, so that only the image tells them apart; the others "
                    "are degraded captions (objects left out, wrong colours, no header)")


class ShareGPTData(Frozen):
    """LLaMA-Factory sharegpt-multimodal JSON/JSONL (SFT demonstrations)."""

    kind: Literal["sharegpt"] = "sharegpt"
    paths: tuple[str, ...] = Field(min_length=1)
    on_bad_row: OnBadRow = OnBadRow.error


class RLParquetData(Frozen):
    """RL parquet (alignment prompts with teacher columns, RLVR prompts, eval split)."""

    kind: Literal["rl_parquet"] = "rl_parquet"
    paths: tuple[str, ...] = Field(min_length=1)
    on_bad_row: OnBadRow = OnBadRow.error


class WarmupJsonlData(Frozen):
    """Discriminator warm-up pairs, JSONL."""

    kind: Literal["warmup_jsonl"] = "warmup_jsonl"
    paths: tuple[str, ...] = Field(min_length=1)
    on_bad_row: OnBadRow = OnBadRow.error


DataSource = tagged_union(
    "kind", "synthetic", SyntheticData, ShareGPTData, RLParquetData, WarmupJsonlData
)


# ───────────────────────────── roles ─────────────────────────────


class Resources(Frozen):
    """Ray resources of ONE actor of a role."""

    num_cpus: Float = Field(1.0, ge=0)
    num_gpus: Float = Field(0.0, ge=0)
    memory_gb: Float | None = Field(None, gt=0)


class SamplingConfig(Frozen):
    temperature: Float = Field(1.0, ge=0)
    top_p: Float = Field(1.0, gt=0, le=1)
    top_k: Int = Field(0, ge=0, description="0 disables top-k (the RL setting)")


class VllmOptions(Frozen):
    gpu_memory_utilization: Float = Field(0.5, gt=0, le=1)
    tensor_parallel_size: Int = Field(1, ge=1)
    enforce_eager: bool = False
    enable_sleep_mode: bool = False
    max_model_len: Int | None = Field(None, ge=1)
    weight_loading: Literal["auto", "in_place", "reload"] = Field(
        "auto", description="how synced weights enter the engine: in_place copies them into "
                            "the live parameters with the model's own loader (fast; CUDA "
                            "graphs stay valid); reload re-runs vLLM's layerwise reload "
                            "(needed where weights are repacked, as on CPU); auto: in_place "
                            "on GPU, reload on CPU")


class RolloutConfig(Frozen):
    backend: RolloutBackend = RolloutBackend.hf
    num_workers: Int = Field(1, ge=1)
    resize_at: dict[int, Int] = Field(
        default_factory=dict,
        description="global step → number of rollout workers from that step on (elastic "
                    "rollout: workers join or leave between steps, learners untouched)")
    resources: Resources = Resources(num_cpus=0.5)
    sampling: SamplingConfig = SamplingConfig()
    vllm: VllmOptions = VllmOptions()


    @model_validator(mode="after")
    def _positive_sizes(self) -> RolloutConfig:
        bad = {step: n for step, n in self.resize_at.items() if n < 1 or step < 0}
        if bad:
            raise ValueError(f"resize_at needs steps ≥ 0 and worker counts ≥ 1, got {bad}")
        return self


class OptimizerConfig(Frozen):
    lr: Float = Field(1e-6, gt=0)
    weight_decay: Float = Field(0.01, ge=0)
    betas: tuple[Float, Float] = (0.9, 0.999)
    eps: Float = Field(1e-8, gt=0)
    grad_clip: Float = Field(1.0, gt=0)
    schedule: Schedule = Schedule.constant
    warmup_ratio: Float = Field(0.0, ge=0, lt=1)
    warmup_steps: Int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_warmup(self) -> OptimizerConfig:
        if self.warmup_ratio and self.warmup_steps:
            raise ValueError("set warmup_ratio or warmup_steps, not both")
        return self


class LearnerConfig(Frozen):
    """A DeepSpeed ZeRO learner group (policy or discriminator)."""

    num_ranks: Int = Field(1, ge=1)
    resources: Resources = Resources(num_cpus=0.5)
    zero_stage: Int = Field(2, ge=0, le=3, description="DeepSpeed ZeRO stage: 0, 1, 2 or 3")
    dtype: Dtype = Dtype.float32
    micro_batch_tokens: Int = Field(4096, ge=64, description="token budget of one micro-batch")
    gradient_checkpointing: bool = False
    offload_optimizer: bool = False
    logprob_chunk_tokens: Int = Field(
        1024, ge=1, description="policy learner: response tokens whose logits exist at once "
                                "when log-probs are computed from the final hidden states "
                                "(peak memory chunk × vocabulary, not tokens × vocabulary)")
    peak_tflops: Float | None = Field(
        None, gt=0, description="policy learner: the device's peak dense bf16 TFLOP/s for "
                                "policy/mfu; unset: PRISM_PEAK_TFLOPS, else a table of known "
                                "GPUs (learner.flops); no MFU on CPU or an unknown GPU")


class DiscriminatorConfig(Frozen):
    """Sparse-upcycled MoE discriminator with a scalar value head (PRISM_SPEC §3)."""

    num_experts: Int = Field(
        4, ge=1, description="experts per upcycled MLP; 1 (with top_k 1) is the dense "
                             "ablation: the one expert is the dense MLP (plus "
                             "expert_noise_std noise) and its router a constant")
    top_k: Int = Field(2, ge=1, description="experts each token is routed to (learned routing)")
    norm_topk_prob: bool = True
    expert_noise_std: Float = Field(0.01, ge=0)
    router_init_std: Float = Field(0.02, gt=0)
    head_dropout: Float = Field(0.1, ge=0, lt=1)
    head_init_std: Float = Field(0.02, gt=0)
    score_clip: Float = Field(10.0, gt=0)
    terminator: str = "<|im_end|>"
    use_images: bool = Field(
        True, description="false: text-only ablation; both views are system + question + "
                          "segment, with no image tokens or pixels, in warm-up, scoring and "
                          "training alike")
    routing: Literal["learned", "hard"] = Field(
        "learned", description="learned: each MLP's router picks top_k experts per token. "
                               "hard: ablation that ignores the router; every token of the "
                               "perception view goes to expert 0 and every token of the "
                               "reasoning view to expert 1, with weight 1 (no load-balancing "
                               "loss: the router is unused). Needs num_experts ≥ 2")
    learner: LearnerConfig = LearnerConfig()

    @model_validator(mode="after")
    def _topk_le_experts(self) -> DiscriminatorConfig:
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k ({self.top_k}) > num_experts ({self.num_experts})")
        return self

    @model_validator(mode="after")
    def _hard_routing_has_two_experts(self) -> DiscriminatorConfig:
        if self.routing == "hard" and self.num_experts < 2:
            raise ValueError(
                f"routing=hard sends the perception view to expert 0 and the reasoning view "
                f"to expert 1, so it needs num_experts ≥ 2 (got {self.num_experts})")
        return self


class VerifierConfig(Frozen):
    """The verifier pool and the limits of one verification (``prism_ray.verify.Verifier``
    takes this section as is; the reward weights are each phase's ``reward``)."""

    num_workers: Int = Field(1, ge=1)
    resources: Resources = Resources(num_cpus=0.25)
    timeout_s: Float = Field(5.0, gt=0, description="symbolic time budget of one response")
    startup_timeout_s: Float = Field(
        60.0, gt=0, description="how long the math-verify child may take to start (its import)")
    memory_limit_mb: Int | None = Field(
        4096, ge=1, description="address-space cap of the math-verify child; None: no cap")
    batch_size: Int = Field(64, ge=1)
    math_verify: bool = Field(
        True, description="false: rules only; an answer they cannot decide is wrong, and no "
                          "math-verify child process is started")
