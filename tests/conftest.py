"""Fixtures: an application on a temporary data folder, real face photos, and generated datasets."""
import glob
import io
import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.server import free_port, tinted_face, wait_for_port
from ml.datasets import import_dataset
from ml.learning.options import TrainingOptions
from ml.learning.training import train
from ml.photos.faces import FaceOptions
from ml.versions.registry import ModelRegistry

# Colours that make a learnable difference between generated classes.
CLASS_COLOURS = {"alpha": (200, 60, 60), "beta": (60, 60, 200), "gamma": (60, 200, 60)}
SYNTHETIC_FACES = FaceOptions(detector="haar", fallback="whole")   # tight faces: Haar finds some, the rest used whole
# A VGG16 with random weights at 32 px: fast, and its features still carry the colour signal.
# Strong regularisation keeps its probabilities away from 0 and 1, so ambiguity shows.
SMALL_TRAINING = TrainingOptions(backbone="vgg16-imagenet", weights="none", image_size=32, folds=3,
                                 regularization=0.01)
SMALL_API_OPTIONS = {"backbone": "vgg16-imagenet", "weights": "none", "image_size": 32, "folds": 3}


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


PASSWORD = "correct horse battery"


def bearer_headers(token):
    return {"Authorization": f"Bearer {token}"}


def make_user(app, name, role):
    """Create an account with PASSWORD and return an API token for it."""
    from web.db import db
    from web.records import ApiToken, User

    with app.app_context():
        user = User(username=name, role=role)
        user.set_password(PASSWORD)
        row, token = ApiToken.issue(user)
        db.session.add_all([user, row])
        db.session.commit()
    return token


@pytest.fixture
def tokens(app):
    """Create an admin and a doctor; return their API tokens."""
    return {"admin": make_user(app, "ada", "admin"), "doctor": make_user(app, "dan", "doctor")}


def import_result(client, headers, response, timeout=120):
    """Wait for the import that an accepted `POST /api/v1/datasets` started; return the import's final state."""
    assert response.status_code == 202, response.get_json()
    deadline = time.monotonic() + timeout
    while (job := client.get(response.headers["Location"], headers=headers).get_json())["status"] in (
            "queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


def form_token(client, path):
    """Fetch the page at `path` and return the CSRF token of its first form."""
    import re

    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


def login(client, name):
    """Log `client` in as `name` (created by the tokens fixture)."""
    response = client.post("/login", data={"username": name, "password": PASSWORD,
                                           "csrf_token": form_token(client, "/login")})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


@pytest.fixture
def active_model(app, trained):
    """Copy the trained version into the app's models folder and activate it; return its version."""
    import shutil

    from web.services import get_registry

    version = trained[1]
    with app.app_context():
        registry = get_registry()
        shutil.copytree(version.path, registry.root / version.version)
        registry.activate(version.version)
    return version.version


@pytest.fixture
def client(app):
    return app.test_client()


def png_bytes(rgb):
    """Encode an RGB array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(rgb, **options):
    """Encode an RGB array as JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def coloured_noise(label, seed, size=48):
    """Return a noisy image whose mean colour tells its class: a picture that holds no face."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(CLASS_COLOURS[label], 35, (size, size, 3)), 0, 255).astype(np.uint8)


def coloured_face(label, seed, size=96):
    """Return a real face (the astronaut's), shifted a little by `seed` and tinted with its class's colour."""
    return tinted_face(CLASS_COLOURS[label], seed, size)


def face_haar_misses(label, size=96, width=None):
    """Return the first tinted face (by seed) in which Haar finds no face, so a whole-photo model uses it whole.

    `width` cuts the face's sides to that many pixels (a photo that is not square).
    """
    from ml.photos.faces import detect_faces

    for seed in range(100):
        face = coloured_face(label, seed, size)
        if width:
            face = np.ascontiguousarray(face[:, (size - width) // 2:(size - width) // 2 + width])
        if not detect_faces(face, "haar"):
            return face
    raise AssertionError("Haar found a face in every tinted face")


def write_zip(path, entries):
    """Write a zip archive from {name: bytes}."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def synthetic_entries(per_class=10, labels=tuple(CLASS_COLOURS)):
    """Return zip entries for a learnable colour task on real faces, one folder per class."""
    return {f"{label}/photo{i}.png": png_bytes(coloured_face(label, seed=1000 * n + i))
            for n, label in enumerate(labels) for i in range(per_class)}


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


def face_variants(photo, count):
    """Return `count` different JPEGs of one real face photo (flips, brightness, crops)."""
    variants = []
    for i in range(count):
        image = photo[:, ::-1] if i % 2 else photo
        image = np.clip(image.astype(np.int16) + 8 * i - 16, 0, 255).astype(np.uint8)
        variants.append(jpeg_bytes(np.ascontiguousarray(image[i * 4:, i * 3:]), quality=90))
    return variants


def model_card(**changes):
    """Return a small valid model card, as a training run would write it (with `changes`)."""
    from ml.versions.card import ModelCard

    return ModelCard(labels=["a", "b"], backbone={"name": "hog", "weights": {"name": "none"}}, head="linear",
                     face={"detector": "haar", "fallback": "whole"}, dataset={"id": "d", "images": 4},
                     metrics={"per_class": {}, "accuracy": 0.5, "macro_f1": 0.5},
                     abstention={"min_probability": 0.5, "min_margin": 0.1}).replace(**changes)


def clone_version(registry, version):
    """Save a copy of a version as a new one (a stand-in for a retrained model); return its name."""
    import shutil

    source = registry.get(version)

    def copy(folder):
        for name in source.card.files:
            shutil.copy(source.path / name, folder / name)
        return source.card.files
    return registry.save(source.card, copy).version


def legacy_version(registry, source, face_photos):
    """Save a version as releases before feature blocks wrote it: a format-1 card and a pickled head.

    Returns (the version, a function giving the head's probabilities for a face photo's name).
    """
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ml.features.dlib_face import DlibFaceBackbone
    from ml.photos.faces import crop_face
    from ml.versions.card import ModelCard

    old = {k: v for k, v in source.card.to_dict().items()
           if k not in ("format", "pipeline", "novelty", "version", "created", "files", "imported", "conversions")}
    old.update(backbone={"name": "dlib-face", "input_size": 150, "feature_size": 128,
                         "weights": {"name": "dlib_face_recognition_resnet_model_v1", "path": None, "sha256": None},
                         "alignment": "dlib 5-point landmarks, face chip 150 px, padding 0.25"},
               abstention={"min_probability": 0.0, "min_margin": 0.1}, calibration={"temperature": 1.0})
    backbone = DlibFaceBackbone()
    crops = {name: crop_face(face_photos[name], FaceOptions()).image for name in ("astronaut", "grace_hopper")}
    features = backbone.features(np.stack(list(crops.values()) + [c[:, ::-1] for c in crops.values()]))
    head = make_pipeline(StandardScaler(), LogisticRegression()).fit(features, [0, 1, 0, 1])

    def write(folder):
        joblib.dump(head, folder / "head.joblib")
        (folder / "evaluation.json").write_text("[]")
        return ["head.joblib", "evaluation.json"]

    def expected(name):
        return head.predict_proba(backbone.features(crops[name][np.newaxis]))[0]
    return registry.save(ModelCard.from_dict(old), write), expected


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Train one small model (random VGG16 at 32 px, linear head) on the colour task (tinted faces).

    Returns (registry, version, dataset).
    """
    root = tmp_path_factory.mktemp("trained")
    archive = write_zip(root / "synthetic.zip", synthetic_entries(per_class=14))
    dataset = import_dataset(archive, "colours", root / "datasets", face=SYNTHETIC_FACES)
    registry = ModelRegistry(root / "models")
    version = train(dataset, SMALL_TRAINING, registry)
    return registry, version, dataset


@pytest.fixture(scope="session")
def people(tmp_path_factory, face_photos):
    """Import a dataset of the astronaut against Grace Hopper (faces detected by MTCNN); return (root, dataset)."""
    root = tmp_path_factory.mktemp("people")
    entries = {f"first/{i}.jpg": d for i, d in enumerate(face_variants(face_photos["astronaut"], 6))}
    entries |= {f"second/{i}.jpg": d for i, d in enumerate(face_variants(face_photos["grace_hopper"], 6))}
    return root, import_dataset(write_zip(root / "people.zip", entries), "people", root / "datasets",
                                face=FaceOptions("mtcnn"))


@pytest.fixture(scope="session")
def trained_people(people):
    """Train a dlib-face model that tells the astronaut from Grace Hopper; return (registry, version)."""
    root, dataset = people
    registry = ModelRegistry(root / "models")
    return registry, train(dataset, TrainingOptions(backbone="dlib-face", folds=3), registry)


@pytest.fixture(scope="session")
def tuned_people(people):
    """Fine-tune the face network's tail with a softmax head on the same faces; return (registry, version)."""
    root, dataset = people
    registry = ModelRegistry(root / "tuned-models")
    options = TrainingOptions(backbone="dlib-face", head="softmax", epochs=2, fine_tune_epochs=2,
                              fine_tune_learning_rate=1e-3)
    return registry, train(dataset, options, registry)


@pytest.fixture(scope="session")
def trained_people_texture(people):
    """Train a model of texture and shape only (HOG, LBP, geometry) on the same faces; return (registry, version)."""
    root, dataset = people
    registry = ModelRegistry(root / "texture-models")
    return registry, train(dataset, TrainingOptions(backbone="hog+lbp+geometry", folds=3), registry)


def postgres_program(name):
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]
    return found if isinstance(found, str) else found[0]


def as_postgres_user(command):
    """PostgreSQL refuses to run as root: run its programs as the postgres system user when we are root."""
    return ["runuser", "-u", "postgres", "--"] + command if os.geteuid() == 0 else command


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


def new_database(port, name):
    """Create an empty database on the test server; return its URL."""
    subprocess.run([postgres_program("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "facedx", name],
                   check=True, capture_output=True)
    return f"postgresql://facedx@127.0.0.1:{port}/{name}"


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


PROJECT = Path(__file__).resolve().parents[1]


def flask_command(env, *args, stdin=None):
    """Run `flask --app app ARGS` in the project with `env`; return its output, failing the test on an error."""
    import sys

    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=PROJECT, env=env,
                            input=stdin, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def start_web_node(env, output=subprocess.DEVNULL):
    """Start gunicorn as `make run` does, on a free port in its own session; return (process, base URL)."""
    import sys
    import urllib.request

    port = free_port()
    node = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"],
                            cwd=PROJECT, env=dict(env, FACEDX_BIND=f"127.0.0.1:{port}"), stdout=output,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(base + "/login", timeout=2)
            return node, base
        except OSError:
            assert node.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.5)


def concurrent_wrong_logins(app, name, count):
    """Send `count` wrong-password logins for `name` at the same moment; return (passwords checked, statuses)."""
    import threading
    from unittest import mock

    from web.records import User

    checked, lock = [], threading.Lock()
    check_password = User.check_password

    def counted(user, password):
        with lock:
            checked.append(user.username)
        return check_password(user, password)

    clients = [app.test_client() for _ in range(count)]
    forms = [{"username": name, "password": "not the password", "csrf_token": form_token(c, "/login")}
             for c in clients]
    start, statuses = threading.Barrier(count), []

    def guess(client, form):
        start.wait()
        statuses.append(client.post("/login", data=form).status_code)

    with mock.patch.object(User, "check_password", counted):
        threads = [threading.Thread(target=guess, args=pair) for pair in zip(clients, forms)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return len(checked), sorted(statuses)
