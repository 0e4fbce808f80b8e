"""Two web nodes, one worker, PostgreSQL and Redis: real servers on 127.0.0.1, one shared data folder."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import (
    PROJECT,
    SMALL_API_OPTIONS,
    coloured_face,
    new_database,
    png_bytes,
    start_web_node,
    synthetic_entries,
    write_zip,
)
from tests.helpers import flask_command as flask


def start(env, *args):
    return subprocess.Popen([sys.executable, "-m", *args], cwd=PROJECT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def descendants(pid):
    """Every process below `pid` (RQ's work horse starts a session of its own, so killpg misses it)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:                        # the thread or process ended meanwhile
            continue
        for child in children:
            found += [int(child)] + descendants(int(child))
    return found


def stop(process):
    """Kill a process with everything it started, as a machine going down would."""
    if process.poll() is None:
        for pid in descendants(process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class Cluster:
    def __init__(self, env):
        self.env, self.processes = env, []

    def web_node(self):
        node, base = start_web_node(self.env)
        self.processes.append(node)
        return base

    def worker(self):
        process = start(self.env, "flask", "--app", "app", "worker")
        self.processes.append(process)
        return process


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres_server, redis_url):
    env = dict(os.environ, FACEDX_DATA_DIR=str(tmp_path_factory.mktemp("shared")),
               FACEDX_DATABASE_URL=new_database(postgres_server, "cluster"), FACEDX_REDIS_URL=redis_url,
               FACEDX_JOB_HEARTBEAT_TIMEOUT="8", FACEDX_SECRET_KEY="one key for every node of this test")
    flask(env, "setup")
    flask(env, "user", "create", "doc", "--role", "doctor", stdin="a long doctor password\n")
    nodes = Cluster(env)
    nodes.admin = {"Authorization": "Bearer " + flask(env, "token", "create", "admin").split()[-1]}
    nodes.doctor = {"Authorization": "Bearer " + flask(env, "token", "create", "doc").split()[-1]}
    nodes.a, nodes.b = nodes.web_node(), nodes.web_node()
    nodes.worker_process = nodes.worker()
    archive = write_zip(Path(env["FACEDX_DATA_DIR"]) / "colours.zip", synthetic_entries(per_class=8))
    with open(archive, "rb") as stream:
        created = requests.post(nodes.a + "/api/v1/datasets", headers=nodes.admin, files={"archive": stream},
                                data={"name": "colours", "face_fallback": "whole"}, timeout=120)
    assert created.status_code == 202, created.text
    imported = wait_for(lambda: (job := requests.get(nodes.b + created.headers["Location"], headers=nodes.admin,
                                                     timeout=30).json())["status"] not in ("queued", "running") and job)
    assert imported["status"] == "succeeded", imported           # run by the worker, read through the other node
    yield nodes
    for process in nodes.processes:
        stop(process)


def job_on(base, headers, job_id):
    return requests.get(f"{base}/api/v1/training-jobs/{job_id}", headers=headers, timeout=30).json()


def wait_for(check, timeout=180):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def test_a_job_started_on_one_node_runs_on_the_worker_and_is_served_by_the_other(cluster, redis_url):
    from redis import Redis
    from rq.job import Job

    started = requests.post(cluster.a + "/api/v1/training-jobs", headers=cluster.admin, timeout=30,
                            json={"dataset": "colours", "options": SMALL_API_OPTIONS})
    assert started.status_code == 202
    job_id = started.json()["id"]
    seen = set()

    def finished():
        job = job_on(cluster.b, cluster.admin, job_id)                  # progress read through node B
        seen.add(job["status"])
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None
    job = wait_for(finished)
    assert job["status"] == "succeeded", job
    assert "running" in seen or job["history"] == [] and job["progress"]["fraction"] == 1.0
    queued = Job.fetch(f"facedx-job-{job_id}", connection=Redis.from_url(redis_url))
    assert queued.get_status() == "finished"                             # the worker ran it, not a web node
    version = job["model_version"]
    assert requests.post(f"{cluster.b}/api/v1/models/{version}/activate", headers=cluster.admin,
                         timeout=30).status_code == 200
    photo = png_bytes(coloured_face("beta", seed=3))
    served = requests.post(cluster.a + "/api/v1/predict", headers=cluster.doctor, timeout=60,
                           files={"image": ("p.png", photo)}).json()
    assert served["model_version"] == version                           # node A follows B's activation
    second = requests.post(cluster.a + "/api/v1/training-jobs", headers=cluster.admin, timeout=30,
                           json={"dataset": "colours", "options": dict(SMALL_API_OPTIONS, head="softmax",
                                                                      epochs=1000, patience=1000)})
    assert second.status_code == 202
    conflict = requests.post(cluster.b + "/api/v1/training-jobs", headers=cluster.admin, timeout=30,
                             json={"dataset": "colours", "options": SMALL_API_OPTIONS})
    assert conflict.status_code == 409                                   # one at a time, across nodes
    cancel = requests.post(f"{cluster.b}/api/v1/training-jobs/{second.json()['id']}/cancel", headers=cluster.admin,
                           timeout=30)
    assert cancel.status_code == 202
    assert wait_for(lambda: job_on(cluster.a, cluster.admin, second.json()["id"])["status"] in (
        "cancelled",))


def test_killing_the_worker_fails_its_job_and_leaves_the_active_model(cluster, trained):
    import shutil

    active = trained.version.version                  # an active model, whichever test ran first
    models = Path(cluster.env["FACEDX_DATA_DIR"]) / "models"
    if not (models / active).exists():
        shutil.copytree(trained.version.path, models / active)
    assert requests.post(f"{cluster.a}/api/v1/models/{active}/activate", headers=cluster.admin,
                         timeout=30).status_code == 200
    started = requests.post(cluster.a + "/api/v1/training-jobs", headers=cluster.admin, timeout=30,
                            json={"dataset": "colours", "options": dict(SMALL_API_OPTIONS, head="softmax",
                                                                       epochs=1000, patience=1000)})
    job_id = started.json()["id"]
    wait_for(lambda: "fold_epoch" in job_on(cluster.b, cluster.admin, job_id)["progress"])
    stop(cluster.worker_process)                                         # the GPU host goes down
    job = wait_for(lambda: (j := job_on(cluster.b, cluster.admin, job_id))["status"] != "running" and j, timeout=60)
    assert job["status"] == "failed" and "stopped unexpectedly" in job["error"]
    assert requests.get(cluster.b + "/api/v1/health", timeout=30).json()["model_version"] == active
    cluster.worker_process = cluster.worker()                            # a new worker takes new jobs
    again = requests.post(cluster.b + "/api/v1/training-jobs", headers=cluster.admin, timeout=30,
                          json={"dataset": "colours", "options": SMALL_API_OPTIONS})
    assert again.status_code == 202
    assert wait_for(lambda: job_on(cluster.a, cluster.admin, again.json()["id"])["status"] == "succeeded")
