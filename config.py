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
