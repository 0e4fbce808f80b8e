"""An exclusive lock on a file, shared by the threads and processes that use the same folder."""
import fcntl
from contextlib import contextmanager


@contextmanager
def exclusive_lock(path):
    """Hold an exclusive flock on `path` (created if needed) for the duration of the block."""
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
