import subprocess
import sys

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
