"""The root of the schema: one run = models + roles + an ordered list of phases."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, TypeAdapter, model_validator

from prism_ray.config.kinds import phase_kind
from prism_ray.config.phases import Phase
from prism_ray.config.schema import (
    DiscriminatorConfig,
    Float,
    Frozen,
    Int,
    LearnerConfig,
    ModelsConfig,
    RolloutConfig,
    VerifierConfig,
)
from prism_ray.prompting import SYSTEM_PROMPT

# The embedded default pipeline, written sparsely (only what differs from each phase's
# published defaults). It is the first layer of every merge, so a recipe that does not
# list phases inherits it and command-line overrides can address its phases by name.
# Sized for a 2-core CPU in under 10 minutes (docs/fidelity.md has the measurements): a tiny
# random-init model needs learning rates far above the published ones (which are for 4B/8B
# models starting from an instruct model). SFT is a two-step curriculum: the teacher's
# faithful demonstrations first (a tiny model learns to use the image only from clean
# captions, after ~250 steps), then the nine-times-larger public mix, whose answer drift it
# picks up; alignment then moves it toward the teacher at a low rate, and RLVR needs enough
# steps at a high enough rate to undo the drift.
DEFAULT_PHASES: tuple[dict[str, Any], ...] = (
    {"kind": "sft", "name": "sft_teacher", "sources": ["teacher"], "steps": 300, "epochs": 10,
     "batch_size": 16, "max_seq_tokens": 512, "optimizer": {"lr": 3e-3}},
    {"kind": "sft", "steps": 100, "batch_size": 16, "max_seq_tokens": 512,
     "optimizer": {"lr": 1e-3}},
    {"kind": "disc_warmup", "steps": 20, "batch_size": 16, "optimizer": {"lr": 5e-4}},
    {"kind": "align", "steps": 8, "prompts_per_step": 4, "samples_per_prompt": 8,
     "max_response_tokens": 128, "optimizer": {"lr": 5e-5}, "disc_optimizer": {"lr": 2e-4}},
    {"kind": "rlvr", "steps": 30, "prompts_per_step": 8, "samples_per_prompt": 8,
     "max_response_tokens": 128, "optimizer": {"lr": 2e-4}},
    {"kind": "eval", "max_response_tokens": 128},
)


def _env_text(value: Any) -> Any:
    """An environment value is text; a YAML or command-line scalar is written as such."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


EnvValue = Annotated[str, BeforeValidator(_env_text)]


class ClusterConfig(Frozen):
    address: str | None = Field(
        None, description="None: start a local Ray cluster; 'auto' or ray://host:port: join one"
    )
    num_cpus: Int | None = Field(None, ge=1, description="CPUs of the local cluster")
    num_gpus: Int | None = Field(None, ge=0, description="GPUs of the local cluster")
    placement_timeout_s: Float = Field(120.0, gt=0)
    env_vars: dict[str, EnvValue] = Field(
        default_factory=dict, description="set in every actor; numbers and booleans are "
                                          "written as text (OMP_NUM_THREADS: 2 → '2')")
    torch_threads: Int | None = Field(
        2, ge=1, description="intra-op threads of torch in every actor (OMP_NUM_THREADS unless "
                             "env_vars sets it); None leaves Ray's default of the actor's CPU "
                             "count. Roles that take turns (rollout, then update) can each use "
                             "every core of a small machine")


class SyncConfig(Frozen):
    """Weight sync learner → rollout workers."""

    transport: Literal["auto", "broadcast", "cuda_ipc"] = Field(
        "auto", description="auto: cuda_ipc when learner and rollout share GPUs (fractional "
                            "num_gpus on both), else a broadcast group (NCCL on GPU, gloo on CPU)")
    bucket_mb: Int = Field(256, ge=1, description="bucket size; one collective per bucket")
    ipc_buffer_mb: Int = Field(
        0, ge=0, description="cuda_ipc: the learner's staging buffer, kept between syncs (a "
                             "second copy of the weights); 0: as large as the weights, so a "
                             "sync is one staging call and one load call. Smaller: the "
                             "weights travel in rounds of at most this much")


class TrackingConfig(Frozen):
    enabled: bool = True
    tracking_uri: str | None = Field(
        None, description="None: $MLFLOW_TRACKING_URI, else sqlite in the run directory"
    )
    experiment: str = "prism-ray"
    run_name: str | None = None


class CheckpointConfig(Frozen):
    """Resumable checkpoints (learner and optimizer states, data position, counters). One is
    always sealed at each phase end; these settings add periodic ones inside a phase, so
    ``--resume`` or an automatic restart repeats at most that much work."""

    every_steps: Int = Field(
        0, ge=0, description="also save every this many global steps; 0: off")
    every_minutes: Float = Field(
        5.0, ge=0,
        description="also save once this many minutes of wall time have passed since the last "
                    "checkpoint (checked after every step); 0: off. Bounds the work a resume "
                    "repeats on any machine, whatever a step costs")
    keep_last: Int = Field(
        2, ge=1, description="complete checkpoints kept on disk (older ones are deleted once a "
                             "newer one is sealed)")


class RunConfig(Frozen):
    name: str = Field("prism-tiny", pattern=r"^[A-Za-z0-9_.\-]+$")
    seed: Int = 0
    output_dir: str = Field("runs/{name}", description="'{name}' is replaced by the run name")
    system_prompt: str | None = Field(
        SYSTEM_PROMPT,
        description="the system turn of every prompt: rollout, policy and discriminator "
                    "training, evaluation and the synthetic data all use this one text, so "
                    "rollout and learner log-probs stay comparable. None or '': no system "
                    "turn (the chat template's own default, if it has one, is not added "
                    "either for Qwen3-VL)")
    models: ModelsConfig = ModelsConfig()
    rollout: RolloutConfig = RolloutConfig()
    policy: LearnerConfig = LearnerConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    verifier: VerifierConfig = VerifierConfig()
    phases: tuple[Phase, ...] = Field(
        default_factory=lambda: TypeAdapter(tuple[Phase, ...]).validate_python(DEFAULT_PHASES),
        min_length=1,
    )
    cluster: ClusterConfig = ClusterConfig()
    sync: SyncConfig = SyncConfig()
    tracking: TrackingConfig = TrackingConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()

    @model_validator(mode="after")
    def _phases_consistent(self) -> RunConfig:
        names = [p.name for p in self.phases]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"phase names must be unique; repeated: {duplicates}")
        if self.rollout.resize_at and any(
                getattr(p, "max_staleness", 0) > 0 for p in self.phases if p.enabled):
            raise ValueError("rollout.resize_at cannot be combined with max_staleness > 0 yet "
                             "(workers leave only between steps, and async phases always "
                             "have rollouts in flight)")
        for phase in self.phases:
            accepted = phase_kind(phase.kind).data
            for source in phase.data:
                if not isinstance(source, accepted):
                    kinds = [a.model_fields["kind"].default for a in accepted]
                    raise ValueError(
                        f"phase {phase.name!r} ({phase.kind}) cannot read data kind "
                        f"{source.kind!r}; accepted: {kinds}"
                    )
        return self

    @property
    def run_dir(self) -> str:
        return self.output_dir.replace("{name}", self.name)

    def phase(self, name: str):
        for p in self.phases:
            if p.name == name:
                return p
        raise KeyError(f"no phase named {name!r}; phases: {[p.name for p in self.phases]}")


SCHEMA_DEFAULT = "(schema default)"


def lr_summary(config: RunConfig) -> list[str]:
    """The learning rates in force, one line per phase that trains (``sft (sft): lr 1e-05
    (schema default)``). An lr the recipe did not write is marked ``(schema default)``: the
    published settings are for 4B/8B instruct models and far too low for a tiny one, so a
    recipe that forgets to set one should see it. Printed by ``prism-ray config validate``
    and meant for the start of a run."""
    lines = []
    for phase in config.phases:
        rates = [(label, getattr(phase, name)) for name, label in
                 (("optimizer", "lr"), ("disc_optimizer", "disc lr")) if hasattr(phase, name)]
        if not rates:
            continue
        parts = [f"{label} {optimizer.lr:g}"
                 + ("" if "lr" in optimizer.model_fields_set else f" {SCHEMA_DEFAULT}")
                 for label, optimizer in rates]
        off = "" if phase.enabled else " [disabled]"
        lines.append(f"{phase.name} ({phase.kind}){off}: {', '.join(parts)}")
    return lines
