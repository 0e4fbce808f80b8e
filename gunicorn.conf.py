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
