"""Worker faults on a real local Ray cluster, each injected with ray.kill: a rollout worker
killed in the middle of a weight sync, a verifier worker killed under a batch, a verifier
batch that hangs, and one rollout + verify step disturbed by a kill against the same step
undisturbed."""

from __future__ import annotations

import threading
import time

import pytest
from test_verifier_pool import REQUESTS
from test_weight_sync import _Sender

from prism_ray.actors.rollout_pool import RolloutPool
from prism_ray.actors.verifier import VerifierPool, VerifierWorker
from prism_ray.config.phases import RewardConfig
from prism_ray.config.run import RunConfig
from prism_ray.config.schema import Resources, RolloutConfig, VerifierConfig
from prism_ray.data.readers import read_rl_parquet
from prism_ray.sync.coordinator import WeightSync
from prism_ray.types import SamplingParams, VerifyRequest
from prism_ray.verify import Reason

pytestmark = pytest.mark.ray

SYSTEM_PROMPT = RunConfig().system_prompt


@pytest.fixture(scope="module")
def prompts(tiny_dataset):
    return read_rl_parquet(tiny_dataset / "rlvr" / "train.parquet").records[:4]


def kill_after(seconds: float, actor) -> threading.Thread:
    import ray

    def kill() -> None:
        time.sleep(seconds)
        ray.kill(actor, no_restart=True)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def sample_ids(groups) -> list[tuple[str, int]]:
    return [(r.prompt_uid, r.sample_index) for g in groups for r in g]


# ── a rollout worker killed during a weight sync ───────────────────────────────────────


class SlowSender(_Sender):
    """A learner stand-in whose per-bucket gather takes a while (as ZeRO-3 gathers do), so a
    push of many small buckets lasts long enough to be interrupted in the middle."""

    def gathered_buckets(self, plan):
        for bucket in super().gathered_buckets(plan):
            time.sleep(0.02)
            yield bucket


def test_a_worker_killed_mid_sync_is_replaced_and_synced(ray_cluster, tiny_pair, prompts):
    ray = ray_cluster
    config = RolloutConfig(num_workers=2, resources=Resources(num_cpus=0.5))
    pool = RolloutPool(config, tiny_pair[0], seed=0, placement_timeout_s=60,
                       system_prompt=SYSTEM_PROMPT)
    sender = ray.remote(num_cpus=0.5)(SlowSender).remote(path=str(tiny_pair[0]))
    try:
        # One tensor per bucket (~100 buckets at 20 ms each): the kill lands mid-push.
        sync = WeightSync([sender], "gloo", bucket_bytes=1, replace=pool.replace_workers)
        pool.on_new_workers = lambda _new: sync.resync(pool.group.actors)
        sync.connect(pool.group.actors)
        assert len(sync.plan) > 50
        ray.get(sender.perturb.remote(1))
        victim = pool.group.actors[0]
        killer = kill_after(0.6, victim)
        started = time.monotonic()
        stats = sync.push(version=1)
        killer.join()
        assert time.monotonic() - started < 60  # no hang on the dead receiver
        assert stats.version == 1 and sync.version == 1
        assert sync.faults == {"interrupted": 1}  # the push broke part-way and was redone
        assert pool.faults["workers_lost"] == 1 and pool.num_workers == 2
        assert all(a._actor_id != victim._actor_id for a in pool.group.actors)
        # The replacement holds the pushed version before it serves; so does the survivor.
        assert pool.weight_versions() == [1, 1]
        params = SamplingParams(n=2, max_tokens=6, seed=0)
        groups = pool.generate(prompts, params, expect_version=1)
        ids = sample_ids(groups)
        assert sorted(ids) == sorted((p.uid, i) for p in prompts for i in range(2))
        assert len(set(ids)) == len(ids)
        # The next version lands on the new group as usual.
        ray.get(sender.perturb.remote(2))
        assert sync.push(version=2).version == 2 and pool.weight_versions() == [2, 2]
    finally:
        ray.kill(sender)
        pool.shutdown()


# ── verifier workers killed under a batch, or hung ─────────────────────────────────────


class SlowVerifierWorker(VerifierWorker):
    """A real verifier whose every batch first takes ``DELAY_S`` (so a kill lands under it);
    a request whose ground truth is ``"hang"`` never returns (a check stuck for good)."""

    DELAY_S = 1.0

    def verify_batch(self, requests, reward):
        if any(r.ground_truth == "hang" for r in requests):
            time.sleep(3600)
        time.sleep(self.DELAY_S)
        return super().verify_batch(requests, reward)


def test_a_verifier_killed_mid_batch_loses_no_response(ray_cluster):
    ray = ray_cluster
    config = VerifierConfig(num_workers=2, resources=Resources(num_cpus=0.25), timeout_s=2.0,
                            batch_size=3)
    pool = VerifierPool(config, placement_timeout_s=30, worker_cls=SlowVerifierWorker)
    try:
        undisturbed = pool.score(REQUESTS, RewardConfig()).results
        progress = []
        victim = pool.group.actors[0]
        killer = kill_after(0.4, victim)  # batch 0 is in its one-second delay on the victim
        report = pool.score(REQUESTS, RewardConfig(),
                            on_batch=lambda done, total: progress.append((done, total)))
        killer.join()
        assert report.results == undisturbed  # every response verified once, in order
        assert report.errors == 0 and len(report.results) == len(REQUESTS)
        assert progress == [(1, 3), (2, 3), (3, 3)]
        assert pool.faults == {"workers_lost": 1, "batches_requeued": 1, "hung_batches": 0}
        assert len(pool.group) == 2
        assert all(a._actor_id != victim._actor_id for a in pool.group.actors)
        # A worker killed between calls is found and replaced before the next one.
        ray.kill(pool.group.actors[1], no_restart=True)
        assert pool.score(REQUESTS[:2], RewardConfig()).results == undisturbed[:2]
        assert pool.faults["workers_lost"] == 2 and pool.faults["batches_requeued"] == 1
    finally:
        pool.shutdown()


class HangingVerifierWorker(SlowVerifierWorker):
    DELAY_S = 0.0


def test_a_hung_batch_is_killed_split_and_its_hanging_response_timed_out(ray_cluster):
    # Budget of a batch: timeout_s per response + startup_timeout_s (rules only, no child).
    config = VerifierConfig(num_workers=1, resources=Resources(num_cpus=0.25), timeout_s=0.3,
                            startup_timeout_s=2.0, batch_size=3, math_verify=False)
    pool = VerifierPool(config, placement_timeout_s=30, worker_cls=HangingVerifierWorker)
    try:
        requests = [REQUESTS[0], VerifyRequest(REQUESTS[0].response, "hang"), REQUESTS[1],
                    REQUESTS[4]]
        started = time.monotonic()
        report = pool.score(requests, RewardConfig())
        elapsed = time.monotonic() - started
        # The batch of three hung: its worker was killed at the deadline and each response
        # verified alone; the one that hangs again is a timeout, the others are scored.
        assert [r.reason for r in report.results] == [Reason.CORRECT, Reason.TIMEOUT,
                                                      Reason.WRONG, Reason.CORRECT]
        assert report.timeouts == 1
        assert pool.faults == {"workers_lost": 0, "batches_requeued": 0, "hung_batches": 2}
        assert elapsed < 60 and len(pool.group) == 1
    finally:
        pool.shutdown()


def test_hostile_answers_time_out_in_the_child_and_are_counted(ray_cluster):
    """The per-check timeout: math-verify stuck on a tower is killed at ``timeout_s``; the
    response counts as a timeout, once; the worker is not replaced for it."""
    config = VerifierConfig(num_workers=1, resources=Resources(num_cpus=0.25), timeout_s=0.5,
                            batch_size=4)
    pool = VerifierPool(config, placement_timeout_s=30)
    try:
        hostile = REQUESTS[0].response.replace("<answer>\n3", "<answer>\n(9^{9999})^{9999}")
        report = pool.score([VerifyRequest(hostile, "1"), REQUESTS[0]], RewardConfig())
        assert [r.reason for r in report.results] == [Reason.TIMEOUT, Reason.CORRECT]
        assert report.timeouts == 1
        assert pool.faults == {"workers_lost": 0, "batches_requeued": 0, "hung_batches": 0}
    finally:
        pool.shutdown()


# ── the trained batch: disturbed against undisturbed ───────────────────────────────────


def test_a_step_disturbed_by_a_kill_yields_the_undisturbed_batch(ray_cluster, tiny_pair,
                                                                  prompts):
    """One rollout + verify step at a fixed seed, once undisturbed and once with a rollout
    worker killed mid-generation: the same (prompt uid, sample index) set, each once, and —
    greedy sampling being deterministic whichever worker runs a prompt — the same texts,
    rewards and verification outcomes."""
    ray = ray_cluster
    rollout = RolloutPool(RolloutConfig(num_workers=2, resources=Resources(num_cpus=0.5)),
                          tiny_pair[0], seed=0, placement_timeout_s=60,
                          system_prompt=SYSTEM_PROMPT)
    verifier = VerifierPool(VerifierConfig(num_workers=1, resources=Resources(num_cpus=0.25),
                                           batch_size=4, math_verify=False),
                            placement_timeout_s=30)
    params = SamplingParams(n=2, temperature=0.0, max_tokens=24, seed=0)

    def step(kill: bool):
        pending = rollout.submit(prompts, params)
        if kill:
            ray.kill(rollout.group.actors[0], no_restart=True)
        groups = rollout.collect(pending, expect_version=0)
        requests = [VerifyRequest(r.text, p.ground_truth, p.equivalent_answers)
                    for p, g in zip(prompts, groups) for r in g]
        return groups, verifier.score(requests, RewardConfig()).results

    try:
        groups, results = step(kill=False)
        disturbed_groups, disturbed_results = step(kill=True)
        assert rollout.faults["workers_lost"] == 1  # the kill really cost a call
        assert sample_ids(disturbed_groups) == sample_ids(groups)
        assert len(set(sample_ids(groups))) == 2 * len(prompts)
        assert [r.text for g in disturbed_groups for r in g] == [r.text for g in groups for r in g]
        assert [(r.score, r.reason) for r in disturbed_results] == \
               [(r.score, r.reason) for r in results]
    finally:
        rollout.shutdown()
        verifier.shutdown()
