import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from ml.versions.registry import ModelRegistry
from tests.helpers import PROJECT, THREADS, start_web_node, stalled_request


def test_a_worker_boots_warm_with_an_active_whole_photo_model_and_serves_it(tmp_path, trained):
    """The worker warms the model's face detector before it takes requests; a whole-photo model must not stop it."""
    version = trained.version
    assert version.card.face["fallback"] == "whole"
    registry = ModelRegistry(tmp_path / "data" / "models")
    registry.root.mkdir(parents=True)
    shutil.copytree(version.path, registry.root / version.version)
    registry.activate(version.version)
    node, base = start_web_node(dict(os.environ, FACEDX_DATA_DIR=str(tmp_path / "data")))
    try:
        with urllib.request.urlopen(base + "/api/v1/health", timeout=10) as response:
            assert json.load(response) == {"status": "ok", "model_version": version.version}
    finally:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()


@dataclass(frozen=True)
class Node:
    """A gunicorn started as `make run` does: its base URL and the path of its log."""

    base: str
    log_path: Path


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """One gunicorn started as `make run` does; yield a Node."""
    folder = tmp_path_factory.mktemp("node")
    log_path = folder / "gunicorn.log"
    with open(log_path, "wb") as log:
        process, base = start_web_node(dict(os.environ, FACEDX_DATA_DIR=str(folder / "data")), log)
    try:
        yield Node(base=base, log_path=log_path)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_clients_that_stop_sending_lose_their_threads_so_health_still_answers(node):
    """More stalled uploads than threads: each is dropped after the read timeout, not held for ever."""
    base = node.base
    address = urllib.parse.urlsplit(base).netloc.split(":")
    stalled = [stalled_request(socket.create_connection((address[0], int(address[1]))), headers_only=i % 3 == 0)
               for i in range(THREADS + 2)]
    try:
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(base + "/api/v1/health", timeout=40)
        assert (answer.value.code, json.load(answer.value)["status"]) == (503, "unavailable")   # no model yet
    finally:
        for connection in stalled:
            connection.close()


def test_control_characters_in_a_path_cannot_forge_access_log_lines(node):
    base, log_path = node.base, node.log_path
    forged = "/login%0A127.0.0.1%20%22GET%20/admin/models%22%20200%0D%1B[2J"
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(base + forged, timeout=10)
    deadline = time.monotonic() + 10               # the access log line is written after the answer
    while "/login\\x0a" not in log_path.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = log_path.read_text(errors="replace").splitlines()
    assert all("/login" in line for line in lines if "admin/models" in line)
    assert any('"GET /login\\x0a127.0.0.1 \\"GET /admin/models\\" 200\\x0d\\x1b[2J"' in line for line in lines)


def test_gunicorn_alone_listens_beyond_loopback_only_with_a_proxy_in_front(tmp_path):
    def check(**settings):
        env = {k: v for k, v in os.environ.items() if k != "FACEDX_BEHIND_PROXY"}
        env.update(FACEDX_DATA_DIR=str(tmp_path / "data"), **settings)
        return subprocess.run([sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--check-config",
                               "wsgi:app"], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
    refused = check(FACEDX_BIND="0.0.0.0:8765")
    assert refused.returncode == 1 and "will not listen on 0.0.0.0:8765 without a proxy" in refused.stderr
    assert check(FACEDX_BIND="0.0.0.0:8765", FACEDX_BEHIND_PROXY="1").returncode == 0
    assert check(FACEDX_BIND="127.0.0.1:8765").returncode == 0
