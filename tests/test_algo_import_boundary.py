import ast
import subprocess
import sys
from pathlib import Path

import prism_ray

HEAVY = ("ray", "vllm", "deepspeed", "transformers")


def _loaded_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    code = f"import sys; {statement}; print(','.join(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return [name for name in out.stdout.strip().split(",") if name]


def test_pure_packages_import_no_heavy_frameworks():
    assert _loaded_after("import prism_ray.algo, prism_ray.verify", HEAVY) == []


def test_verifier_does_not_import_torch():
    assert _loaded_after("import prism_ray.verify", ("torch", *HEAVY)) == []


def _imported_modules(path: Path, package: str) -> set[str]:
    """Every module a source file of ``package`` imports, at any depth (function-local imports
    included), relative imports resolved; ``from a import b`` counts as ``a`` and ``a.b``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_jobs_never_import_the_driver():
    # Submission runs on a laptop without the training stack; the driver runs on the cluster.
    root = Path(prism_ray.__file__).parent
    modules = sorted((root / "jobs").rglob("*.py"))
    assert modules
    offending = {}
    for path in modules:
        package = ".".join(("prism_ray", *path.parent.relative_to(root).parts))
        offending[str(path.relative_to(root))] = sorted(
            name for name in _imported_modules(path, package)
            if name.split(".")[:2] == ["prism_ray", "driver"])
    assert {k: v for k, v in offending.items() if v} == {}
