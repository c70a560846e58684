"""``prism-ray submit`` / ``prism-ray jobs`` against a real ``ray start --head`` on loopback,
with Ray token authentication on. The head gets a private --temp-dir and HOME, free ports,
and is torn down by PID (never a bare ``ray stop``: it would kill every Ray on the machine)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from prism_ray.cli import main
from prism_ray.jobs.auth import find_token
from prism_ray.jobs.submit import JOIN_CLUSTER, UPLOAD_EXCLUDES, SubmitRequest, prepare

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = str(ROOT / ".venv" / "bin" / "python")
RAY = str(ROOT / ".venv" / "bin" / "ray")


# ───────────────────────── no cluster needed ─────────────────────────


def test_bad_recipe_is_refused_before_submission(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nrollout: {num_wrkers: 2}\n")
    # Port 9 on loopback answers nothing: reaching the network would print "cannot reach".
    assert main(["submit", str(bad), "--address", "http://127.0.0.1:9"]) == 2
    submit_err = capsys.readouterr().err
    assert main(["config", "validate", str(bad)]) == 1
    validate_err = capsys.readouterr().err
    assert "rollout.num_wrkers: unknown key" in submit_err
    assert submit_err.removeprefix("prism-ray: ").strip() in validate_err
    assert "cannot reach" not in submit_err


def test_bad_override_is_refused_before_submission(capsys):
    rc = main(["submit", "recipes/tiny.yaml", "phases.rlvr.steps=abc",
               "--address", "http://127.0.0.1:9"])
    assert rc == 2
    assert "phases[4:rlvr].steps" in capsys.readouterr().err


def test_overrides_may_follow_options(capsys):
    rc = main(["submit", "recipes/tiny.yaml", "--cluster", "clusters/local.yaml",
               "rollout.num_workers=x", "--address", "http://127.0.0.1:9"])
    assert rc == 2
    assert "'rollout.num_workers=x'" in capsys.readouterr().err


def test_prepare_builds_entrypoint_and_runtime_env(tmp_path):
    (tmp_path / "r.yaml").write_text("name: prism-tiny\n")
    cluster = tmp_path / "c.yaml"
    cluster.write_text("cluster: {env_vars: {A: from-config, B: from-config}}\n")
    sub = prepare(SubmitRequest(recipe=str(tmp_path / "r.yaml"), cluster=str(cluster),
                                overrides=["rollout.num_workers=3"], working_dir=str(tmp_path),
                                python="/opt/py/bin/python", env={"B": "cli"}, pip=["x==1"]))
    assert sub.entrypoint == ("/opt/py/bin/python -m prism_ray.cli run --cluster c.yaml r.yaml "
                              f"rollout.num_workers=3 {JOIN_CLUSTER}")
    assert sub.runtime_env == {"working_dir": str(tmp_path), "excludes": list(UPLOAD_EXCLUDES),
                               "env_vars": {"A": "from-config", "B": "cli"}, "pip": ["x==1"]}
    assert sub.submission_id.startswith("prism-tiny-")


def test_tokens_and_ray_temp_inside_the_upload_stay_here(tmp_path, monkeypatch):
    (tmp_path / "r.yaml").write_text("name: prism-tiny\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "secrets" / "tok"))
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "scratch"))
    sub = prepare(SubmitRequest(recipe=str(tmp_path / "r.yaml"), working_dir=str(tmp_path)))
    excludes = sub.runtime_env["excludes"]
    assert "/secrets/tok" in excludes and "/scratch" in excludes
    assert {"auth_token", "*.token", ".ray"} <= set(excludes)


def test_jobs_on_this_machine_run_this_interpreter():
    import sys

    from prism_ray.jobs.submit import local_python

    assert local_python("http://127.0.0.1:8265") == sys.executable
    assert local_python("localhost:8265") == sys.executable
    assert local_python("http://head.cluster:8265") == "python"
    assert local_python(None) == "python"


def test_prepare_refuses_recipe_outside_working_dir(tmp_path, capsys):
    rc = main(["submit", "recipes/tiny.yaml", "--working-dir", str(tmp_path),
               "--address", "http://127.0.0.1:9"])
    assert rc == 1
    assert "outside the working directory" in capsys.readouterr().err


def test_token_sources_in_rays_order(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    assert find_token() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home\n")
    assert find_token().value == "from-home"
    (tmp_path / "t").write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "t"))
    assert find_token().value == "from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert find_token().source == "$RAY_AUTH_TOKEN"


# ───────────────────────── a real head on loopback ─────────────────────────


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _head_command(temp_dir: str, dashboard_port: int) -> list[str]:
    # Every port a second head would collide on is chosen free (other Ray instances run here).
    return [RAY, "start", "--head", "--block", f"--port={_free_port()}",
            "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}", f"--ray-client-server-port={_free_port()}",
            f"--dashboard-agent-listen-port={_free_port()}", "--num-cpus=2",
            "--disable-usage-stats", f"--temp-dir={temp_dir}"]


def _wait_for_jobs_api(address: str, token: str, head: subprocess.Popen, log: Path) -> None:
    import requests

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if head.poll() is not None:
            pytest.fail(f"ray start --head exited:\n{log.read_text()[-3000:]}")
        try:
            r = requests.get(f"{address}/api/jobs/", timeout=2,
                             headers={"Authorization": f"Bearer {token}"})
            if r.status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    pytest.fail("the Ray jobs API did not come up in 90 s")


def _stop_head(head: subprocess.Popen, temp_dir: str) -> None:
    """Stop only what this head started: its process tree, then anything naming its temp dir."""
    import psutil

    try:
        tree = psutil.Process(head.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    head.terminate()  # `ray start --block` shuts its node down on SIGTERM
    try:
        head.wait(30)
    except subprocess.TimeoutExpired:
        head.kill()
    _, alive = psutil.wait_procs(tree, timeout=15)
    strays = [p for p in psutil.process_iter(["cmdline"])
              if any(temp_dir in arg for arg in (p.info["cmdline"] or []))]
    for proc in alive + strays:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head on 127.0.0.1 with token auth on; yields (dashboard address, token)."""
    temp_dir = tempfile.mkdtemp(prefix="prh-", dir="/tmp")  # short: unix socket paths ≤ 107
    token = secrets.token_hex(16)
    dashboard = f"http://127.0.0.1:{_free_port()}"
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": token, "HOME": temp_dir}  # never read or write ~/.ray/auth_token
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    log = Path(temp_dir) / "head.log"
    started = time.monotonic()
    head = subprocess.Popen(_head_command(temp_dir, int(dashboard.rsplit(":", 1)[1])), env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=temp_dir)
    try:
        _wait_for_jobs_api(dashboard, token, head, log)
        print(f"\n[ray head up in {time.monotonic() - started:.1f}s]", file=sys.stderr)
        yield dashboard, token
    finally:
        _stop_head(head, temp_dir)


@pytest.fixture
def with_token(ray_head, monkeypatch, tmp_path):
    address, token = ray_head
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    return address


@pytest.fixture
def without_token(ray_head, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # a HOME without ~/.ray/auth_token
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    return ray_head[0]


@pytest.mark.ray
@pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning")  # inside Ray
def test_submit_dry_run_follows_logs_to_success(with_token, capsys):
    started = time.monotonic()
    rc = main(["submit", "--dry-run", "--python", VENV_PYTHON, "--address", with_token,
               "--working-dir", str(ROOT), "--env", "PRISM_TEST_FLAG=1",
               "recipes/tiny.yaml", "rollout.num_workers=3"])
    out = capsys.readouterr().out
    print(f"[submit round trip {time.monotonic() - started:.1f}s]", file=sys.stderr)
    assert rc == 0, out
    assert "address: auto" in out  # the job resolved cluster.address=auto ...
    assert "[probe] joined Ray 2.60.0 cluster with 1 node(s)" in out  # ... and joined it
    assert "rollout             3" in out
    job_id = out.split("submitted job ", 1)[1].split()[0]
    assert f"job {job_id}: SUCCEEDED" in out
    _assert_runtime_env(with_token, job_id)


def _assert_runtime_env(address: str, job_id: str) -> None:
    from prism_ray.jobs.client import connect

    runtime_env = connect(address).get_job_info(job_id).runtime_env
    assert runtime_env["env_vars"] == {"PRISM_TEST_FLAG": "1"}
    assert runtime_env["working_dir"].startswith("gcs://")  # uploaded, not a path on the head


@pytest.mark.ray
def test_missing_token_fails_readably(without_token, capsys):
    rc = main(["submit", "--dry-run", "--address", without_token, "recipes/tiny.yaml"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "requires an authentication token and none was found" in err
    assert "RAY_AUTH_TOKEN" in err and "Traceback" not in err


@pytest.mark.ray
def test_wrong_token_fails_readably(without_token, monkeypatch, capsys):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-token")
    assert main(["jobs", "list", "--address", without_token]) == 1
    assert "rejected the authentication token from $RAY_AUTH_TOKEN" in capsys.readouterr().err


@pytest.mark.ray
def test_jobs_status_logs_list_stop(with_token, capsys):
    from prism_ray.jobs.client import connect

    client = connect(with_token)
    # A long-running job through the SDK directly: a stand-in for a training run.
    job_id = client.submit_job(entrypoint=f"{VENV_PYTHON} -u -c \"print('sleeper up'); "
                                          "import time; time.sleep(600)\"")
    _wait_for_log(client, job_id, "sleeper up")
    assert main(["jobs", "status", job_id, "--address", with_token]) == 0
    assert "status:     RUNNING" in capsys.readouterr().out
    assert main(["jobs", "logs", job_id, "--address", with_token]) == 0
    assert "sleeper up" in capsys.readouterr().out
    assert main(["jobs", "list", "--address", with_token]) == 0
    assert job_id in capsys.readouterr().out
    assert main(["jobs", "stop", job_id, "--wait", "--address", with_token]) == 0
    assert f"job {job_id}: STOPPED" in capsys.readouterr().out
    assert main(["jobs", "status", "no-such-job", "--address", with_token]) == 1
    assert "no job 'no-such-job'" in capsys.readouterr().err


def _wait_for_log(client, job_id: str, text: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in client.get_job_logs(job_id):
        assert time.monotonic() < deadline, client.get_job_info(job_id)
        time.sleep(0.5)
