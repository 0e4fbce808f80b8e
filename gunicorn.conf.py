"""gunicorn settings for FaceDx (read by `gunicorn --config gunicorn.conf.py wsgi:app`)."""
import os

from gunicorn.glogging import Logger, SafeAtoms
from gunicorn.workers.gthread import TConn, ThreadWorker

from logsafe import escaped

# A client that sends nothing for this long while its request is read (or its answer written)
# is dropped and its thread freed. gthread has no setting for it: a client that sends a header
# and then nothing would hold a thread for ever, and eight of them would hold them all.
# 10 s is far above the pauses of a working connection (TCP's retransmission back-off reaches
# 1 + 2 + 4 s only after three losses in a row) and well inside the patience of a health check
# (compose: three tries 30 s apart), so a stalled client costs one thread 10 s, not the service.
# Behind deploy/nginx.conf it is a backstop: nginx sends gunicorn whole requests at once.
REQUEST_READ_TIMEOUT = 10


class TimedConnection(TConn):
    """A gthread connection whose reads and writes give up after REQUEST_READ_TIMEOUT s of silence."""

    def init(self):
        super().init()
        # gthread makes the socket blocking, without a timeout, before each request and then
        # calls init(): the timeout has to be set again here every time.
        self.sock.settimeout(REQUEST_READ_TIMEOUT)


class TimedThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, with connections that time out."""

    def enqueue_req(self, conn):
        conn.__class__ = TimedConnection     # accept() builds a TConn; the subclass adds only the timeout
        super().enqueue_req(conn)


class EscapedAtoms(SafeAtoms):
    """Access log fields with control characters written as \\xNN, so a request cannot forge log lines."""

    def __init__(self, atoms):
        super().__init__({key: escaped(value) if isinstance(value, str) else value for key, value in atoms.items()})


class EscapingLogger(Logger):
    """gunicorn's logger, with the access log's fields escaped."""

    atoms_wrapper_class = EscapedAtoms


bind = os.environ.get("FACEDX_BIND", "127.0.0.1:8000")


def exposed_without_proxy(address, environ):
    """Return why gunicorn must not listen on `address` alone, or None.

    gunicorn alone is no match for slow clients (eight that send one header byte every 5 s stall
    its health checks for a minute); deploy/nginx.conf in front reads whole requests first. So
    beyond the loopback interface it listens only when FACEDX_BEHIND_PROXY=1 says nginx is in front.
    """
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    if address.startswith("unix:") or host in ("127.0.0.1", "localhost", "::1") or host.startswith("127."):
        return None
    if environ.get("FACEDX_BEHIND_PROXY") == "1":
        return None
    return (f"FaceDx will not listen on {address} without a proxy in front: gunicorn alone cannot hold off slow "
            "clients. Put deploy/nginx.conf in front (docs/operations.md, 'Serving other machines') and set "
            "FACEDX_BEHIND_PROXY=1, or listen on 127.0.0.1.")


if exposed_without_proxy(bind, os.environ):
    raise SystemExit(exposed_without_proxy(bind, os.environ))
# One process holds one copy of the model; threads share it. TensorFlow releases the GIL while
# it computes, so threads give concurrency without a second copy of the weights.
workers = int(os.environ.get("FACEDX_WORKERS", "1"))
worker_class = TimedThreadWorker
# 12: deploy/nginx.conf gives photos 6 places and explanation maps 3, and leaves 3 to pages and the rest.
threads = int(os.environ.get("FACEDX_THREADS", "12"))
timeout = 120            # loading and warming up a model takes several seconds
graceful_timeout = 30
accesslog = "-"
logger_class = EscapingLogger
# Query strings could identify a patient; log the request line without them.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'


def post_worker_init(worker):
    """Load and warm up the active model and the face detector before the worker takes requests."""
    import numpy as np

    from ml.errors import FaceDxError
    from ml.photos.faces import detect_faces
    from web.services import get_predictor

    app = worker.app.wsgi()
    with app.app_context():
        try:
            loaded = get_predictor().current()
        except FaceDxError:
            return                    # nothing active yet: the first activation loads it
        # The detector the model uses loads its own network on first use: do it now.
        detect_faces(np.full((160, 160, 3), 127, np.uint8), loaded.card.face["detector"])
