"""Helpers of the tests: constants, generated photos and archives, accounts, servers started for a test.

Fixtures live in conftest.py; test modules import what they need from here, never from conftest.
"""
import functools
import glob
import io
import os
import shutil
import signal
import sqlite3
import subprocess
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
import numpy as np
from PIL import Image

from bench.server import free_port, tinted_face, wait_for_port  # noqa: F401  (free_port and wait_for_port: for tests)
from ml.datasets.store import Dataset
from ml.learning.options import TrainingOptions
from ml.photos.faces import FaceOptions
from ml.versions.registry import ModelRegistry, ModelVersion

PROJECT = Path(__file__).resolve().parents[1]
# The browser tests drive Debian's Chromium (never a downloaded browser), which must not try to reach the internet.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Colours that make a learnable difference between generated classes.
CLASS_COLOURS = {"alpha": (200, 60, 60), "beta": (60, 60, 200), "gamma": (60, 200, 60)}
SYNTHETIC_FACES = FaceOptions(detector="haar", fallback="whole")   # tight faces: Haar finds some, the rest used whole
# A VGG16 with random weights at 32 px: fast, and its features still carry the colour signal.
# Strong regularisation keeps its probabilities away from 0 and 1, so ambiguity shows.
SMALL_TRAINING = TrainingOptions(backbone="vgg16-imagenet", weights="none", image_size=32, folds=3,
                                 regularization=0.01)
SMALL_API_OPTIONS = {"backbone": "vgg16-imagenet", "weights": "none", "image_size": 32, "folds": 3}

PASSWORD = "correct horse battery"
THREADS = 12         # gunicorn.conf.py's default


@dataclass(frozen=True)
class Trained:
    """A model trained once per session: the registry that holds it, its version, and the dataset it learnt."""

    registry: ModelRegistry
    version: ModelVersion
    dataset: Dataset


@dataclass(frozen=True)
class People:
    """The astronaut against Grace Hopper: the folder the dataset and its models live in, and the dataset."""

    root: Path
    dataset: Dataset


def bearer_headers(token):
    return {"Authorization": f"Bearer {token}"}


@functools.cache
def password_hash():
    """PASSWORD hashed as the application hashes it, once: each hash takes 0.15 s, and most tests make accounts."""
    from web.records import User

    user = User()
    user.set_password(PASSWORD)
    return user.password_hash


def make_user(app, name, role):
    """Create an account with PASSWORD and return an API token for it."""
    from web.db import db
    from web.records import ApiToken, User

    with app.app_context():
        user = User(username=name, role=role, password_hash=password_hash())
        row, token = ApiToken.issue(user)
        db.session.add_all([user, row])
        db.session.commit()
    return token


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


def train_on(people, folder, options):
    """Train a model on the People dataset into a registry of its own (`folder` under its root); return Trained."""
    from ml.learning.training import train

    registry = ModelRegistry(people.root / folder)
    return Trained(registry=registry, version=train(people.dataset, options, registry), dataset=people.dataset)


def import_here(app, name="colours", per_class=6):
    """Import a generated dataset straight into the app's data folder, without an import job; return its manifest.

    For tests that need a dataset but do not test importing: an import job starts a process.
    """
    from ml.datasets import import_dataset
    from web.services import datasets_root

    archive = write_zip(Path(app.config["UPLOAD_DIR"]) / f"{name}.zip", synthetic_entries(per_class=per_class))
    with app.app_context():
        manifest = import_dataset(archive, name, datasets_root(), face=SYNTHETIC_FACES).manifest
    archive.unlink()
    return manifest


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


def postgres_program(name):
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]
    return found if isinstance(found, str) else found[0]


def as_postgres_user(command):
    """PostgreSQL refuses to run as root: run its programs as the postgres system user when we are root."""
    return ["runuser", "-u", "postgres", "--"] + command if os.geteuid() == 0 else command


def new_database(port, name):
    """Create an empty database on the test server; return its URL."""
    subprocess.run([postgres_program("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "facedx", name],
                   check=True, capture_output=True)
    return f"postgresql://facedx@127.0.0.1:{port}/{name}"


def flask_command(env, *args, stdin=None):
    """Run `flask --app app ARGS` in the project with `env`; return its output, failing the test on an error."""
    import sys

    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=PROJECT, env=env,
                            input=stdin, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@contextmanager
def web_node(env, log_path):
    """Run gunicorn as `make run` does, its output in `log_path`; yield its base URL; then kill it, its worker and any
    job process (they share its session)."""
    with open(log_path, "w") as log:
        process, base = start_web_node(env, log)
        try:
            yield base
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


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

def audit_log(app):
    """Return the audit log as (username, action, target) rows, oldest first."""
    from web.db import db
    from web.records import AuditEvent

    with app.app_context():
        return [(e.username, e.action, e.target)
                for e in db.session.execute(db.select(AuditEvent).order_by(AuditEvent.id)).scalars()]


@contextmanager
def database_full(app, table):
    """Make every write to `table` fail the way SQLite fails when its disk is full (the job processes' too)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def refuse(connection, cursor, statement, parameters, context, executemany):
        if statement.startswith(("INSERT", "UPDATE")) and f" {table} " in f" {statement} ":
            raise sqlite3.OperationalError("database or disk is full")
    event.listen(Engine, "before_cursor_execute", refuse)
    try:
        yield
    finally:
        event.remove(Engine, "before_cursor_execute", refuse)


def post_photo(client, data, name="photo.png"):
    """Send a photo to the doctor's page as its form does."""
    return client.post("/", data={"photo": (io.BytesIO(data), name), "csrf_token": form_token(client, "/")},
                       content_type="multipart/form-data")


def result_page(client, label="gamma", seed=3, name="photo.png"):
    """Send a tinted face to the doctor's page; return the result page's HTML."""
    return post_photo(client, png_bytes(coloured_face(label, seed=seed)), name).get_data(as_text=True)


def crop_of(page):
    """Return the PNG of the face crop that a result page shows."""
    import base64
    import re

    return base64.b64decode(re.search(r'id="face" src="data:image/png;base64,([^"]+)"', page).group(1))


def post_crop(client, crop, version, **extra):
    """Ask for the map of a shown face crop, as the result page's script does."""
    data = {"crop": (io.BytesIO(crop), "face.png"), "model_version": version,
            "csrf_token": form_token(client, "/")} | extra
    return client.post("/explain", data=data, content_type="multipart/form-data")


def stalled_request(connection, path="/login", length=1000, headers_only=False, token=None):
    """Start a POST on `connection` and stop sending: after the header, or half-way through it.

    The login form's CSRF check reads the body, so gunicorn waits for it; nginx waits for any body.
    """
    authorization = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (f"POST {path} HTTP/1.1\r\nHost: facedx\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"{authorization}Content-Length: {length}\r\n\r\n").encode()
    connection.sendall(head[:40] if headers_only else head)
    return connection
