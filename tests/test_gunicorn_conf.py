import json
import os
import shutil
import signal
import urllib.request

from ml.registry import ModelRegistry
from tests.conftest import start_web_node


def test_a_worker_boots_warm_with_an_active_whole_photo_model_and_serves_it(tmp_path, trained):
    """The worker warms the model's face detector before it takes requests; a whole-photo model must not stop it."""
    version = trained[1]
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
