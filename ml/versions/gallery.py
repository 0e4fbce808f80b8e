"""A version's case gallery: its validated training photos as points of a face space, and the cases nearest a face.

Each case is one training photo, kept as a unit vector (never the photo), with its condition
and, where the dataset named them, its person. A photo whose dataset declared that it may be
shown (`display_consent` in subjects.csv) also keeps a small thumbnail. Similarity is the cosine
of two faces' vectors, after each column is centred and scaled as on the training photos.
How unusual a similarity is for a condition is read against that condition's own cases: how
similar each of them is to its nearest case of the same condition shown by another person.
"""
from dataclasses import dataclass, field

import numpy as np

GALLERY_FILE = "gallery.npz"
THUMBNAIL_SIDE = 64
UNUSUAL_BELOW = 0.10      # a similarity below that of 9 in 10 of a condition's own matches is unusual for it


@dataclass(frozen=True)
class NearestCase:
    """One validated case near a face: its condition, how similar it is and how usual that is for the condition."""
    case: int                      # its place in the gallery (names its thumbnail)
    label: str
    similarity: float              # cosine, -1..1
    typicality: float | None       # share of the condition's own matches no more similar; None: fewer than 2 people
    gallery_only: bool             # a condition with too few photos for the classifier
    has_thumbnail: bool
    thumbnail: np.ndarray | None = field(default=None, compare=False, repr=False)   # uint8 RGB, where consented

    @property
    def unusual(self):
        """Whether the condition's own cases are nearly all more alike than this face and this case."""
        return self.typicality is not None and self.typicality < UNUSUAL_BELOW

    def as_dict(self):
        """Return the case as the API's JSON object."""
        return {"case": self.case, "label": self.label, "similarity": round(self.similarity, 4),
                "typicality": None if self.typicality is None else round(self.typicality, 4),
                "unusual": self.unusual, "gallery_only": self.gallery_only}


class CaseGallery:
    """The cases of one version: unit vectors, their conditions and people, and the thumbnails consent allows."""

    def __init__(self, labels, case_labels, vectors, mean, scale, columns, within, persons, gallery_only,
                 thumbnails, thumbnail_cases):
        self.labels = [str(label) for label in labels]
        self.case_labels = np.asarray(case_labels, dtype=np.int32)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.mean, self.scale = np.asarray(mean, np.float32), np.asarray(scale, np.float32)
        self.columns = (int(columns[0]), int(columns[1]))        # the space's columns in the version's features
        self.within = np.asarray(within, dtype=np.float32)
        self.persons = np.asarray(persons, dtype=str)
        self.gallery_only = np.asarray(gallery_only, dtype=bool)
        self.thumbnails = np.asarray(thumbnails, dtype=np.uint8).reshape(-1, THUMBNAIL_SIDE, THUMBNAIL_SIDE, 3)
        self.thumbnail_cases = np.asarray(thumbnail_cases, dtype=np.int32)
        self._thumbnail_at = {int(case): i for i, case in enumerate(self.thumbnail_cases)}
        self._matches = [np.sort(self.within[(self.case_labels == c) & np.isfinite(self.within)])
                         for c in range(len(self.labels))]

    def __len__(self):
        return len(self.case_labels)

    def counts(self):
        """Return {condition: cases}."""
        found = np.bincount(self.case_labels, minlength=len(self.labels))
        return {label: int(n) for label, n in zip(self.labels, found)}

    def project(self, features):
        """Return the unit vectors of a version's feature vectors [n, features] in the gallery's space."""
        start, stop = self.columns
        return unit_rows((np.asarray(features, np.float32)[:, start:stop] - self.mean) / self.scale)

    def nearest(self, features, k):
        """Return, for each feature vector, its k nearest cases (NearestCase), most similar first."""
        similarity = self.project(features) @ self.vectors.T
        k = min(k, len(self))
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        found = []
        for row, candidates in zip(similarity, top):
            ordered = candidates[np.argsort(-row[candidates], kind="stable")]
            found.append([self._case(int(i), float(row[i])) for i in ordered])
        return found

    def _case(self, index, similarity):
        label = int(self.case_labels[index])
        matches = self._matches[label]
        typicality = float(np.searchsorted(matches, similarity, side="right") / len(matches)) if len(matches) else None
        return NearestCase(index, self.labels[label], similarity, typicality, bool(self.gallery_only[label]),
                           index in self._thumbnail_at, self.thumbnail(index))

    def thumbnail(self, case):
        """Return a case's thumbnail (uint8 RGB), or None: its dataset did not declare that it may be shown."""
        at = self._thumbnail_at.get(case)
        return None if at is None else self.thumbnails[at]

    def arrays(self):
        """Return the gallery as named plain arrays (strings as unicode, never objects), for numpy.savez."""
        return {"labels": np.array(self.labels, dtype=str), "case_labels": self.case_labels, "vectors": self.vectors,
                "mean": self.mean, "scale": self.scale, "columns": np.array(self.columns, dtype=np.int64),
                "within": self.within, "persons": self.persons, "gallery_only": self.gallery_only,
                "thumbnails": self.thumbnails, "thumbnail_cases": self.thumbnail_cases}

    def save(self, folder):
        """Write the gallery into a version's folder; return the file names written."""
        np.savez_compressed(folder / GALLERY_FILE, **self.arrays())
        return [GALLERY_FILE]

    @classmethod
    def load(cls, folder):
        """Read a version's gallery, or return None for a version saved without one."""
        path = folder / GALLERY_FILE
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as arrays:
            return cls(**{name: arrays[name] for name in arrays.files})


def unit_rows(z):
    """Return the rows of `z` scaled to length 1 (a row of zeros stays zeros): points whose dot product is a cosine."""
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def cases_summary(cases, gallery):
    """Return the sentences a doctor reads about the nearest cases: what they were, and rare conditions to consider."""
    if not cases:
        return []
    counts = {}
    for case in cases:
        counts[case.label] = counts.get(case.label, 0) + 1
    parts = [f"{n} of {label}" for label, n in sorted(counts.items(), key=lambda item: -item[1])]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    sentences = [f"The {len(cases)} closest validated cases were {listed}." if len(cases) > 1
                 else f"The closest validated case was {listed}."]
    in_gallery = gallery.counts()
    for label in dict.fromkeys(case.label for case in cases if case.gallery_only):
        n = in_gallery[label]
        sentences.append(f"Resembles the {n} validated case{'s' if n > 1 else ''} of {label}: consider {label}; "
                         "too few photos to estimate its accuracy.")
    return sentences
