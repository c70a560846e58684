"""Layered loading: schema defaults ← recipe ← cluster file ← command-line ``a.b=c`` overrides.

YAML files are sparse overlays merged with omegaconf (dicts merge deeply, lists replace);
the merged tree is validated once by the pydantic schema. Every validation error is traced
back to the layer that last set the offending key, so messages name the file it came from.

Every bad input, at any stage (reading, parsing, merging, overriding, validating), is a
``ConfigError`` whose lines each name the file or override, the key and what is allowed.
"""

from __future__ import annotations

import re
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
    merged = _merge(layers.files)
    for text in overrides:
        key, value = _parse_override(text)
        path = _apply_override(merged, key, value, text)
        layers.overrides.append((path, f"command line {text!r}"))
    try:
        tree = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{_key_of(e)}cannot resolve interpolation: {_omegaconf_message(e)}"
                          ) from None
    except RecursionError:
        raise ConfigError("interpolations refer to each other in a cycle") from None
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_explain(e, tree, layers)) from None


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _omegaconf_message(error: Exception) -> str:
    """omegaconf's message without its ``full_key:``/``object_type=`` trailer."""
    return _one_line(str(error).split("\n")[0])


def _key_of(error: Exception) -> str:
    key = getattr(error, "full_key", None)
    return f"{key}: " if key else ""


# ─────────────────────────── reading YAML files ───────────────────────────


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 numbers (``1e-6`` is a float, as in overrides) and
    no timestamps (``2024-01-01`` stays text)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)

_SCALARS = (str, int, float, bool, type(None))
# What PyYAML's constructors raise for a scalar they cannot build (``0x_``, ``!!int x``).
_CONSTRUCTION_ERRORS = (ValueError, TypeError, AttributeError, OverflowError)


def read_yaml_mapping(path: Path) -> dict:
    """A YAML file whose top level is a mapping (empty file: {}); ConfigError in one line."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} on line {line}); "
                          "save the recipe as UTF-8") from None
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {_one_line(e)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    if root is None:
        return {}
    _refuse_duplicate_keys(path, root)
    try:
        data = _Loader(text).construct_document(root)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {_one_line(e)}") from None
    except _CONSTRUCTION_ERRORS as e:
        raise ConfigError(f"{path}: not valid YAML: a value cannot be read ({_one_line(e)})"
                          ) from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    _check_tree(path, data, (), set())
    return data


def _refuse_duplicate_keys(path: Path, root: yaml.Node) -> None:
    """A key written twice in one mapping is an error (PyYAML would keep the last silently)."""
    pending: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())]
    seen: set[int] = set()
    while pending:
        node, where = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            lines: dict[str, int] = {}
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag.endswith(":merge"):
                    continue
                line = key.start_mark.line + 1
                if key.value in lines:
                    dotted = ".".join((*where, key.value))
                    raise ConfigError(f"{path}: {dotted}: duplicate key (lines "
                                      f"{lines[key.value]} and {line}); write each key once")
                lines[key.value] = line
                pending.append((value, (*where, key.value)))
        elif isinstance(node, yaml.SequenceNode):
            pending += [(item, (*where, str(i))) for i, item in enumerate(node.value)]


def _check_tree(path: Path, node: Any, where: tuple[str, ...], active: set[int]) -> None:
    """Only what a config can hold: mappings with text or integer keys, lists, scalars."""
    dotted = ".".join(where) or "<root>"
    if isinstance(node, _SCALARS):
        return
    if id(node) in active:
        raise ConfigError(f"{path}: {dotted}: an alias refers to the node that contains it")
    if isinstance(node, dict):
        children = []
        for key, value in node.items():
            if isinstance(key, bool) or not isinstance(key, str | int):
                raise ConfigError(f"{path}: {dotted}: key {key!r} must be text (quote it)")
            children.append((str(key), value))
    elif isinstance(node, list):
        children = [(str(i), value) for i, value in enumerate(node)]
    else:
        raise ConfigError(f"{path}: {dotted}: a {type(node).__name__} is not a config value; "
                          "use text, numbers, booleans, lists and mappings")
    active.add(id(node))
    for key, value in children:
        _check_tree(path, value, (*where, key), active)
    active.discard(id(node))


# ─────────────────────────── merging and overrides ───────────────────────────


def _merge(files: list[tuple[str, dict]]) -> DictConfig:
    """Merge the file layers in order; a layer that does not fit is named in the error."""
    merged = OmegaConf.create({})
    for source, data in files:
        phases = data.get("phases")
        if "phases" in data and not isinstance(phases, list):
            shape = "a mapping" if isinstance(phases, dict) else repr(phases)
            raise ConfigError(f"{source}: phases: must be a list of phases (each item "
                              f"'- kind: ...'), got {shape}")
        try:
            merged = OmegaConf.merge(merged, OmegaConf.create(data))
        except OmegaConfBaseException as e:
            raise ConfigError(f"{source}: {_key_of(e)}{_omegaconf_message(e)}") from None
    return merged


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"command line {text!r}: overrides are written key.path=value")
    # omegaconf's dotlist parser gives YAML typing: 3 → int, 1e-6 → float, [a,b] → list.
    try:
        value = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={raw}"]))["v"]
    except (OmegaConfBaseException, yaml.YAMLError, *_CONSTRUCTION_ERRORS) as e:
        reason = _one_line(e).split(" in \"<unicode string>\"")[0]
        raise ConfigError(f"command line {text!r}: the value {raw!r} is not valid YAML "
                          f"({reason}); quote text that holds [ ] {{ }} : or #") from None
    return key.strip(), value


_KEY_PART = re.compile(r"^[A-Za-z0-9_\-]+$")


def _apply_override(merged: DictConfig, key: str, value: Any, text: str) -> tuple[str, ...]:
    """Set ``key`` in the merged tree; phases may be addressed by index or by name."""
    parts = key.split(".")
    bad = next((part for part in parts if not _KEY_PART.match(part)), None)
    if bad is not None:
        raise ConfigError(f"command line {text!r}: {bad!r} is not a key; keys are dotted names "
                          "(letters, digits, _ and -), phases by index or name")
    if parts[0] == "phases" and len(parts) > 1 and not parts[1].isdigit():
        parts[1] = str(_phase_index(merged, parts[1], text))
    phases = merged.get("phases")
    if parts[0] == "phases" and len(parts) > 1 and isinstance(phases, ListConfig) \
            and int(parts[1]) >= len(phases):
        indices = f", indices 0 to {len(phases) - 1}" if len(phases) else ""
        raise ConfigError(f"command line {text!r}: no phase {parts[1]}; the run has "
                          f"{len(phases)} phase(s){indices}; phases are addressed by index "
                          "or name")
    _check_list_steps(merged, parts, text)
    try:
        OmegaConf.update(merged, ".".join(parts), value, merge=True, force_add=True)
    except (OmegaConfBaseException, ValueError, IndexError) as e:
        raise ConfigError(f"command line {text!r}: {_omegaconf_message(e)}") from None
    return tuple(parts)


def _check_list_steps(merged: DictConfig, parts: list[str], text: str) -> None:
    """A key that steps into a list must name an existing item by its index."""
    node: Any = merged
    for depth, part in enumerate(parts):
        if isinstance(node, ListConfig) and not (part.isdigit() and int(part) < len(node)):
            where = ".".join(parts[:depth])
            if not node:
                raise ConfigError(f"command line {text!r}: {where} is an empty list; set it "
                                  f"whole ({where}=[...])")
            raise ConfigError(f"command line {text!r}: {where} is a list of {len(node)} "
                              f"item(s); address an item by its index (0 to {len(node) - 1})")
        if not isinstance(node, DictConfig | ListConfig):
            return  # a scalar or an absent key: OmegaConf.update builds or names the path
        try:
            node = node[int(part)] if isinstance(node, ListConfig) else node.get(part)
        except OmegaConfBaseException:  # e.g. an interpolation that does not resolve
            return  # named by OmegaConf.update below


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


# ─────────────────────────── explaining validation errors ───────────────────────────


def _explain(error: ValidationError, tree: dict, layers: _Layers) -> str:
    """One line per error: ``<source>: <key>: <what is wrong and what is allowed>``."""
    items = _relevant(error.errors(include_url=False))
    lines = [f"invalid configuration ({len(items)} error(s)):"]
    for item in items:
        missing = item["type"] == "missing"
        path = _data_path(tree, item["loc"], keep_last=missing)
        where = _source_of(path[:-1] if missing else path, layers)  # who wrote the node
        key = _readable(path, tree)
        lines.append(f"  {where}: {key}: {_one_line(_message(item))}")
    return "\n".join(lines)


def _relevant(items: list[dict]) -> list[dict]:
    """Drop a container's length error caused by its own failed items: a phase that fails
    also leaves ``phases`` one item short, which says nothing about the phase."""
    def inside(item: dict, other: dict) -> bool:
        return len(other["loc"]) > len(item["loc"]) and other["loc"][:len(item["loc"])] == \
            item["loc"]

    return [item for item in items
            if item["type"] not in ("too_short", "too_long")
            or not any(inside(item, other) for other in items if other is not item)] or items


# Keys that were renamed: a recipe still using the old name is told the new one.
RENAMED = {"max_steps": "steps"}


def _message(item: dict) -> str:
    kind, ctx, given = item["type"], item.get("ctx") or {}, item.get("input")
    if kind == "extra_forbidden":
        old = item["loc"][-1] if item["loc"] else None
        return f"unknown key: renamed to {RENAMED[old]}" if old in RENAMED else "unknown key"
    if kind == "missing":
        return "required"
    if kind == "union_tag_invalid":
        field = next((k for k, v in given.items() if v == ctx.get("tag")), "tag") \
            if isinstance(given, dict) else "tag"
        return f"unknown {field} {ctx.get('tag')!r}; allowed: {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        from prism_ray.config.kinds import PHASE_KINDS

        return f"a phase must say its kind: one of {', '.join(PHASE_KINDS)} (got {_short(given)})"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s) (got {_short(given)})"
    message = item["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if kind.endswith(("_type", "_parsing")) or kind in ("finite_number", "literal_error", "enum"):
        return f"{message} (got {_short(given)})"
    if kind in ("value_error", "assertion_error") and isinstance(given, dict | list):
        return message  # a whole-node check: the input is the node itself
    return f"{message} (got {_short(given)})"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def _data_path(tree: Any, loc: tuple, keep_last: bool = False) -> tuple[str, ...]:
    """Map a pydantic error location onto keys of the data.

    Discriminated unions add their tag to the location (``phases.2.rlvr.steps``); a tag is
    recognisable as a string that is not a key of the node. It is the last element when a
    whole node fails its own check (``phases.2.rlvr``), unless a key is ``missing``.
    """
    path: list[str] = []
    node = tree
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not (last and keep_last):
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
