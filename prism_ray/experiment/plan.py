"""The arms of the experiment and the overrides of each run: pure, no processes started.

Per RLVR algorithm ``<alg>``:

    prism-<alg>             SFT → discriminator warm-up → alignment → RLVR
    sft-<alg>               SFT → RLVR, with extra RLVR steps for an equal policy-rollout budget
    prism-<alg>-<ablation>  the PRISM arm with one change (ABLATIONS)

All arms of a seed start from one π_sft: the first PRISM arm of the seed trains it, the
others skip SFT and load its export (``<run>/phases/<sft>/policy``) with ``init_from``. Only
the policy is loaded, so an ablation may change the discriminator's shape. ``no_sft`` is the
exception: it starts from the untrained model. Several SFT phases in a row are one curriculum
(the default sees the teacher's demonstrations first, then the mix): π_sft is the policy after
the last of them, and sharing or ablating SFT skips them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prism_ray.config import ConfigError, RunConfig, load_config

if TYPE_CHECKING:
    from prism_ray.experiment.spec import ExperimentConfig

# Ablation → the overrides that make it (no_sft's depend on the recipe's SFT phases). Those in
# OWN_SFT start from the untrained model.
ABLATIONS: dict[str, tuple[str, ...]] = {
    "dense": ("discriminator.num_experts=1", "discriminator.top_k=1"),
    "text_only": ("discriminator.use_images=false",),
    "hard_routing": ("discriminator.routing=hard",),
    "no_sft": (),
}
OWN_SFT = frozenset({"no_sft"})


@dataclass(frozen=True)
class Budget:
    """Policy rollouts (sampled responses trained on) of the PRISM pipeline's phases."""

    align_rollouts: int  # steps × prompts × samples of alignment; 0 when it is disabled
    rlvr_steps: int
    rlvr_rollouts_per_step: int

    @property
    def extra_rlvr_steps(self) -> int:
        """RLVR steps that give the SFT → RLVR arm as many rollouts as alignment used."""
        return math.ceil(self.align_rollouts / self.rlvr_rollouts_per_step)


def budget(config: RunConfig) -> Budget:
    align, rlvr = _phase(config, "align"), _phase(config, "rlvr")
    if rlvr is None or not rlvr.enabled:
        raise ConfigError(f"{config.name}: the experiment needs an enabled rlvr phase")
    align_rollouts = (align.steps * align.prompts_per_step * align.samples_per_prompt
                      if align is not None and align.enabled else 0)
    return Budget(align_rollouts, rlvr.steps, rlvr.prompts_per_step * rlvr.samples_per_prompt)


@dataclass(frozen=True)
class Arm:
    name: str  # sft-grpo, prism-grpo, prism-grpo-dense
    algorithm: str
    prism: bool  # False: the SFT → RLVR baseline
    ablation: str | None = None

    @property
    def references(self) -> tuple[str, ...]:
        """Arms this one is compared against, paired by seed (PRISM − baseline, ablation −
        full PRISM)."""
        if not self.prism:
            return ()
        baseline = (f"sft-{self.algorithm}",)
        return baseline if self.ablation is None else (*baseline, f"prism-{self.algorithm}")


@dataclass(frozen=True)
class RunSpec:
    """One ``prism-ray run``: an arm at a seed."""

    arm: Arm
    seed: int
    run_dir: Path
    overrides: tuple[str, ...]  # everything after the recipe on the command line
    sft_source: Path | None  # the run whose SFT export this one starts from (None: its own)
    budget_offset: int  # policy rollouts before its RLVR phase (alignment's)
    rollouts_per_step: int  # policy rollouts per RLVR step

    @property
    def label(self) -> str:
        return f"{self.arm.name} seed{self.seed}"


def arms(experiment: ExperimentConfig) -> list[Arm]:
    out = []
    for alg in experiment.algorithms:
        out += [Arm(f"prism-{alg}", alg, True), Arm(f"sft-{alg}", alg, False)]
    for alg in experiment.algorithms:
        out += [Arm(f"prism-{alg}-{a}", alg, True, a) for a in experiment.ablations]
    return out


def plan(experiment: ExperimentConfig) -> list[RunSpec]:
    """Every run in execution order: seed by seed, the SFT source of the seed first."""
    configs = {alg: resolve(experiment, alg) for alg in experiment.algorithms}
    runs = []
    for seed in experiment.seeds:
        source = None
        for arm in arms(experiment):
            spec = run_spec(experiment, configs[arm.algorithm], arm, seed, source)
            runs.append(spec)
            if source is None and _sft_enabled(configs[arm.algorithm]):
                source = spec.run_dir  # the first arm is always a full PRISM arm
    return runs


def resolve(experiment: ExperimentConfig, algorithm: str) -> RunConfig:
    """The base run of one algorithm (recipe + the experiment's overrides), validated."""
    config = load_config(experiment.recipe, experiment.overrides)
    return load_config(experiment.recipe, [*experiment.overrides,
                                           f"phases.{_name(config, 'rlvr')}.algorithm.name="
                                           f"{algorithm}"])


def run_spec(experiment: ExperimentConfig, config: RunConfig, arm: Arm, seed: int,
             sft_source: Path | None) -> RunSpec:
    run_dir = experiment.out_dir / arm.name / f"seed{seed}"
    cost = budget(config)
    shares = sft_source is not None and _sft_enabled(config) and arm.ablation not in OWN_SFT
    overrides = [*experiment.overrides, f"phases.{_name(config, 'rlvr')}.algorithm.name="
                                        f"{arm.algorithm}"]
    if arm.prism:
        overrides += ABLATIONS[arm.ablation] if arm.ablation else ()
        overrides += _sft_off(config) if arm.ablation == "no_sft" else []
        if shares:
            overrides += _start_from_sft(config, sft_source, _first_after_sft(config))
    else:
        overrides += _baseline(config, cost, sft_source if shares else None)
    overrides += [f"seed={seed}", f"name={experiment.name}-{arm.name}-seed{seed}",
                  f"output_dir={run_dir}"]
    offset = cost.align_rollouts if arm.prism else 0
    return RunSpec(arm, seed, run_dir, tuple(overrides), sft_source if shares else None,
                   offset, cost.rlvr_rollouts_per_step)


def _baseline(config: RunConfig, cost: Budget, sft_source: Path | None) -> list[str]:
    """SFT → RLVR: no warm-up, no alignment, RLVR longer by alignment's rollout budget."""
    off = [f"phases.{p.name}.enabled=false" for p in config.phases
           if p.kind in ("disc_warmup", "align") and p.enabled]
    rlvr = _name(config, "rlvr")
    steps = [f"phases.{rlvr}.steps={cost.rlvr_steps + cost.extra_rlvr_steps}"]
    return off + steps + (_start_from_sft(config, sft_source, rlvr) if sft_source else [])


def _start_from_sft(config: RunConfig, source: Path, phase: str) -> list[str]:
    policy = (source / "phases" / _name(config, "sft") / "policy").resolve()
    return [*_sft_off(config), f"phases.{phase}.init_from={policy}"]


def _sft_off(config: RunConfig) -> list[str]:
    return [f"phases.{p.name}.enabled=false" for p in config.phases
            if p.kind == "sft" and p.enabled]


def _first_after_sft(config: RunConfig) -> str:
    names = [p.name for p in config.phases]
    after = config.phases[names.index(_name(config, "sft")) + 1:]
    return next(p.name for p in after if p.enabled)


def _phase(config: RunConfig, kind: str):
    """The phase of a kind; for SFT the last one (π_sft is the policy after the curriculum)."""
    phases = [p for p in config.phases if p.kind == kind]
    return (phases[-1] if kind == "sft" else phases[0]) if phases else None


def _name(config: RunConfig, kind: str) -> str:
    phase = _phase(config, kind)
    if phase is None:
        raise ConfigError(f"{config.name}: the experiment needs a {kind} phase")
    return phase.name


def _sft_enabled(config: RunConfig) -> bool:
    phase = _phase(config, "sft")
    return phase is not None and phase.enabled


def phase_names(config: RunConfig) -> dict[str, str]:
    """Phase kind → name, for reading evaluation rows (labelled by phase name)."""
    return {kind: (_phase(config, kind).name if _phase(config, kind) else kind)
            for kind in ("sft", "disc_warmup", "align", "rlvr")}
