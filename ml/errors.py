"""Exceptions that carry a message a user can act on."""
import errno


class FaceDxError(Exception):
    """An error caused by input or set-up, with a human message as its text."""


class ImageError(FaceDxError):
    """A file could not be read as a photo."""


class UnsupportedImage(ImageError):
    """A file is not an image in a format FaceDx reads."""


class NoFaceFound(FaceDxError):
    """The face detector found no face in a photo."""


class DatasetError(FaceDxError):
    """A dataset archive or folder was refused as a whole."""


class DatasetNotFound(DatasetError):
    """No dataset has the given name."""


class DatasetExists(DatasetError):
    """A dataset with the given name already exists."""


class WeightsUnavailable(FaceDxError):
    """Pretrained backbone weights could neither be found nor downloaded."""


class TrainingError(FaceDxError):
    """Training options or data do not allow a training run."""


class RegistryError(FaceDxError):
    """A model version is unknown, incomplete or cannot be activated."""


class VersionNotFound(RegistryError):
    """No complete model version has the given name."""


class CardError(RegistryError):
    """A version's card.json cannot be read: only that version is broken."""


class VersionActive(RegistryError):
    """The version is the one being served: it cannot be deleted (409)."""


class VersionBroken(RegistryError):
    """A version's folder is damaged, so it can be neither served nor activated."""


class VersionExists(RegistryError):
    """A version of the same name is already in the registry."""


class BundleError(RegistryError):
    """A model bundle was refused: damaged, tampered with, unsigned, or unable to run here."""


class NotUseful(RegistryError):
    """A version that does not clearly beat the majority class was to be activated without confirmation."""


class NoActiveModel(RegistryError):
    """No model version is active, so nothing can be predicted."""


class Overloaded(FaceDxError):
    """Too many predictions are waiting; the caller should try again shortly."""


class DiskFull(FaceDxError):
    """The disk or the quota is full: what was being written was undone (507)."""

    def __init__(self, message="The server's disk is full, so nothing was saved. Free space on it, then try again."):
        super().__init__(message)


def is_disk_full(error):
    """Say whether an OSError means that the disk or the user's quota is full."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
