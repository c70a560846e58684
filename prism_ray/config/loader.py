"""Layered loading: schema defaults ← recipe ← cluster file ← command-line ``a.b=c`` overrides.

YAML files are sparse overlays merged with omegaconf (dicts merge deeply, lists replace);
the merged tree is validated once by the pydantic schema. Every validation error is traced
back to the layer that last set the offending key, so messages name the file it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import ValidationError

from prism_ray.config.run import DEFAULT_PHASES, RunConfig

DEFAULTS = "schema defaults"


class ConfigError(ValueError):
    """A bad recipe, cluster file or override; the message names the key and where it came from."""


@dataclass
class _Layers:
    """The merge inputs, kept apart so errors can be attributed to their source."""

    files: list[tuple[str, dict]] = field(default_factory=list)
    overrides: list[tuple[tuple[str, ...], str]] = field(default_factory=list)


def load_config(
    recipe: str | Path | None = None,
    overrides: Sequence[str] = (),
    cluster: str | Path | None = None,
) -> RunConfig:
    """Resolve a run configuration. Raises ConfigError naming the key and its source."""
    layers = _Layers(files=[(DEFAULTS, {"phases": [dict(p) for p in DEFAULT_PHASES]})])
    for path in (recipe, cluster):
        if path is not None:
            layers.files.append((str(path), read_yaml_mapping(Path(path))))
    merged = OmegaConf.merge(*(OmegaConf.create(data) for _, data in layers.files))
    for text in overrides:
        key, value = _parse_override(text)
        path = _apply_override(merged, key, value, text)
        layers.overrides.append((path, f"command line {text!r}"))
    try:
        tree = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot resolve interpolation: {e}") from None
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_explain(e, tree, layers)) from None


def read_yaml_mapping(path: Path) -> dict:
    """A YAML file whose top level is a mapping (empty file: {}); ConfigError in one line."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"command line {text!r}: overrides are written key.path=value")
    # omegaconf's dotlist parser gives YAML typing: 3 → int, 1e-6 → float, [a,b] → list.
    value = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={raw}"]))["v"]
    return key.strip(), value


def _apply_override(merged: DictConfig, key: str, value: Any, text: str) -> tuple[str, ...]:
    """Set ``key`` in the merged tree; phases may be addressed by index or by name."""
    parts = key.split(".")
    if parts[0] == "phases" and len(parts) > 1 and not parts[1].isdigit():
        parts[1] = str(_phase_index(merged, parts[1], text))
    try:
        OmegaConf.update(merged, ".".join(parts), value, merge=True, force_add=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"command line {text!r}: {e.msg if hasattr(e, 'msg') else e}") from None
    return tuple(parts)


def _phase_index(merged: DictConfig, name: str, text: str) -> int:
    phases = merged.get("phases")
    if isinstance(phases, ListConfig):
        for i, phase in enumerate(phases):
            if isinstance(phase, DictConfig) and phase.get("name", phase.get("kind")) == name:
                return i
        known = [p.get("name", p.get("kind")) for p in phases if isinstance(p, DictConfig)]
    else:
        known = []
    raise ConfigError(f"command line {text!r}: no phase named {name!r}; phases: {known}")


def _explain(error: ValidationError, tree: dict, layers: _Layers) -> str:
    lines = [f"invalid configuration ({error.error_count()} error(s)):"]
    for item in error.errors(include_url=False):
        path = _data_path(tree, item["loc"])
        where = _source_of(path, layers)
        key = _readable(path, tree)
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        if item["type"] not in ("extra_forbidden", "missing") and "input" in item:
            message += f" (got {item['input']!r})"
        lines.append(f"  {where}: {key}: {message}")
    return "\n".join(lines)


def _readable(path: tuple[str, ...], tree: dict) -> str:
    """``phases.3.steps`` → ``phases[3:rlvr].steps`` so the user sees which phase."""
    parts = list(path)
    if len(parts) > 1 and parts[0] == "phases" and parts[1].isdigit():
        phases = tree.get("phases") or []
        i = int(parts[1])
        if i < len(phases) and isinstance(phases[i], dict):
            label = phases[i].get("name", phases[i].get("kind", "?"))
            parts[0:2] = [f"phases[{i}:{label}]"]
    return ".".join(parts) or "<root>"


def _data_path(tree: Any, loc: tuple) -> tuple[str, ...]:
    """Map a pydantic error location onto keys of the data.

    Discriminated unions add their tag to the location (``phases.2.rlvr.steps``); a tag is
    recognisable as a string that is not a key of the node and is not the last element.
    """
    path: list[str] = []
    node = tree
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not last:
            continue
        else:
            node = None
        path.append(str(part))
    return tuple(path)


def _source_of(path: tuple[str, ...], layers: _Layers) -> str:
    """The last layer that set ``path`` (or its nearest existing parent)."""
    for override_path, label in reversed(layers.overrides):
        n = min(len(override_path), len(path))
        if override_path[:n] == path[:n]:
            return label
    for depth in range(len(path), -1, -1):
        for source, data in reversed(layers.files):
            if _contains(data, path[:depth]):
                return source
    return DEFAULTS


def _contains(data: Any, path: tuple[str, ...]) -> bool:
    node = data
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def dump_config(config: RunConfig) -> str:
    """The resolved configuration as YAML (what ``prism-ray config show`` prints)."""
    return OmegaConf.to_yaml(OmegaConf.create(config.model_dump(mode="json")))
