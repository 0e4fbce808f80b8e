"""Settings read from the environment, with safe defaults."""
import os
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent


def _int(name, default):
    """Read an integer setting, failing loudly on a malformed value."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {value!r}") from None


class Config:
    """Defaults for every setting; each can be overridden by an environment variable."""

    def __init__(self):
        data_dir = Path(os.environ.get("FACEDX_DATA_DIR") or PROJECT_DIR).resolve()
        self.DATA_DIR = str(data_dir)
        self.UPLOAD_DIR = str(data_dir / "uploads")
        self.MODELS_DIR = str(data_dir / "models")
        self.INSTANCE_DIR = str(data_dir / "instance")
        # An operator may keep backbone weights beside the code or in the data folder.
        self.PRETRAINED_DIRS = [str(data_dir / "models" / "pretrained"),
                                str(PROJECT_DIR / "models" / "pretrained")]
        self.FACE_DETECTOR = os.environ.get("FACEDX_FACE_DETECTOR", "mtcnn")
        self.MAX_IMAGE_PIXELS = _int("FACEDX_MAX_IMAGE_PIXELS", 40_000_000)
        self.MAX_IMAGE_BYTES = _int("FACEDX_MAX_IMAGE_BYTES", 20 * 1024 * 1024)
        self.MAX_ARCHIVE_ENTRIES = _int("FACEDX_MAX_ARCHIVE_ENTRIES", 20_000)
        self.MAX_ARCHIVE_BYTES = _int("FACEDX_MAX_ARCHIVE_BYTES", 4 * 1024 ** 3)
        self.MIN_IMAGES_PER_CLASS = _int("FACEDX_MIN_IMAGES_PER_CLASS", 5)
        self.MAX_CLASSES = _int("FACEDX_MAX_CLASSES", 100)
        # Concurrent predictions gathered into one batch: the window in ms (0: off), its size,
        # and how many may wait before the server answers 503.
        self.BATCH_WINDOW_MS = _int("FACEDX_BATCH_WINDOW_MS", 5)
        self.MAX_BATCH = _int("FACEDX_MAX_BATCH", 16)
        self.MAX_PENDING_PREDICTIONS = _int("FACEDX_MAX_PENDING_PREDICTIONS", 64)
        # Photos one account may have analysed at once (nginx gives all photos 6 places), and the
        # explanation maps' own threads and how many maps may wait for them (one per person).
        self.PREDICTIONS_PER_ACCOUNT = _int("FACEDX_PREDICTIONS_PER_ACCOUNT", 3)
        self.MAP_WORKERS = _int("FACEDX_MAP_WORKERS", 1)
        self.MAX_WAITING_MAPS = _int("FACEDX_MAX_WAITING_MAPS", 16)
        # Largest request body: a dataset archive. Photo routes lower it to MAX_IMAGE_BYTES.
        self.MAX_CONTENT_LENGTH = _int("FACEDX_MAX_UPLOAD_BYTES", 2 * 1024 ** 3)
        # Signs exported model bundles and makes imports refuse bundles without a valid signature.
        self.BUNDLE_KEY = os.environ.get("FACEDX_BUNDLE_KEY") or None
        self.SQLALCHEMY_DATABASE_URI = (os.environ.get("FACEDX_DATABASE_URL")
                                        or f"sqlite:///{data_dir / 'instance' / 'facedx.sqlite'}")
        self.SECRET_KEY = os.environ.get("FACEDX_SECRET_KEY") or None   # else kept in the instance folder
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_SECURE = os.environ.get("FACEDX_HTTPS", "") == "1"
        self.REMEMBER_COOKIE_SECURE = self.SESSION_COOKIE_SECURE
        # Training on other machines through a Redis queue (RQ) when set; else a local process per job.
        self.REDIS_URL = os.environ.get("FACEDX_REDIS_URL") or None
        # A job whose training process has not written a heartbeat for this long is dead, local or queued.
        self.JOB_HEARTBEAT_TIMEOUT = _int("FACEDX_JOB_HEARTBEAT_TIMEOUT", 60)
        # Start-up removes staging folders and temporary uploads unchanged for this long: longer than the
        # slowest import allowed (20,000 photos of 40 megapixels at about 5 s each: 28 hours).
        self.STALE_AFTER_S = _int("FACEDX_STALE_AFTER_S", 2 * 24 * 3600)
        # Reverse proxies in front of FaceDx whose X-Forwarded-For/-Proto are trusted (0: none).
        self.TRUSTED_PROXIES = _int("FACEDX_TRUSTED_PROXIES", 0)
        # Keep uploaded patient photos? Off (0) by default; else for this many days, then purged.
        self.KEEP_PHOTOS_DAYS = _int("FACEDX_KEEP_PHOTOS_DAYS", 0)
        # A doctor's recent results: keep the analysed face's thumbnail with a recorded assessment for this many
        # days (0, the default: never kept), and store the case reference the doctor types with it (off by default).
        self.KEEP_THUMBNAILS_DAYS = _int("FACEDX_KEEP_THUMBNAILS_DAYS", 0)
        self.STORE_CASE_REFERENCE = os.environ.get("FACEDX_STORE_CASE_REFERENCE", "") == "1"
        self.WTF_CSRF_TIME_LIMIT = None    # the token lives as long as the session
