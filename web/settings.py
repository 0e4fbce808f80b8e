"""What the settings say about the data folders and the archive limits; no Flask (a job's process uses it)."""
from pathlib import Path

from ml.datasets import ImportLimits


def datasets_root(settings):
    """Return the folder that holds the imported datasets, from the settings (an app's config or a job's)."""
    return Path(settings["UPLOAD_DIR"]) / "datasets"


def import_limits(settings):
    """Return the archive limits from the settings."""
    return ImportLimits(max_entries=settings["MAX_ARCHIVE_ENTRIES"], max_total_bytes=settings["MAX_ARCHIVE_BYTES"],
                        max_file_bytes=settings["MAX_IMAGE_BYTES"], max_pixels=settings["MAX_IMAGE_PIXELS"],
                        min_per_class=settings["MIN_IMAGES_PER_CLASS"], max_classes=settings["MAX_CLASSES"])
