"""What a run needs before its first phase: datasets and model checkpoints on disk.

Synthetic datasets and tiny models are built as Ray tasks, in parallel, into the run
directory; a build whose manifest already matches is reused, so re-running a recipe (or
resuming it) does not redo them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from prism_ray.config.run import RunConfig
from prism_ray.config.schema import PretrainedModel, SyntheticData, TinyModel


@dataclass(frozen=True)
class RunAssets:
    policy: str
    discriminator: str
    synthetic: dict[SyntheticData, Path] = field(default_factory=dict)

    def dataset_dir(self, source: SyntheticData) -> Path:
        return self.synthetic[source]


def synthetic_sources(config: RunConfig) -> list[SyntheticData]:
    seen: dict[SyntheticData, None] = {}
    for phase in config.phases:
        if phase.enabled:
            for source in phase.data:
                if isinstance(source, SyntheticData):
                    seen.setdefault(source)
    return list(seen)


def synthetic_dir(run_dir: Path, source: SyntheticData, system_prompt: str | None) -> Path:
    # Every field that changes the bytes is in the name: two sources never share a directory.
    key = source.model_dump_json() + json.dumps(system_prompt)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return run_dir / "data" / f"synthetic-{source.size.value}-s{source.seed}-{digest}"


def prepare_assets(config: RunConfig, run_dir: Path) -> RunAssets:
    """Build missing datasets and tiny models as parallel Ray tasks; return their paths."""
    import ray

    synthesize = ray.remote(num_cpus=1)(_synthesize_task)
    tiny_models = ray.remote(num_cpus=1)(_tiny_models_task)
    pending = {}
    datasets = {}
    for source in synthetic_sources(config):
        out = synthetic_dir(run_dir, source, config.system_prompt)
        datasets[source] = out
        if not _manifest_matches(out / "manifest.json", **_synthetic_manifest_keys(source)):
            pending[f"dataset {out.name}"] = synthesize.remote(str(out), source,
                                                               config.system_prompt)
    policy, disc = config.models.policy, config.models.discriminator
    models_dir = run_dir / "models"
    if isinstance(policy, TinyModel) or isinstance(disc, TinyModel):
        seed = policy.seed if isinstance(policy, TinyModel) else disc.seed
        presets = (policy.preset if isinstance(policy, TinyModel) else "policy",
                   disc.preset if isinstance(disc, TinyModel) else "discriminator")
        if not _manifest_matches(models_dir / "policy" / "prism_tiny.json", seed=seed,
                                 preset=presets[0], system_prompt=config.system_prompt):
            used = tuple(name for name, source in (("policy", policy), ("discriminator", disc))
                         if isinstance(source, TinyModel))
            pending["tiny " + " and ".join(used)] = tiny_models.remote(
                str(models_dir), seed, *presets, config.system_prompt, used)
    for label in pending:
        print(f"[prepare] building {label} ...", flush=True)
    for label, ref in pending.items():
        print(f"[prepare] {label}: {ray.get(ref)}", flush=True)
    return RunAssets(
        policy=_model_path(policy, models_dir / "policy"),
        discriminator=_model_path(disc, models_dir / "discriminator"),
        synthetic=datasets,
    )


def _model_path(source: TinyModel | PretrainedModel, tiny_dir: Path) -> str:
    return str(tiny_dir) if isinstance(source, TinyModel) else source.path


def _manifest_matches(path: Path, **expected) -> bool:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return all(manifest.get(k) == v for k, v in expected.items())


def _synthetic_manifest_keys(source: SyntheticData) -> dict:
    """What a reusable dataset's manifest must say (a stale format is rebuilt)."""
    from prism_ray.data.synthetic import FORMAT_VERSION

    return {"format_version": FORMAT_VERSION, "seed": source.seed, "size": source.size.value,
            **_task_settings(source)}


def _task_settings(source: SyntheticData) -> dict:
    """The task knobs ``synthesize`` takes, by name (also what its manifest records)."""
    return {name: getattr(source, name) for name in (
        "public_perception_error", "public_reasoning_error", "public_answer_drift",
        "digit_probability", "warmup_matched_negatives")}


def _synthesize_task(out: str, source: SyntheticData, system_prompt: str | None) -> str:
    from prism_ray.data.synthetic import synthesize

    manifest = synthesize(out, seed=source.seed, size=source.size, image_size=source.image_size,
                          overwrite=True, system_prompt=system_prompt, **_task_settings(source))
    return ", ".join(f"{k}={v}" for k, v in manifest["counts"].items())


def _tiny_models_task(out: str, seed: int, policy_preset: str, disc_preset: str,
                      system_prompt: str | None, used: tuple[str, ...]) -> str:
    """Builds the pair (they share one tokenizer); reports only the ones the run uses."""
    from prism_ray.models.tiny import create_tiny_pair

    policy, disc = create_tiny_pair(out, seed, policy_preset, disc_preset, system_prompt)
    # The tokenizer learned the prompt's words: a run with another prompt rebuilds the models.
    manifest = policy / "prism_tiny.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()),
                                    "system_prompt": system_prompt}, indent=2) + "\n")
    paths = {"policy": policy, "discriminator": disc}
    sizes = {name: json.loads((paths[name] / "prism_tiny.json").read_text())["parameters"]
             for name in used}
    label = {"policy": "policy", "discriminator": "discriminator backbone"}
    return ", ".join(f"{label[name]} {n:,} params" for name, n in sizes.items())
