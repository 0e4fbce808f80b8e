"""deploy/nginx.conf run by Debian's nginx (as `make nginx-site` fills it in) in front of gunicorn or a stand-in."""
import concurrent.futures
import http.client
import http.server
import json
import os
import signal
import socket
import ssl
import threading
import time
from contextlib import contextmanager

from bench.server import nginx
from config import Config
from tests.helpers import THREADS, stalled_request, start_web_node
from web.uploads import FORM_BYTES, PHOTO_FORM_BYTES


class Proxy:
    """A client of nginx on 127.0.0.1 that trusts its self-signed certificate for localhost."""

    def __init__(self, port, certificate):
        self.port, self.context = port, ssl.create_default_context(cafile=certificate)

    def connect(self):
        """Open a TLS connection to the proxy, as a browser would."""
        return self.context.wrap_socket(socket.create_connection(("127.0.0.1", self.port), timeout=30),
                                        server_hostname="localhost")

    def request(self, method, path, body=None, headers=None):
        """Send one request; return (status, headers, body)."""
        connection = http.client.HTTPSConnection("localhost", self.port, context=self.context, timeout=60)
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        answer = (response.status, response.headers, response.read())
        connection.close()
        return answer


@contextmanager
def proxy_to(folder, upstream):
    """Run the shipped nginx site in front of `upstream` (host:port); yield a Proxy client."""
    with nginx(folder, upstream) as (port, certificate):
        yield Proxy(port, certificate)


def established_connections(port):
    """Count the open TCP connections to a local port (from /proc/net/tcp)."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if int(row[1].split(":")[1], 16) == port and row[3] == "01")


def test_more_stalled_clients_than_gunicorn_threads_never_reach_it_and_health_answers(tmp_path):
    node, base = start_web_node(dict(os.environ, FACEDX_DATA_DIR=str(tmp_path / "data")))
    gunicorn_port = int(base.rsplit(":", 1)[1])
    try:
        with proxy_to(tmp_path / "nginx", f"127.0.0.1:{gunicorn_port}") as proxy:
            stalled = [stalled_request(proxy.connect(), headers_only=i % 4 == 0) for i in range(THREADS)]
            stalled += [stalled_request(proxy.connect(), "/api/v1/predict", 1_000_000) for _ in range(2 * THREADS)]
            status, _, body = proxy.request("GET", "/api/v1/health")
            assert (status, json.loads(body)["status"]) == (503, "unavailable")    # gunicorn's answer: no model yet
            assert established_connections(gunicorn_port) == 0      # nginx holds every stalled client itself
            for connection in stalled:                              # ...and still has them open
                connection.setblocking(False)
                try:
                    assert connection.recv(1) != b""
                except ssl.SSLWantReadError:
                    pass
                connection.close()
    finally:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()


ADMIN_TOKEN = "an-administrators-token"


@contextmanager
def held_upstream():
    """A stand-in for gunicorn that answers GETs at once and holds every POST until released.

    Its upload check (nginx's auth_request) lets through GETs and ADMIN_TOKEN's requests only.
    Yields (address, release event, list that each POST joins on arrival).
    """
    release, arrived = threading.Event(), []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/auth/upload-allowed":
                allowed = self.headers.get("X-Original-Method") in ("GET", "HEAD") or \
                    self.headers.get("Authorization") == f"Bearer {ADMIN_TOKEN}"
                self.send_response(204 if allowed else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.answer(b'{"status": "ok"}')

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            arrived.append(self.path)
            release.wait(30)
            self.answer(b'{"predictions": []}')

        def answer(self, body):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", release, arrived
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_predictions_beyond_the_places_at_gunicorn_get_503_with_retry_after_at_once(tmp_path):
    photo = b"x" * 100_000
    with held_upstream() as (upstream, release, arrived), proxy_to(tmp_path / "nginx", upstream) as proxy:
        with concurrent.futures.ThreadPoolExecutor(2 * THREADS) as pool:
            sent = [pool.submit(proxy.request, "POST", "/api/v1/predict", photo) for _ in range(2 * THREADS)]
            deadline = time.monotonic() + 30
            while len(arrived) + sum(future.done() for future in sent) < len(sent):
                assert time.monotonic() < deadline, "requests neither reached gunicorn nor were answered"
                time.sleep(0.05)
            refused = [future.result() for future in sent if future.done()]
            assert proxy.request("GET", "/api/v1/health")[0] == 200     # other routes have their own door
            release.set()
            served = [future.result() for future in sent]
    assert 0 < len(arrived) < THREADS            # gunicorn keeps threads for pages and health checks
    assert len(refused) == 2 * THREADS - len(arrived)
    for status, headers, body in refused:
        assert (status, headers["Retry-After"], json.loads(body)["error"]) == (503, "2", "service_unavailable")
    assert [status for status, _, _ in served].count(200) == len(arrived)


def wait_for(condition):
    """Wait (30 s at most) for requests in flight to arrive upstream or be answered."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "requests neither reached the upstream nor were answered"
        time.sleep(0.05)


def test_maps_and_pages_have_their_own_doors_and_one_token_holds_three_photo_places(tmp_path):
    photo = b"x" * 1000
    with held_upstream() as (upstream, release, arrived), proxy_to(tmp_path / "nginx", upstream) as proxy:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            photos = [pool.submit(proxy.request, "POST", "/api/v1/predict", photo,
                                  {"Authorization": f"Bearer token-{i}"}) for i in range(6)]
            wait_for(lambda: arrived.count("/api/v1/predict") == 6)        # every photo place taken
            assert proxy.request("POST", "/", photo)[0] == 503              # a doctor's photo: no place
            assert proxy.request("GET", "/")[0] == 200                      # the start page is a page
            assert proxy.request("GET", "/static/style.css")[0] == 200
            maps = [pool.submit(proxy.request, "POST", path, photo)
                    for path in ("/explain", "/explain", "/admin/models/20260101-000000-abcdef/try/explain")]
            wait_for(lambda: len(arrived) == 9)                             # maps are not refused for photos
            status, headers, body = proxy.request("POST", "/explain", photo)  # a fourth map at once
            assert (status, headers["Retry-After"], json.loads(body)["error"]) == (503, "2", "service_unavailable")
            release.set()
            assert [future.result()[0] for future in photos + maps] == [200] * 9
        release.clear()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            held = [pool.submit(proxy.request, "POST", "/api/v1/predict", photo, {"Authorization": "Bearer same"})
                    for _ in range(3)]
            wait_for(lambda: arrived.count("/api/v1/predict") == 9)
            assert proxy.request("POST", "/api/v1/predict", photo, {"Authorization": "Bearer same"})[0] == 429
            held.append(pool.submit(proxy.request, "POST", "/api/v1/predict", photo, {"Authorization": "Bearer other"}))
            wait_for(lambda: arrived.count("/api/v1/predict") == 10)       # another token still gets a place
            release.set()
            assert [future.result()[0] for future in held] == [200] * 4


def test_body_limits_are_the_applications(tmp_path):
    config = Config()
    photo, archive = config.MAX_IMAGE_BYTES + PHOTO_FORM_BYTES, config.MAX_CONTENT_LENGTH
    limits = {"/login": FORM_BYTES, "/admin/models/v1/activate": FORM_BYTES, "/api/v1/predict": photo,
              "/": photo, "/explain": photo, "/admin/models/20260101-000000-abcdef/try": photo,
              "/admin/models/20260101-000000-abcdef/try/explain": photo,
              "/api/v1/datasets": archive, "/admin/datasets": archive,
              "/api/v1/models": archive, "/admin/models/import": archive}
    with held_upstream() as (upstream, release, arrived), proxy_to(tmp_path / "nginx", upstream) as proxy:
        release.set()
        for path, limit in limits.items():
            with proxy.connect() as connection:        # one byte over: refused from the header alone
                stalled_request(connection, path, limit + 1)
                assert connection.recv(64).startswith(b"HTTP/1.1 413 ")
        for path in ("/login", "/api/v1/predict"):
            assert proxy.request("POST", path, b"x" * limits[path])[0] == 200
    assert arrived == ["/login", "/api/v1/predict"]


def test_the_proxy_logs_paths_without_query_strings_or_control_characters(tmp_path):
    with held_upstream() as (upstream, _, _), proxy_to(tmp_path / "nginx", upstream) as proxy:
        proxy.request("GET", "/login%0A127.0.0.1%20%22GET%20/admin%22?patient=Jane%20Roe")
    lines = (tmp_path / "nginx" / "access.log").read_text().splitlines()
    assert len(lines) == 1 and "Jane" not in lines[0]
    assert '"GET /login\\x0A127.0.0.1 \\x22GET /admin\\x22"' in lines[0]


def test_only_administrators_hold_the_four_archive_upload_places(tmp_path):
    """nginx asks the application who sends an archive before it reads the body; four admins' at a time."""
    with held_upstream() as (upstream, release, _), proxy_to(tmp_path / "nginx", upstream) as proxy:
        release.set()
        anonymous = [stalled_request(proxy.connect(), "/api/v1/datasets", 10 ** 9) for _ in range(8)]
        for connection in anonymous:       # refused from the header alone: no upload place is held
            assert connection.recv(64).startswith(b"HTTP/1.1 403 ")
            connection.close()
        uploads = [stalled_request(proxy.connect(), "/api/v1/datasets", 10 ** 9, token=ADMIN_TOKEN) for _ in range(4)]
        with proxy.connect() as fifth:
            stalled_request(fifth, "/admin/models/import", 10 ** 9, token=ADMIN_TOKEN)
            assert fifth.recv(64).startswith(b"HTTP/1.1 503 ")
        assert proxy.request("GET", "/api/v1/models")[0] == 200       # reading the list is no upload
        for upload in uploads:
            upload.close()
