"""No dead config: every field of the schema is read somewhere in the package.

A field that nothing reads is a setting a user can change to no effect. The check is textual:
each field name must appear as an attribute (``.name``) or a string (``"name"``) in a module
of ``prism_ray`` outside ``prism_ray/config/``, or as ``self.name`` in a method of a config
class that is not a validator (a phase computing its own step count reads its fields for the
driver). Fields read only through a generic mechanism are listed in ``READ_GENERICALLY``
with the reason. Being textual, it cannot tell two fields of one name apart: a field whose
name another model also uses passes when either is read.
"""

from __future__ import annotations

import ast
import inspect
import re
import typing
from pathlib import Path

from pydantic import BaseModel

import prism_ray
from prism_ray.config import phases, run, schema

PACKAGE = Path(prism_ray.__file__).parent

# field name → how it is read without being named in the package source.
READ_GENERICALLY: dict[str, str] = {
    "trust_remote_code": "read by PretrainedModel's validator, which refuses true with a reason",
}
VALIDATORS = {"model_validator", "field_validator", "validator", "root_validator"}


def _models_in(annotation) -> set[type[BaseModel]]:
    """Every pydantic model an annotation can hold: unions, tagged unions, containers."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return {annotation}
    found: set[type[BaseModel]] = set()
    for arg in typing.get_args(annotation):
        found |= _models_in(arg)
    return found


def schema_models() -> set[type[BaseModel]]:
    """RunConfig and every model reachable from it, plus every model the config modules
    define (phase classes and union members included, reachable or not)."""
    pending = [run.RunConfig]
    for module in (schema, phases, run):
        pending += [obj for obj in vars(module).values() if inspect.isclass(obj)
                    and issubclass(obj, BaseModel) and obj.__module__ == module.__name__]
    seen: set[type[BaseModel]] = set()
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        for field in model.model_fields.values():
            pending += _models_in(field.annotation)
    return seen


def package_source() -> str:
    config = PACKAGE / "config"
    return "\n".join(path.read_text(encoding="utf-8") for path in sorted(PACKAGE.rglob("*.py"))
                     if config not in path.parents)


def _decorator_name(node: ast.expr) -> str:
    node = node.func if isinstance(node, ast.Call) else node
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def read_by_config_methods() -> set[str]:
    """``self.<attr>`` read in methods of classes under prism_ray/config/, validators aside."""
    names: set[str] = set()
    for path in (PACKAGE / "config").rglob("*.py"):
        for cls in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(cls, ast.ClassDef):
                continue
            for method in cls.body:
                if not isinstance(method, ast.FunctionDef) or any(
                        _decorator_name(d) in VALIDATORS for d in method.decorator_list):
                    continue
                names |= {node.attr for node in ast.walk(method)
                          if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                          and node.value.id == "self"}
    return names


def _is_read(name: str, source: str) -> bool:
    pattern = rf"\.{re.escape(name)}\b|[\"']{re.escape(name)}[\"']"
    return re.search(pattern, source) is not None


def test_schema_walk_reaches_every_phase_and_union_member():
    names = {model.__name__ for model in schema_models()}
    assert {"RunConfig", "SFTPhase", "DiscWarmupPhase", "AlignPhase", "RLVRPhase", "EvalPhase",
            "GRPO", "DAPO", "GSPO", "TinyModel", "PretrainedModel", "SyntheticData",
            "ShareGPTData", "RLParquetData", "WarmupJsonlData", "VerifierConfig"} <= names


def test_every_config_field_is_read_outside_the_config_package():
    source, by_methods = package_source(), read_by_config_methods()
    dead = sorted(f"{model.__name__}.{name}" for model in schema_models()
                  for name in model.model_fields
                  if name not in READ_GENERICALLY and name not in by_methods
                  and not _is_read(name, source))
    assert dead == []


def test_the_allow_list_names_only_real_fields():
    fields = {name for model in schema_models() for name in model.model_fields}
    assert set(READ_GENERICALLY) <= fields
