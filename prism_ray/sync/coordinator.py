"""Driver side of weight sync: forms the broadcast group, plans buckets, pushes versions.

Group membership is learner rank 0 (source) + every rollout worker. When workers join or
leave, the group is formed again on a fresh port; the bucket plan does not change.

Transport ``cuda_ipc`` is for rollout workers that share the learner's GPU: the learner packs
the buckets into a staging buffer whose CUDA IPC handle each receiver maps once, and a sync
is one staging call and one load call per receiver (``sync.cuda_ipc``), not a broadcast.

Receivers that die: ``push`` never hangs on a dead receiver nor fails the run. Before each
attempt the receivers are pinged; a dead one (found by the ping, or dying part-way through
the broadcast, which breaks it for everyone: see ``sync.endpoints``) is handed to
``replace``, which must drop it and return the new receiver list (the rollout pool starts a
replacement); the group is formed again and the same version pushed again to all, so every
receiver, the newcomer included, holds exactly that version when ``push`` returns. Up to
``MAX_ATTEMPTS`` attempts per push; ``faults`` counts the interrupted ones. Without
``replace`` a dead receiver is simply left out of the group.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ray

from prism_ray.sync.endpoints import SyncBroken, SyncStats
from prism_ray.sync.plan import Bucket, TensorSpec, plan_buckets, rounds_of

MAX_ATTEMPTS = 4
# Every member has answered a ping (so is idle) when the rendezvous starts, which then takes
# well under a second: this bounds only the stall when a member dies during it.
CONNECT_TIMEOUT_S = 5.0


class Interrupted(RuntimeError):
    """A connect or push did not complete; ``dead`` are the receivers found dead."""

    def __init__(self, dead: list[Any], detail: str) -> None:
        super().__init__(detail)
        self.dead = dead


class WeightSync:
    def __init__(self, learners: list[Any], backend: str, bucket_bytes: int,
                 replace: Callable[[list[Any]], list[Any]] | None = None,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S, ipc_buffer_bytes: int = 0) -> None:
        """``learners``: all learner rank actors (rank 0 first); ``backend``: gloo | nccl |
        cuda_ipc; ``replace``: dead receivers → the new receiver list (module doc);
        ``ipc_buffer_bytes``: cuda_ipc's staging buffer, 0 = the whole weights."""
        self.learners, self.backend = learners, backend
        self.ipc_buffer_bytes = ipc_buffer_bytes
        self.replace, self.connect_timeout_s = replace, connect_timeout_s
        manifest: list[TensorSpec] = ray.get(learners[0].weight_manifest.remote())
        self.plan: list[Bucket] = plan_buckets(manifest, bucket_bytes)
        self.receivers: list[Any] = []
        self.version = 0
        self.faults = {"interrupted": 0}

    @property
    def total_bytes(self) -> int:
        return sum(b.nbytes for b in self.plan)

    def connect(self, receivers: list[Any]) -> None:
        """(Re)form the group with exactly these receivers (dead ones replaced first)."""
        self.receivers = list(receivers)
        self._attempts(self._connect_once, "connect")

    def push(self, version: int) -> SyncStats:
        """Send the learners' current weights to every receiver as ``version``."""
        stats = self._attempts(lambda: self._push_once(version), f"push v{version}")
        self.version = version
        return stats

    def resync(self, receivers: list[Any]) -> SyncStats:
        """Re-form the group with ``receivers`` and push the current version again (workers
        that joined receive the weights every other receiver holds)."""
        self.connect(receivers)
        return self.push(self.version)

    # ── attempts ────────────────────────────────────────────────

    def _attempts(self, once: Callable[[], Any], what: str) -> Any:
        regroup = False  # whether the group must be formed again before ``once``
        for attempt in range(MAX_ATTEMPTS):
            try:
                dead = self._dead(self.receivers)
                if dead:
                    self._drop(dead)
                if (dead or regroup) and once != self._connect_once:
                    self._connect_once()
                return once()
            except Interrupted as interrupted:
                self.faults["interrupted"] += 1
                then = (f"attempt {attempt + 2} of {MAX_ATTEMPTS}"
                        if attempt + 1 < MAX_ATTEMPTS else "giving up")
                print(f"[sync] {what} interrupted ({len(interrupted.dead)} receiver(s) dead): "
                      f"{interrupted}; {then}", flush=True)
                if interrupted.dead:
                    self._drop(interrupted.dead)
                regroup = True
        raise RuntimeError(f"weight sync: {what} failed {MAX_ATTEMPTS} times in a row "
                           "(receivers kept dying)")

    @staticmethod
    def _dead(receivers: list[Any]) -> list[Any]:
        """The receivers that no longer answer (a ping queued behind their current work)."""
        outcomes = _outcomes([r.ready.remote() for r in receivers])
        return [r for r, error in zip(receivers, outcomes)
                if isinstance(error, ray.exceptions.RayActorError)]

    def _drop(self, dead: list[Any]) -> None:
        gone = {d._actor_id for d in dead}
        if self.replace is not None:
            self.receivers = list(self.replace(dead))
        else:
            self.receivers = [r for r in self.receivers if r._actor_id not in gone]

    def _connect_once(self) -> None:
        if self.backend == "cuda_ipc":
            return  # no group: handles travel through Ray
        world = 1 + len(self.receivers)
        ray.get([learner.ready.remote() for learner in self.learners])  # idle: see above
        head = self.learners[0]
        address = ray.get(head.node_address.remote())
        port = ray.get(head.free_port.remote())
        timeout = self.connect_timeout_s
        refs = [learner.sync_connect.remote(address, port, world, self.backend, timeout)
                for learner in self.learners]
        refs += [worker.sync_connect.remote(address, port, i + 1, world, self.backend, timeout)
                 for i, worker in enumerate(self.receivers)]
        self._settle(refs, "connect")

    def _push_once(self, version: int) -> SyncStats:
        if self.backend == "cuda_ipc":
            return self._push_ipc(version)
        sends = [learner.sync_send.remote(version, self.plan) for learner in self.learners]
        receives = [w.sync_receive.remote(version, self.plan) for w in self.receivers]
        results = self._settle(sends + receives, f"push v{version}")
        stats, got = results[0], results[len(sends):]
        if any(n != stats.bytes for n in got):
            raise RuntimeError(f"weight sync v{version}: sent {stats.bytes} bytes, got {got}")
        return stats

    def _settle(self, refs: list[Any], what: str) -> list[Any]:
        """Every ref's value; if any failed, ``Interrupted`` naming the receivers that died.
        A learner's own death is not a receiver fault: it is raised as is."""
        outcomes = _outcomes(refs)
        offset = len(refs) - len(self.receivers)
        errors = [(i, e) for i, e in enumerate(outcomes) if isinstance(e, ray.exceptions.RayError)]
        if not errors:
            return [ray.get(ref) for ref in refs]
        for i, error in errors:
            if i < offset and isinstance(error, ray.exceptions.RayActorError):
                raise error  # a learner died: not something a re-sync can mend
        dead = [self.receivers[i - offset] for i, e in errors
                if i >= offset and isinstance(e, ray.exceptions.RayActorError)]
        if not dead and not any(isinstance(getattr(e, "cause", None), SyncBroken)
                                for _, e in errors):
            raise errors[0][1]  # not a lost receiver (e.g. a plan mismatch): no retry mends it
        raise Interrupted(dead, f"{what}: {len(errors)} call(s) failed, first: "
                                f"{type(errors[0][1]).__name__}")

    def _push_ipc(self, version: int) -> SyncStats:
        """Per round (one by default): the learners stage it in their buffer, then every
        receiver loads it from there (cuda_ipc module doc). A receiver that dies is found by
        ``_settle`` and the push is attempted again, as for a broadcast."""
        started = time.perf_counter()
        rounds = rounds_of(self.plan, self.ipc_buffer_bytes)
        buffer = None
        for i, buckets in enumerate(rounds):
            buffer, _ = ray.get([learner.ipc_stage.remote(buckets)
                                 for learner in self.learners])[0]
            last = i == len(rounds) - 1
            self._settle([w.ipc_load.remote(buffer, buckets, version, last)
                          for w in self.receivers], f"push v{version}")
        return SyncStats(version, self.total_bytes, time.perf_counter() - started,
                         len(self.plan), copy_gb_per_s=buffer.copy_gb_per_s if buffer else None)


def _outcomes(refs: list[Any]) -> list[ray.exceptions.RayError | None]:
    """Waits for every ref; None for each that succeeded, else its error."""
    outcomes: list[ray.exceptions.RayError | None] = []
    for ref in refs:
        try:
            ray.get(ref)
            outcomes.append(None)
        except ray.exceptions.RayError as error:
            outcomes.append(error)
    return outcomes
