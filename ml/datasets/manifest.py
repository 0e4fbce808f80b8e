"""A dataset's manifest (dataset.json) as a typed record: its classes, photos, rejected files and revision.

Importing and curation write the manifest as JSON; everything that reads a dataset reads this
record. Each photo and each rejected file stays a small JSON object (a photo: file, original,
face, sha256, label, and where given subject, attributes and display_consent; a rejected file: file, reason, and
where it decoded a thumbnail). Keys a newer release wrote are kept, and written back unchanged.
"""
import copy
import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Manifest:
    """What one revision of a dataset holds."""
    id: str
    labels: list                     # class names; a photo's label is an index into them
    counts: dict                     # class name -> photos
    images: list                     # the photos, each a JSON object (see above)
    checksum: str                    # of the photos and their labels: names the revision
    rejected: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    source: str = ""                 # the archive's name on the sender's computer
    face: dict = field(default_factory=dict)        # the face detector and fallback used
    crop_size: int | None = None
    created: str | None = None       # when it was imported
    previous: str | None = None      # the revision this one was made from by a curation change
    revised: str | None = None
    gallery_only: list | None = None   # classes too small for the classifier (1-4 photos): matched as cases only
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data):
        """Read a manifest from its JSON object."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in names},
                   extra={k: v for k, v in data.items() if k not in names})

    def to_dict(self):
        """Return the manifest as its JSON object (a copy: changing it changes nothing here)."""
        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return copy.deepcopy({k: v for k, v in body.items() if v is not None} | self.extra)
