"""Load at the edge: what photo clients get from gunicorn alone (`make run`) and through nginx in front.

One run, for each edge the checkout has (gunicorn alone; then nginx with deploy/nginx.conf in
front of it, when the checkout ships that file):
- 20 clients (a doctor each) posting photos for --seconds while a training job runs: answers, p50/p95
- 100 clients for --seconds: how many got a prediction and after how long, how many a 503 with
  Retry-After and how fast (a client told to retry waits as told before its next photo)
- 16 clients posting a 40-megapixel PNG at once: answers, and the worker's peak memory
- maps: one doctor asks for the map of a result from 4 tabs at once, each again a second after
  its answer, for --seconds, while a colleague sends photos one after another; the colleague's
  median against the same colleague alone just before, and how each was answered. This case
  serves a model of the face blocks `auto` prefers (MAP_PIPELINE, trained on the same photos).
The model is VGG16 at 224 px with random weights (ImageNet weights cost the same time) and a
linear head, trained on generated images in a temporary data folder. To compare with another
checkout, copy bench/load.py, bench/server.py and bench/large_photos.py into it and run it
there: it serves the code of the checkout it sits in.
Usage: .venv/bin/python -m bench.load [--seconds 30] [--image-size 224]
"""
import argparse
import base64
import collections
import concurrent.futures
import os
import re
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import requests

from bench.large_photos import HEAVY_SIDE, PeakMemory, black_png
from bench.server import DOCTOR_PASSWORD, PROJECT, doctor_tokens, flask, gunicorn, nginx, photos, prepared_data, rss_mib

MAP_TABS = 4
MAP_PIPELINE = "dlib-face+hog+lbp+geometry"
MAP_PAUSE_S = 1.0        # a tab asks again this long after its answer (a browser asks once per result)


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def send_photos(url, headers, photos, clients, stop, verify=True):
    """Post photos from `clients` threads until stop() says so; return (answers, waits, unanswered).

    `headers`: one dict for every client, or a list (client i uses headers[i % len]: a doctor each).
    answers: every request's (answer, seconds). The answer is the status; "503 Retry-After" (or
    429) when the server said when to come back (the client waits that long, then sends the same
    photo again); "no answer" for a timeout or a closed connection. waits: for every photo answered
    otherwise, the seconds from its first try. unanswered: photos still being retried at the end.
    """
    every = headers if isinstance(headers, list) else [headers]
    answers, waits, lock = [], [], threading.Lock()
    unanswered = [0]

    def client(number):
        session = requests.Session()
        i, first_try = number, None
        while not stop():
            start, wait = time.perf_counter(), 0
            first_try = first_try or start
            try:
                response = session.post(url, headers=every[number % len(every)],
                                        files={"image": ("p.png", photos[i % len(photos)])}, verify=verify,
                                        timeout=120)
                answer = response.status_code
                if answer in (429, 503) and "Retry-After" in response.headers:
                    answer, wait = f"{answer} Retry-After", float(response.headers["Retry-After"])
            except requests.RequestException:
                answer = "no answer"
            with lock:
                answers.append((answer, time.perf_counter() - start))
                if not wait:
                    waits.append(time.perf_counter() - first_try)
            if wait:
                time.sleep(wait)
            else:
                i, first_try = i + 1, None
        with lock:
            unanswered[0] += first_try is not None

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return answers, waits, unanswered[0]


def hammer(url, headers, photos, clients, stop):
    """Send predictions from `clients` threads until stop() says so; return (latencies, {answer: count})."""
    answers, _, _ = send_photos(url, headers, photos, clients, stop)
    return [seconds for _, seconds in answers], dict(collections.Counter(answer for answer, _ in answers))


def counts(answers):
    """Say how many of each answer, the most frequent first: '412x200, 3x503 Retry-After'."""
    return ", ".join(f"{n}x{answer}" for answer, n in collections.Counter(answers).most_common())


def spread(seconds):
    """Say p50/p95 of durations in milliseconds, or '-' for none."""
    if not seconds:
        return "-"
    return f"{percentile(seconds, .5) * 1000:.0f}/{percentile(seconds, .95) * 1000:.0f} ms"


def sent_summary(answers, waits, unanswered):
    """Say what the clients got: answers, how fast each kind came, and how long a photo took to its answer."""
    kinds = collections.defaultdict(list)
    for answer, seconds in answers:
        kinds[answer].append(seconds)
    each = ", ".join(f"{len(seconds)}x{answer} in {spread(seconds)}"
                     for answer, seconds in sorted(kinds.items(), key=lambda kind: -len(kind[1])))
    return f"{each}; a photo's first try to its answer {spread(waits)}, {unanswered} unanswered at the end"


@contextmanager
def edge(env, proxied):
    """Start gunicorn, with nginx in front when `proxied`; yield (URL the clients use, TLS verify, worker pid)."""
    with gunicorn(env) as (base, worker):
        if not proxied:
            yield base, True, worker
            return
        with tempfile.TemporaryDirectory() as folder, \
                nginx(Path(folder) / "nginx", base.removeprefix("http://")) as (port, certificate):
            yield f"https://localhost:{port}", str(certificate), worker


def while_training(url, verify, admin, doctors, image_size, clients, seconds):
    """Send photos from `clients` for `seconds` while a training job runs; return (send_photos's, job phase)."""
    jobs = url + "/api/v1/training-jobs"
    job = requests.post(jobs, headers=admin, verify=verify, timeout=30, json={
        "dataset": "bench", "options": {"backbone": "vgg16-imagenet", "weights": "none", "image_size": image_size,
                                        "head": "softmax", "epochs": 1000, "patience": 1000}}).json()
    deadline = time.monotonic() + seconds
    sent = send_photos(url + "/api/v1/predict", doctors, photos(), clients, lambda: time.monotonic() > deadline,
                       verify)
    training = requests.get(f"{jobs}/{job['id']}", headers=admin, verify=verify, timeout=30).json()
    requests.post(f"{jobs}/{job['id']}/cancel", headers=admin, verify=verify, timeout=30)
    while requests.get(f"{jobs}/{job['id']}", headers=admin, verify=verify,
                       timeout=30).json()["status"] in ("queued", "running"):
        time.sleep(1)                      # one job at a time: the next edge starts its own
    return sent, f"{training['status']}, {training['progress'].get('phase')}"


def large_photos(url, verify, doctors, worker, clients):
    """Post one 40-megapixel PNG from each of `clients` (a doctor each) at once; return (answers, worker's peak MiB)."""
    photo = black_png(HEAVY_SIDE)

    def post(number):
        try:
            return requests.post(url + "/api/v1/predict", headers=doctors[number % len(doctors)],
                                 files={"image": ("p.png", photo)},
                                 verify=verify, timeout=600).status_code
        except requests.RequestException:
            return "no answer"
    with PeakMemory(worker) as memory, concurrent.futures.ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(post, range(clients)))
    return answers, memory.peak


def logged_in(url, verify, username, password):
    """Return a requests.Session logged in to the web pages as `username`."""
    session = requests.Session()
    session.headers["Referer"] = url + "/"          # over HTTPS the CSRF check wants it, as browsers send it
    page = session.get(url + "/login", verify=verify, timeout=60).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = session.post(url + "/login", data={"username": username, "password": password, "csrf_token": token},
                            allow_redirects=False, verify=verify, timeout=60)
    assert response.status_code == 302, response.text
    return session


def while_mapping(url, verify, colleague, seconds):
    """A doctor asks for a result's map from MAP_TABS tabs at once, over and over, while a colleague sends photos.

    Return (colleague alone: answers, colleague during the maps: answers, the maps' answers).
    """
    def colleague_for(duration):
        deadline = time.monotonic() + duration
        answers, _, _ = send_photos(url + "/api/v1/predict", colleague, photos(), 1,
                                    lambda: time.monotonic() > deadline, verify)
        return answers

    alone = colleague_for(seconds)
    doctor = logged_in(url, verify, "doctor", DOCTOR_PASSWORD)
    form = doctor.get(url + "/", verify=verify, timeout=60).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form).group(1)
    answer = doctor.post(url + "/", data={"csrf_token": token}, files={"photo": ("p.png", photos()[0])},
                         verify=verify, timeout=120)
    result = answer.text
    face = re.search(r'id="face" src="data:image/png;base64,([^"]+)"', result)
    if face is None:
        raise RuntimeError(f"The doctor's photo got {answer.status_code}, no result: {result[:2000]}")
    crop = base64.b64decode(face.group(1))
    fields = {"model_version": re.search(r'data-version="([^"]+)"', result).group(1),
              "csrf_token": re.search(r'data-csrf="([^"]+)"', result).group(1)}
    maps, stop = [], threading.Event()

    def tab(_):
        """Ask for the map; after an answer, ask again a second later (after Retry-After when told to)."""
        while not stop.is_set():
            start, pause = time.perf_counter(), MAP_PAUSE_S
            try:
                response = doctor.post(url + "/explain", data=fields, files={"crop": ("face.png", crop)},
                                       verify=verify, timeout=120)
                answer = response.status_code
                pause = float(response.headers.get("Retry-After", pause))
            except requests.RequestException:
                answer = "no answer"
            maps.append((answer, time.perf_counter() - start))
            stop.wait(pause)
    with concurrent.futures.ThreadPoolExecutor(MAP_TABS) as pool:
        tabs = [pool.submit(tab, i) for i in range(MAP_TABS)]
        during = colleague_for(seconds)
        stop.set()
        for future in tabs:
            future.result()
    return alone, during, maps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--clients", type=int, default=20, help="clients while training")
    parser.add_argument("--crowd", type=int, default=100, help="clients at once, no training")
    parser.add_argument("--large", type=int, default=16, help="clients posting a 40-megapixel photo")
    args = parser.parse_args()
    edges = ["gunicorn alone"] + ["nginx in front"] * (PROJECT / "deploy" / "nginx.conf").is_file()
    rows, load_at_start = {}, os.getloadavg()[0]
    with prepared_data(args.image_size) as (env, admin, doctor, vgg):
        flask(env, "user", "create", "colleague", "--role", "doctor", stdin=DOCTOR_PASSWORD + "\n")
        colleague = {"Authorization": "Bearer " + flask(env, "token", "create", "colleague").split()[-1]}
        doctors = doctor_tokens(env, max(args.clients, args.crowd, args.large))     # one account per client
        fused = flask(env, "train", "--dataset", "bench", "--backbone", MAP_PIPELINE, "--folds", "3")
        fused = fused.split("Version ", 1)[1].split()[0]
        for name in edges:
            with edge(env, name == "nginx in front") as (url, verify, worker):
                for photo in photos()[:3]:
                    requests.post(url + "/api/v1/predict", headers=doctor, files={"image": ("p.png", photo)},
                                  verify=verify, timeout=60)
                start_mib = rss_mib(worker)
                training = while_training(url, verify, admin, doctors, args.image_size, args.clients, args.seconds)
                deadline = time.monotonic() + args.seconds
                crowd = send_photos(url + "/api/v1/predict", doctors, photos(), args.crowd,
                                    lambda: time.monotonic() > deadline, verify)
                large = large_photos(url, verify, doctors, worker, args.large)
                flask(env, "models", "activate", fused, "--force")
                mapping = while_mapping(url, verify, colleague, args.seconds)
                flask(env, "models", "activate", vgg, "--force")
                rows[name] = training, crowd, large, start_mib, mapping
    print(f"{PROJECT}: gunicorn as `make run` starts it (1 worker x 12 threads), VGG16 {args.image_size} px "
          f"+ linear head; p50/p95; load average {load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
          f"on {os.cpu_count()} CPUs")
    print(f"\n{args.clients} clients for {args.seconds} s while a training job runs")
    for name, (((answers, waits, unanswered), phase), *_) in rows.items():
        print(f"  {name:<15} {sent_summary(answers, waits, unanswered)}; the job meanwhile: {phase}")
    print(f"\n{args.crowd} clients for {args.seconds} s, no training")
    for name, (_, (answers, waits, unanswered), *_) in rows.items():
        told = sum(answer == "503 Retry-After" for answer, _ in answers)
        print(f"  {name:<15} {told / len(answers):.0%} of the answers were 503 Retry-After; "
              f"{sent_summary(answers, waits, unanswered)}")
    print(f"\n{args.large} clients posting a {HEAVY_SIDE} x {HEAVY_SIDE} black PNG at once")
    for name, (_, _, (answers, peak), start_mib, _) in rows.items():
        print(f"  {name:<15} {counts(answers)}; worker peak {peak:.0f} MiB ({start_mib:.0f} MiB before the loads)")
    print(f"\nA doctor asking for a map from {MAP_TABS} tabs at once for {args.seconds} s; a colleague's photos, one "
          f"at a time, alone just before and during the maps; the model served: {MAP_PIPELINE} + linear head")
    for name, (*_, (alone, during, maps)) in rows.items():
        solo, busy = (percentile([s for _, s in answers], .5) for answers in (alone, during))
        print(f"  {name:<15} colleague alone {counts(a for a, _ in alone)}, median {solo * 1000:.0f} ms; during "
              f"the maps {counts(a for a, _ in during)}, median {busy * 1000:.0f} ms ({busy / solo:.2f}x); "
              f"maps: {counts(a for a, _ in maps)}, 200s in {spread([s for a, s in maps if a == 200])}")


if __name__ == "__main__":
    main()
