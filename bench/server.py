"""A FaceDx server for benchmarks: a temporary data folder, a trained model, gunicorn on 127.0.0.1."""
import io
import os
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

import numpy as np
from PIL import Image

PROJECT = Path(__file__).resolve().parents[1]
COLOURS = {"alpha": (200, 60, 60), "beta": (60, 60, 200), "gamma": (60, 200, 60)}


def colour_png(colour, seed, size=96):
    """A noisy photo whose colour tells its class (the face step uses the whole photo)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(colour, 35, (size, size, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def photos(count=12):
    return [colour_png(COLOURS[label], 9000 + i) for i, label in enumerate(list(COLOURS) * (count // 3))]


def flask(env, *args, stdin=None):
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=PROJECT, env=env,
                            input=stdin, capture_output=True, text=True, check=True)
    return result.stdout


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
        flask(env, "user", "create", "doctor", "--role", "doctor", stdin="a long doctor password\n")
        admin = {"Authorization": "Bearer " + flask(env, "token", "create", "admin").split()[-1]}
        doctor = {"Authorization": "Bearer " + flask(env, "token", "create", "doctor").split()[-1]}
        archive = Path(data) / "bench.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for label, colour in COLOURS.items():
                for i in range(12):
                    zf.writestr(f"{label}/{i}.png", colour_png(colour, 100 * len(label) + i))
        flask(env, "dataset", "import", str(archive), "--name", "bench", "--face-detector", "haar",
              "--face-fallback", "whole")
        output = flask(env, "train", "--dataset", "bench", "--backbone", "vgg16-imagenet", "--weights", "none",
                       "--image-size", str(image_size), "--folds", "3")
        version = output.split("Version ", 1)[1].split()[0]
        flask(env, "models", "activate", version)
        yield env, admin, doctor, version


@contextmanager
def gunicorn(env, **settings):
    """Run gunicorn as `make run` does, with extra FACEDX_* settings; yield (base URL, worker pid)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(env, FACEDX_BIND=f"127.0.0.1:{port}", **{k: str(v) for k, v in settings.items()})
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "app:app"],
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
