"""The verifier pool on a real local Ray cluster."""

from __future__ import annotations

import pytest

from prism_ray.actors.verifier import VerifierPool
from prism_ray.config.phases import RewardConfig
from prism_ray.config.schema import Resources, VerifierConfig
from prism_ray.types import VerifyRequest
from prism_ray.verify import Reason

pytestmark = pytest.mark.ray


def response(answer: str, caption: str = "- a red circle") -> str:
    return (f"<caption>\n{caption}\n</caption>\n<think>\nCount them.\n</think>\n"
            f"<answer>\n{answer}\n</answer>")


REQUESTS = [
    VerifyRequest(response("3"), "3"),  # correct
    VerifyRequest(response("4"), "3"),  # wrong
    VerifyRequest("3", "3"),  # format fails
    VerifyRequest(response("three"), "3", ("three",)),  # equivalent answer
    VerifyRequest(response("B"), "B"),
    VerifyRequest(response("\\frac{1}{2}"), "0.5"),  # symbolic / numeric
    VerifyRequest(response("9^{9^{9^{9}}}"), "1"),  # hostile: must not hang
    VerifyRequest(response(""), "3"),  # empty answer
]


@pytest.fixture(scope="module")
def pool(ray_cluster):
    config = VerifierConfig(num_workers=2, resources=Resources(num_cpus=0.25), timeout_s=2.0,
                            batch_size=3)
    pool = VerifierPool(config, placement_timeout_s=30)
    yield pool
    pool.shutdown()


def test_scores_in_order_with_counts_and_progress(pool):
    progress = []
    report = pool.score(REQUESTS, RewardConfig(), on_batch=lambda d, t: progress.append((d, t)))
    scores = [r.score for r in report.results]
    assert scores[:6] == [1.0, 0.2, 0.0, 1.0, 1.0, 1.0]
    assert report.results[6].accuracy == 0.0
    assert report.results[7].reason is Reason.EMPTY_ANSWER and scores[7] == 0.2
    assert progress[-1] == (3, 3) and len(progress) == 3
    assert sum(report.reasons.values()) == len(REQUESTS)


def test_reward_weights_come_from_the_phase(pool):
    report = pool.score(REQUESTS[:2], RewardConfig(accuracy_weight=0.5, format_weight=0.5))
    assert [r.score for r in report.results] == [1.0, 0.5]


def test_a_dead_worker_is_replaced_and_costs_no_response(ray_cluster):
    ray = ray_cluster
    config = VerifierConfig(num_workers=2, resources=Resources(num_cpus=0.25), timeout_s=2.0,
                            batch_size=3)
    pool = VerifierPool(config, placement_timeout_s=30)
    try:
        ray.kill(pool.group.actors[0], no_restart=True)
        report = pool.score(REQUESTS, RewardConfig())
        # Found dead before the call, replaced: every response verified, none lost.
        assert report.errors == 0 and len(report.results) == len(REQUESTS)
        assert [r.score for r in report.results[:6]] == [1.0, 0.2, 0.0, 1.0, 1.0, 1.0]
        assert pool.faults["workers_lost"] == 1 and len(pool.group) == 2
    finally:
        pool.shutdown()
