"""Fault injection: a thread that kills a random rollout or verifier worker every few seconds.

For the chaos test and ``bench/chaos.py``. It finds the workers by the names ``ActorGroup``
gives them (``<role>:<group>:<rank>``) in the Ray cluster the caller is connected to, so it
needs no handle from the run it disturbs, and kills them with ``ray.kill`` (no restart),
as a crashed process or a lost node would look to the run. It never kills the same actor
twice, so ``injected`` counts distinct faults the run has to survive, and only kills workers
that have finished starting (answered one ping): a fault every interval among workers still
starting, faster than a replacement can start, would leave no run any progress to make.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import ray

ROLES = ("rollout", "verifier")


@dataclass
class Kill:
    at_s: float  # seconds since the killer started
    role: str
    name: str


@dataclass
class WorkerKiller:
    """``start()`` it, ``stop()`` it; ``kills`` says what it did. ``active()`` is asked before
    each kill (e.g. "the run is not in its last step yet"); a tick where it says False, or
    where no worker is found, kills nothing."""

    interval_s: float
    seed: int = 0
    roles: Sequence[str] = ROLES
    active: Callable[[], bool] = lambda: True
    kills: list[Kill] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="worker-killer", daemon=True)
        self._killed: set[str] = set()
        self._pings: dict[str, object] = {}  # name → ObjectRef of its first ping
        self._up: set[str] = set()  # names whose ping came back: started and serving

    @property
    def injected(self) -> int:
        return len(self.kills)

    def by_role(self) -> dict[str, int]:
        return {role: sum(k.role == role for k in self.kills) for role in self.roles}

    def start(self) -> WorkerKiller:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        # The first kill comes after a random part of one interval, then one per interval.
        wait = self._random.uniform(0.2, 1.0) * self.interval_s
        while not self._stop.wait(wait):
            wait = self.interval_s
            self._kill_one(self.active())

    def _kill_one(self, active: bool) -> None:
        candidates = []
        for actor in ray.util.list_named_actors(all_namespaces=True):
            name, namespace = actor["name"], actor["namespace"]
            if name.split(":", 1)[0] not in self.roles or name in self._killed:
                continue
            if name not in self._up and self._started_up(name, namespace):
                self._up.add(name)
            if name in self._up:
                candidates.append((name, namespace))
        if not (active and candidates):
            return
        name, namespace = self._random.choice(sorted(candidates))
        try:
            handle = ray.get_actor(name, namespace=namespace)
        except ValueError:  # gone since the listing (removed by the run itself)
            return
        self._killed.add(name)
        self._pings.pop(name, None)
        ray.kill(handle, no_restart=True)
        self.kills.append(Kill(time.monotonic() - self._started, name.split(":", 1)[0], name))
        print(f"[chaos] killed {name}", flush=True)

    def _started_up(self, name: str, namespace: str) -> bool:
        """Whether the actor has answered a ping (sent on first sight; never waited on)."""
        if name not in self._pings:
            try:
                self._pings[name] = ray.get_actor(name, namespace=namespace).ready.remote()
            except ValueError:
                return False
        done, _ = ray.wait([self._pings[name]], timeout=0)
        return bool(done)
