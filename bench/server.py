"""A FaceDx server for benchmarks: a temporary data folder, a trained model, gunicorn on 127.0.0.1,
and nginx in front of it with the shipped deploy/nginx.conf (the proxy tests run it too)."""
import functools
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

PROJECT = Path(__file__).resolve().parents[1]
COLOURS = {"alpha": (200, 60, 60), "beta": (60, 60, 200), "gamma": (60, 200, 60)}
DOCTOR_PASSWORD = "a long doctor password"


@functools.cache
def _astronaut_face():
    """Return the astronaut photo scikit-image ships and the box of its face (as MTCNN finds it)."""
    import skimage.data

    from ml.photos.faces import crop_face

    photo = skimage.data.astronaut()
    return photo, crop_face(photo).box


def tinted_face(colour, seed, size=96):
    """Return a real face, shifted a little by `seed` and tinted with `colour`, `size` px square (RGB array).

    The tint is the learnable difference between classes; the face is real, so the face gate
    passes it, and at 96 px it is sharp and large enough for the photo-quality check.
    """
    photo, box = _astronaut_face()
    rng = np.random.default_rng(seed)
    dx, dy = rng.integers(-6, 7, 2)
    face = photo[box.y + dy:box.y + dy + box.height, box.x + dx:box.x + dx + box.width]
    face = cv2.resize(np.ascontiguousarray(face[:, ::-1] if seed % 2 else face), (size, size),
                      interpolation=cv2.INTER_AREA).astype(np.float64)
    tinted = 0.4 * face + 0.6 * np.array(colour) + rng.normal(0, 6, face.shape)
    return np.clip(tinted, 0, 255).astype(np.uint8)


def colour_png(colour, seed, size=96):
    """A face photo whose tint tells its class, as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(tinted_face(colour, seed, size)).save(buffer, format="PNG")
    return buffer.getvalue()


def photos(count=12):
    return [colour_png(COLOURS[label], 9000 + i) for i, label in enumerate(list(COLOURS) * (count // 3))]


def flask(env, *args, stdin=None):
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=PROJECT, env=env,
                            input=stdin, capture_output=True, text=True, check=True)
    return result.stdout


DOCTORS_SCRIPT = """
import secrets, sys
from werkzeug.security import generate_password_hash
from app import create_app
from web.db import db
from web.records import ApiToken, User
app, unused = create_app(), generate_password_hash(secrets.token_urlsafe())
with app.app_context():
    for i in range(int(sys.argv[1])):
        user = User(username=f"bench-doctor-{i:03d}", role="doctor", password_hash=unused)
        row, token = ApiToken.issue(user)
        db.session.add_all([user, row])
        print(token)
    db.session.commit()
"""


def doctor_tokens(env, count):
    """Create `count` doctors with an API token each (in one process); return their Authorization headers."""
    result = subprocess.run([sys.executable, "-c", DOCTORS_SCRIPT, str(count)], cwd=PROJECT, env=env,
                            capture_output=True, text=True, check=True)
    return [{"Authorization": f"Bearer {token}"} for token in result.stdout.split()]


def rss_mib(pid):
    """Resident memory of a process, in MiB."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


@contextmanager
def prepared_data(image_size):
    """Yield (env, admin headers, doctor headers) for a data folder with an active VGG16 model."""
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, FACEDX_DATA_DIR=data)
        flask(env, "setup")
        flask(env, "user", "create", "doctor", "--role", "doctor", stdin=DOCTOR_PASSWORD + "\n")
        admin = {"Authorization": "Bearer " + flask(env, "token", "create", "admin").split()[-1]}
        doctor = {"Authorization": "Bearer " + flask(env, "token", "create", "doctor").split()[-1]}
        archive = Path(data) / "bench.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for label, colour in COLOURS.items():
                for i in range(12):
                    zf.writestr(f"{label}/{i}.png", colour_png(colour, 100 * len(label) + i))
        flask(env, "dataset", "import", str(archive), "--name", "bench", "--face-fallback", "whole")   # tight crops
        output = flask(env, "train", "--dataset", "bench", "--backbone", "vgg16-imagenet", "--weights", "none",
                       "--image-size", str(image_size), "--folds", "3")
        version = output.split("Version ", 1)[1].split()[0]
        flask(env, "models", "activate", version)
        yield env, admin, doctor, version


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, server, why_not, timeout=20):
    """Wait until `server` (a Popen) accepts connections on `port`; fail with `why_not()` if it dies or times out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, why_not()
            time.sleep(0.1)


@contextmanager
def gunicorn(env, **settings):
    """Run gunicorn as `make run` does, with extra FACEDX_* settings; yield (base URL, worker pid)."""
    port = free_port()
    env = dict(env, FACEDX_BIND=f"127.0.0.1:{port}", **{k: str(v) for k, v in settings.items()})
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"],
                              cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if urllib.request.urlopen(base + "/api/v1/health", timeout=5).status == 200:
                    break
            except OSError:
                assert server.poll() is None, "gunicorn did not start"
                time.sleep(0.5)
        worker = int(Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()[0])
        yield base, worker
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


# What a site needs from the main nginx.conf (Debian's or the official image's), with every path
# in a folder of its own, so that no root is needed.
NGINX_MAIN = """daemon off;
worker_processes auto;
pid {folder}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {folder}/facedx.conf;
}}
"""


@contextmanager
def nginx(folder, upstream):
    """Run Debian's nginx with deploy/nginx.conf as `make nginx-site` fills it in, in front of `upstream`.

    `folder` (created) receives a self-signed certificate for localhost, the configuration and
    the logs. Yield (HTTPS port on 127.0.0.1, certificate file to trust).
    """
    folder.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", folder / "privkey.pem", "-out", folder / "fullchain.pem"], check=True,
                   capture_output=True)
    port = free_port()
    site = subprocess.run(["make", "-s", "nginx-site", f"UPSTREAM={upstream}", f"TLS_DIR={folder}",
                           f"HTTPS_PORT={port}", f"HTTP_PORT={free_port()}"], cwd=PROJECT, check=True,
                          capture_output=True, text=True).stdout
    (folder / "facedx.conf").write_text(site.replace("/var/log/nginx/", f"{folder}/"))
    (folder / "nginx.conf").write_text(NGINX_MAIN.format(folder=folder))
    server = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-p", folder, "-c", folder / "nginx.conf",
                               "-e", folder / "error.log"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, server, (folder / "error.log").read_text)
        yield port, folder / "fullchain.pem"
    finally:
        server.terminate()
        server.wait()
