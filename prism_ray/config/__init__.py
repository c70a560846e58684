"""The typed configuration: one pydantic schema, YAML overlays, command-line overrides."""

from prism_ray.config.loader import ConfigError, dump_config, load_config
from prism_ray.config.phases import (
    DAPO,
    GRPO,
    GSPO,
    AlignPhase,
    DiscWarmupPhase,
    EvalPhase,
    RLVRPhase,
    SFTPhase,
)
from prism_ray.config.run import RunConfig

__all__ = [
    "DAPO", "GRPO", "GSPO", "AlignPhase", "ConfigError", "DiscWarmupPhase", "EvalPhase",
    "RLVRPhase", "RunConfig", "SFTPhase", "dump_config", "load_config",
]
