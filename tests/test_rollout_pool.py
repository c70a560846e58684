"""RolloutPool on a local Ray cluster: order and group sizes, load spreading, elasticity and
the weight-version contract for new workers, a readable placement failure."""

from __future__ import annotations

import pytest
import torch

from prism_ray.actors.group import PlacementError
from prism_ray.actors.rollout_pool import RolloutPool
from prism_ray.config.run import RunConfig
from prism_ray.config.schema import Resources, RolloutConfig
from prism_ray.data.readers import read_rl_parquet
from prism_ray.data.synthetic import synthesize
from prism_ray.types import SamplingParams

pytestmark = pytest.mark.ray

PARAMS = SamplingParams(n=2, max_tokens=6, seed=0)
SYSTEM_PROMPT = RunConfig().system_prompt  # the schema's default


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    out = tmp_path_factory.mktemp("rl_data")
    synthesize(out, size="tiny")
    return read_rl_parquet(out / "align" / "train.parquet").records[:4]


def config(num_workers: int, **resources) -> RolloutConfig:
    return RolloutConfig(num_workers=num_workers,
                         resources=Resources(**({"num_cpus": 1.0} | resources)))


def assert_groups(groups, prompts, n):
    assert [g[0].prompt_uid for g in groups] == [p.uid for p in prompts]
    assert all([r.sample_index for r in g] == list(range(n)) for g in groups)
    assert all(r.prompt_uid == p.uid for g, p in zip(groups, prompts) for r in g)


def sync(actors, version: int) -> None:
    """Stand-in for the weight sync: one bucket (the current weights) to each actor."""
    import ray

    bucket = [("model.language_model.norm.weight", torch.full((128,), 0.5))]
    ray.get([a.load_weights.remote(bucket, version, True) for a in actors])


def test_pool_generates_in_order_and_grows_and_shrinks(ray_cluster, tiny_pair, prompts):
    joined = []
    pool = RolloutPool(config(2), tiny_pair[0], seed=0, placement_timeout_s=60,
                       system_prompt=SYSTEM_PROMPT,
                       on_new_workers=lambda actors: (joined.extend(actors), sync(actors, 1)))
    with pool:
        assert [len(p) for p in pool._assign(4, 2, pool.group.actors)] == [2, 2]
        assert_groups(pool.generate(prompts, PARAMS, expect_version=0), prompts, 2)

        sync(pool.group.actors, version=1)
        new = pool.add_workers(1)
        assert joined == new and pool.num_workers == 3
        assert pool.weight_versions() == [1, 1, 1]
        groups = pool.generate(prompts, PARAMS, expect_version=1)
        assert_groups(groups, prompts, 2)

        pool.remove_workers(1)
        assert pool.num_workers == 2
        assert_groups(pool.generate(prompts[:3], PARAMS, expect_version=1), prompts[:3], 2)
        with pytest.raises(ValueError):
            pool.remove_workers(2)  # at least one worker stays


def test_unsynced_new_worker_is_caught_and_load_is_spread(ray_cluster, tiny_pair, prompts):
    with RolloutPool(config(1), tiny_pair[0], seed=0, placement_timeout_s=60,
                     system_prompt=SYSTEM_PROMPT) as pool:
        sync(pool.group.actors, version=3)
        pool.add_workers(1)  # no on_new_workers hook: the caller must sync; it "forgot"
        with pytest.raises(RuntimeError, match="missed a weight sync"):
            pool.generate(prompts, PARAMS, expect_version=3)
        # Outstanding work steers new prompts: a busy worker gets none of the next call.
        busy = pool.submit(prompts[:1], SamplingParams(n=4, max_tokens=6, seed=0))
        plan = pool._assign(2, 2, pool.group.actors)
        assert plan == [[], [0, 1]]
        pool.collect(busy)
        assert pool._assign(2, 2, pool.group.actors) == [[0], [1]]


def test_unplaceable_pool_names_the_role(ray_cluster, tiny_pair):
    with pytest.raises(PlacementError, match="rollout"):
        RolloutPool(config(1, num_gpus=1.0), tiny_pair[0], seed=0, placement_timeout_s=2,
                    system_prompt=SYSTEM_PROMPT)


@pytest.mark.parametrize("when", ["before_generation", "mid_generation"])
def test_a_killed_worker_is_replaced_and_its_prompts_regenerated(ray_cluster, tiny_pair,
                                                                  prompts, when):
    """0 groups lost, 0 duplicated: every prompt position gets exactly its n samples; the
    replacement is brought to the current weights (the hook) before it serves."""
    import ray

    joined = []
    pool = RolloutPool(config(2, num_cpus=0.5), tiny_pair[0], seed=0, placement_timeout_s=60,
                       system_prompt=SYSTEM_PROMPT,
                       on_new_workers=lambda actors: (joined.extend(actors), sync(actors, 2)))
    with pool:
        sync(pool.group.actors, version=2)
        victim = pool.group.actors[0]
        if when == "before_generation":
            ray.kill(victim, no_restart=True)
            pending = pool.submit(prompts, PARAMS)
        else:
            pending = pool.submit(prompts, SamplingParams(n=2, max_tokens=24, seed=0))
            ray.kill(victim, no_restart=True)
        groups = pool.collect(pending, expect_version=2)
        assert_groups(groups, prompts, 2)
        samples = [(r.prompt_uid, r.sample_index) for g in groups for r in g]
        assert len(samples) == len(set(samples)) == 2 * len(prompts)
        assert pool.faults == {"workers_lost": 1, "prompts_requeued": 2}
        assert len(joined) == 1 and pool.num_workers == 2
        assert all(a._actor_id != victim._actor_id for a in pool.group.actors)
        assert pool.weight_versions() == [2, 2]
