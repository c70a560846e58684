"""Shared fixtures. Heavy ones (checkpoints, Ray) are session-scoped: this suite runs on
two CPU cores and every torch-importing process costs seconds and ~300 MB."""

from __future__ import annotations

import os

import pytest

# Tests never leave loopback and never need Ray's token auth.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TOKENIZER_TEXTS = 400  # enough for a useful BPE on the synthetic task, fast to train


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory):
    """The embedded default checkpoints (policy + discriminator backbone), built once."""
    from prism_ray.models.tiny import PRESETS, create_tiny_checkpoint, default_corpus
    from prism_ray.models.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tiny")
    from prism_ray.config.run import RunConfig

    system_prompt = RunConfig().system_prompt
    tokenizer = train_tokenizer(default_corpus(seed=0, system_prompt=system_prompt,
                                               n=TOKENIZER_TEXTS),
                                vocab_size=PRESETS["policy"].vocab_size)
    policy = create_tiny_checkpoint(out / "policy", "policy", seed=0, tokenizer=tokenizer)
    disc = create_tiny_checkpoint(out / "discriminator", "discriminator", seed=1,
                                  tokenizer=tokenizer)
    return policy, disc


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster on loopback for the whole session (starting one costs ~6 s and
    ~0.7 GB). Logical CPUs exceed the two physical cores so a few actors fit side by side."""
    import ray

    # Workers import actor classes defined in test modules by module name: give them tests/.
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    path = os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=6, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": path}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """The synthetic task at size "tiny", synthesized once: its directory."""
    from prism_ray.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("tiny-data")
    synthesize(root, size="tiny")
    return root
