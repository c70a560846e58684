"""The reaper kills the Ray processes a killed driver leaves behind, and nothing else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from prism_ray.reaper import is_ray_process, start_reaper

# A stand-in driver: one child titled like a Ray worker, one ordinary child; prints both pids.
DRIVER = r"""
import subprocess, time
ray_like = subprocess.Popen(["ray::FakeAgent", "300"], executable="sleep")
other = subprocess.Popen(["sleep", "301"])
print(ray_like.pid, other.pid, flush=True)
time.sleep(300)
"""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_ray_processes_are_told_apart_by_their_command_line():
    assert is_ray_process(["ray::DashboardAgent"])
    assert is_ray_process(["/venv/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet"])
    assert is_ray_process(["/usr/bin/python3", "-u", "/venv/site-packages/ray/_private/log_monitor.py"])
    assert not is_ray_process(["/usr/bin/python3", "-m", "prism_ray.cli", "run"])
    assert not is_ray_process(["sleep", "301"])
    assert not is_ray_process([])


def test_a_killed_driver_s_ray_children_die_and_others_live():
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True)
    ray_like, other = (int(x) for x in driver.stdout.readline().split())
    reaper = start_reaper(driver.pid)
    try:
        time.sleep(1.5)  # a few snapshots of the driver's children
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        reaper.wait(timeout=10)
        deadline = time.time() + 5
        while alive(ray_like) and time.time() < deadline:
            time.sleep(0.1)
        assert not alive(ray_like)
        assert alive(other)
    finally:
        for pid in (ray_like, other):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        reaper.kill()
