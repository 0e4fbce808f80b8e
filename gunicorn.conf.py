"""gunicorn settings for FaceDx (read by `gunicorn --config gunicorn.conf.py app:app`)."""
import os

bind = os.environ.get("FACEDX_BIND", "127.0.0.1:8000")
# One process holds one copy of the model; threads share it. TensorFlow releases the GIL while
# it computes, so threads give concurrency without a second copy of the weights.
workers = int(os.environ.get("FACEDX_WORKERS", "1"))
worker_class = "gthread"
threads = int(os.environ.get("FACEDX_THREADS", "8"))
timeout = 120            # loading and warming up a model takes several seconds
graceful_timeout = 30
accesslog = "-"
# Query strings could identify a patient; log the request line without them.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'


def post_worker_init(worker):
    """Load and warm up the active model and the face detector before the worker takes requests."""
    import numpy as np

    from ml.errors import FaceDxError
    from ml.faces import detect_faces
    from web import get_predictor

    app = worker.app.wsgi()
    with app.app_context():
        try:
            loaded = get_predictor().current()
        except FaceDxError:
            return                    # nothing active yet: the first activation loads it
        # The detector the model uses loads its own network on first use: do it now.
        detect_faces(np.full((160, 160, 3), 127, np.uint8), loaded.card.face["detector"])
