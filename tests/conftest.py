"""Fixtures: an application on a temporary data folder, real face photos, trained models and throw-away servers.

Helpers and constants are in tests/helpers.py; import them from there, never from this module.
"""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.datasets import import_dataset
from ml.learning.options import TrainingOptions
from ml.learning.training import train
from ml.photos.faces import FaceOptions
from ml.versions.registry import ModelRegistry
from tests.helpers import (CHROMIUM, CHROMIUM_ARGS, SMALL_TRAINING, SYNTHETIC_FACES, People, Trained,
                           as_postgres_user, face_variants, free_port, make_user, postgres_program, synthetic_entries,
                           train_on, wait_for_port, write_zip)


@pytest.fixture
def app(tmp_path, monkeypatch):
    """Return an application whose data folder is a fresh temporary folder."""
    monkeypatch.setenv("FACEDX_DATA_DIR", str(tmp_path / "data"))
    from flask_migrate import upgrade

    from app import create_app
    app = create_app({"TESTING": True})
    with app.app_context():
        upgrade()
    return app


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def tokens(app):
    """Create an admin and a doctor; return their API tokens."""
    return {"admin": make_user(app, "ada", "admin"), "doctor": make_user(app, "dan", "doctor")}


@pytest.fixture
def active_model(app, trained):
    """Copy the trained version into the app's models folder and activate it; return its version."""
    from web.services import get_registry

    with app.app_context():
        registry = get_registry()
        shutil.copytree(trained.version.path, registry.root / trained.version.version)
        registry.activate(trained.version.version)
    return trained.version.version


@pytest.fixture
def synthetic_zip(tmp_path):
    return write_zip(tmp_path / "synthetic.zip", synthetic_entries())


@pytest.fixture(scope="session")
def face_photos():
    """Return real face photos that packages ship: {name: RGB array}."""
    import matplotlib.cbook
    import skimage.data

    hopper = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
                        .convert("RGB"))
    return {"astronaut": skimage.data.astronaut(), "grace_hopper": hopper}


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Train one small model (random VGG16 at 32 px, linear head) on the colour task (tinted faces); return Trained."""
    root = tmp_path_factory.mktemp("trained")
    archive = write_zip(root / "synthetic.zip", synthetic_entries(per_class=14))
    dataset = import_dataset(archive, "colours", root / "datasets", face=SYNTHETIC_FACES)
    registry = ModelRegistry(root / "models")
    return Trained(registry=registry, version=train(dataset, SMALL_TRAINING, registry), dataset=dataset)


@pytest.fixture(scope="session")
def people(tmp_path_factory, face_photos):
    """Import a dataset of the astronaut against Grace Hopper (faces detected by MTCNN); return People."""
    root = tmp_path_factory.mktemp("people")
    entries = {f"first/{i}.jpg": d for i, d in enumerate(face_variants(face_photos["astronaut"], 6))}
    entries |= {f"second/{i}.jpg": d for i, d in enumerate(face_variants(face_photos["grace_hopper"], 6))}
    return People(root=root, dataset=import_dataset(write_zip(root / "people.zip", entries), "people",
                                                    root / "datasets", face=FaceOptions("mtcnn")))


@pytest.fixture(scope="session")
def trained_people(people):
    """Train a dlib-face model that tells the astronaut from Grace Hopper; return Trained."""
    return train_on(people, "models", TrainingOptions(backbone="dlib-face", folds=3))


@pytest.fixture(scope="session")
def tuned_people(people):
    """Fine-tune the face network's tail with a softmax head on the same faces; return Trained."""
    return train_on(people, "tuned-models", TrainingOptions(backbone="dlib-face", head="softmax", epochs=2,
                                                            fine_tune_epochs=2, fine_tune_learning_rate=1e-3))


@pytest.fixture(scope="session")
def trained_people_texture(people):
    """Train a model of texture and shape only (HOG, LBP, geometry) on the same faces; return Trained."""
    return train_on(people, "texture-models", TrainingOptions(backbone="hog+lbp+geometry", folds=3))


@pytest.fixture(scope="session")
def postgres_server():
    """Start a throw-away PostgreSQL server on 127.0.0.1 (user facedx, no password); return its port."""
    folder = Path(tempfile.mkdtemp(prefix="facedx-pg-"))
    os.chmod(folder, 0o777)
    port = free_port()
    data = folder / "data"
    subprocess.run(as_postgres_user([postgres_program("initdb"), "-D", str(data), "-U", "facedx", "--auth=trust"]),
                   check=True, capture_output=True)
    subprocess.run(as_postgres_user([postgres_program("pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w",
                                     "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"]),
                   check=True, capture_output=True)
    try:
        yield port
    finally:
        subprocess.run(as_postgres_user([postgres_program("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url():
    """Start a throw-away Redis server on 127.0.0.1 (Debian's redis-server); return its URL."""
    port = free_port()
    server = subprocess.Popen([shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port),
                               "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, server, lambda: "redis-server did not start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.kill()
        server.wait()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright, one per test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
