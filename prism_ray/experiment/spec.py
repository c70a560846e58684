"""The experiment file: which recipe, seeds, RLVR algorithms and ablations to compare.

A sparse YAML overlay on the schema below (every default lives here). Command-line flags
(``--seeds 0,1``) replace a key, positional ``a.b=c`` overrides are appended to
``overrides``; a bad key or value fails in one line naming the key and where it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from prism_ray.config import ConfigError
from prism_ray.config.loader import read_yaml_mapping
from prism_ray.experiment.plan import ABLATIONS

Algorithm = Literal["grpo", "dapo", "gspo"]


class ExperimentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.\-]+$",
        description="experiment name, prefix of every run name; None: the file's stem")
    recipe: str = Field(
        "recipes/tiny.yaml", description="the run recipe every arm starts from (the embedded "
                                         "default: tiny model, synthetic task)")
    seeds: tuple[int, ...] = Field(
        (0, 1, 2), min_length=1, description="one run per arm and seed; arms are paired by seed")
    algorithms: tuple[Algorithm, ...] = Field(
        ("grpo",), min_length=1, description="RLVR algorithms; each gets a PRISM and an SFT arm")
    ablations: tuple[str, ...] = Field(
        (), description=f"extra PRISM arms per algorithm, from {sorted(ABLATIONS)}")
    overrides: tuple[str, ...] = Field(
        (), description="a.b=c overrides applied to every run (after the recipe)")
    tracking: bool = Field(
        True, description="log the summary to an MLflow parent run in <output_dir>/mlflow.db "
                          "(each run keeps its own, per its tracking settings)")
    output_dir: str = Field(
        "runs/experiments/{name}", description="where runs and results go; '{name}' is replaced")

    @field_validator("seeds", "algorithms", "ablations")
    @classmethod
    def _unique(cls, values: tuple) -> tuple:
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"repeated: {repeated}")
        return values

    @field_validator("ablations")
    @classmethod
    def _known_ablations(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [v for v in values if v not in ABLATIONS]
        if unknown:
            raise ValueError(f"unknown {unknown}; known: {sorted(ABLATIONS)}")
        return values

    @field_validator("overrides")
    @classmethod
    def _overrides_are_assignments(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in values if "=" not in v]
        if bad:
            raise ValueError(f"overrides are written key.path=value; got {bad}")
        return values

    @property
    def out_dir(self) -> Path:
        return Path(self.output_dir.replace("{name}", self.name or "experiment"))


def load_experiment(path: str | Path | None, *, seeds: str | None = None,
                    algorithms: str | None = None, ablations: str | None = None,
                    overrides: tuple[str, ...] = (), out: str | None = None) -> ExperimentConfig:
    """The experiment file (None: schema defaults) with command-line flags on top.

    Flags are comma-separated lists as typed (``--seeds 0,1``); an empty string means none.
    """
    data = read_yaml_mapping(Path(path)) if path is not None else {}
    source = {key: str(path) if path is not None else "defaults" for key in data}
    flags = {"seeds": seeds, "algorithms": algorithms, "ablations": ablations, "output_dir": out}
    for key, value in flags.items():
        if value is not None:
            data[key] = value if key == "output_dir" else [v for v in value.split(",") if v]
            source[key] = f"command line --{key.replace('output_dir', 'out')}"
    if overrides:
        data["overrides"] = [*(data.get("overrides") or []), *overrides]
        source["overrides"] = "command line"
    data.setdefault("name", Path(path).stem if path is not None else "prism-vs-rlvr")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_one_line(e, source, str(path or "defaults"))) from None


def _one_line(error: ValidationError, source: dict[str, str], default: str) -> str:
    parts = []
    for item in error.errors(include_url=False):
        key = ".".join(str(p) for p in item["loc"]) or "<root>"
        where = source.get(str(item["loc"][0]), default) if item["loc"] else default
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        if item["type"] not in ("extra_forbidden", "missing") and "input" in item:
            message += f" (got {item['input']!r})"
        parts.append(f"{where}: {key}: {message}")
    return "; ".join(parts)
