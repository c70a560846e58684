"""Reaper: the Ray processes of a local cluster end within a second or two of its driver, even
when the driver is killed with SIGKILL.

Ray ties the GCS, the raylet and the workers to the driver (the kernel kills them with it), but
the raylet's agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``), finding the raylet
gone, first report its death to the GCS — also gone — and wait out a fixed 60 s timeout before
they exit. On a shared machine that is a minute of memory held by a run that no longer exists,
once per killed run.

``start_reaper`` starts a small process in its own session that keeps a list of the driver's
Ray descendants (GCS, raylet, agents, workers: any process whose command line names Ray),
refreshed every half second, and when the driver is gone kills the ones still alive
(matched by pid *and* start time, so a reused pid is never hit), then exits. A driver that
ends normally has stopped its cluster already; the reaper then finds nothing to kill.
Only for clusters the driver starts itself, never for one it joins.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

POLL_S = 0.5


def start_reaper(driver_pid: int | None = None) -> subprocess.Popen:
    """Start the reaper for ``driver_pid`` (default: this process)."""
    pid = os.getpid() if driver_pid is None else driver_pid
    return subprocess.Popen(
        [sys.executable, "-m", "prism_ray.reaper", str(pid)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True)


def is_ray_process(cmdline: list[str]) -> bool:
    """Ray's binaries, its Python helpers, and its workers (whose titles read ``ray::...``)."""
    return bool(cmdline) and (cmdline[0].startswith("ray::")
                              or any("/ray/" in arg for arg in cmdline[:3]))


def _ray_descendants(driver) -> dict[int, float]:
    import psutil

    found = {}
    for child in driver.children(recursive=True):
        try:
            if is_ray_process(child.cmdline()):
                found[child.pid] = child.create_time()
        except psutil.Error:
            continue
    return found


def reap(driver_pid: int) -> int:
    """Watch ``driver_pid``; once it is gone, SIGKILL its Ray descendants. Returns how many."""
    import psutil

    try:
        driver = psutil.Process(driver_pid)
    except psutil.NoSuchProcess:
        return 0
    known: dict[int, float] = {}
    while True:
        try:
            if driver.status() == psutil.STATUS_ZOMBIE:
                break
            known.update(_ray_descendants(driver))
        except psutil.NoSuchProcess:
            break
        time.sleep(POLL_S)
    killed = 0
    for pid, started in known.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == started:
                process.send_signal(signal.SIGKILL)
                killed += 1
        except psutil.Error:
            continue
    return killed


if __name__ == "__main__":
    reap(int(sys.argv[1]))
