"""How unlike the training photos a photo is: a score that lets a model refuse what it never saw.

The pipeline's features, block-scaled, are described by their main directions of variation
(PCA): a photo's score is its whitened distance inside that subspace plus its distance from it,
relative to the training photos'. The threshold is a high percentile of the scores of photos
held out by cross-validation, so in-distribution photos rarely pass it. Only means, directions
and spreads are kept, never a training photo's features.

That score sees photos unlike any training photo, but not a face of another population: an
adult's face shares the directions of variation of children's faces. Where the pipeline holds
the face descriptor, FaceNovelty also measures how far the descriptor lies from the nearest
group of training faces (k-means centroids, each the mean of at least MIN_MEMBERS faces, never
one face), against the same distance of faces held out by cross-validation. Measured with
python -m bench.refusal on UTKFace (a model of children only, 5 x 5 nested folds): 2% of
held-out children flagged, 92% of adults (the fused score alone: 0% and 1.5%).
"""
import numpy as np
from sklearn.cluster import KMeans

from ml.learning.pipelines import block_scaling

COMPONENTS = 16
QUANTILE = 0.99         # about 1 in 100 held-out training photos scores above the threshold
MARGIN = 1.25           # and the threshold sits a quarter above that percentile
NOVELTY_FILE = "novelty.npz"
FACE_BLOCK = "dlib-face"
PHOTOS_PER_GROUP = 10   # k-means groups: one per 10 training faces
MIN_MEMBERS = 3         # a centroid of fewer faces is dropped: it would be nearly one photo's features
FACE_QUANTILE = 0.97    # the share of held-out training faces under the descriptor threshold


class Novelty:
    """A fitted novelty score; `unusual(x)` says which photos lie beyond the threshold."""

    def __init__(self, mean, scale, components, spread, residual, threshold=np.inf, face=None):
        self.mean, self.scale, self.components = mean, scale, components
        self.spread, self.residual, self.threshold = spread, float(residual), float(threshold)
        self.face = face        # FaceNovelty, where the pipeline holds the face descriptor

    @classmethod
    def fit(cls, x, block_sizes):
        """Describe the training features `x` (no threshold yet)."""
        mean, scale = block_scaling(x, block_sizes)
        z = (x - mean) / scale
        k = max(1, min(COMPONENTS, len(x) // 4))
        _, s, vt = np.linalg.svd(z, full_matrices=False)
        components = vt[:k]
        spread = np.maximum(s[:k] / np.sqrt(max(len(x) - 1, 1)), 1e-6)
        residual = z - (z @ components.T) @ components
        return cls(mean, scale, components, spread, max(float(np.mean(np.sum(residual ** 2, axis=1))), 1e-6))

    @classmethod
    def fit_with_threshold(cls, x, block_sizes, folds, blocks=()):
        """Fit on all of `x`; scale the distance from the subspace and set the threshold on held-out photos.

        Photos the subspace was fitted on lie closer to it than new ones, so the typical distance
        from it is measured on photos held out by `folds`, as is the threshold. Where `blocks`
        names the face descriptor, its FaceNovelty is fitted on the same folds.
        """
        parts = np.zeros((len(x), 2))
        for train, test in folds:
            parts[test] = cls.fit(x[train], block_sizes).parts(x[test])
        fitted = cls.fit(x, block_sizes)
        fitted.residual = max(float(np.mean(parts[:, 1])), 1e-6)
        held_out = fitted.combine(parts[:, 0], parts[:, 1])
        fitted.threshold = float(np.quantile(held_out, QUANTILE)) * MARGIN
        columns = face_columns(list(blocks), list(block_sizes))
        fitted.face = FaceNovelty.fit_with_threshold(x, columns, folds) if columns else None
        return fitted

    def parts(self, x):
        """Return [n, 2]: each photo's squared whitened distance inside the subspace, and squared distance from it."""
        z = (np.asarray(x, np.float64) - self.mean) / self.scale
        inside = z @ self.components.T
        outside = z - inside @ self.components
        return np.stack([np.sum((inside / self.spread) ** 2, axis=1), np.sum(outside ** 2, axis=1)], axis=1)

    def combine(self, inside, outside):
        return np.sqrt((inside + outside / self.residual) / (len(self.spread) + 1))

    def scores(self, x):
        """Return each photo's novelty score (about 1 for a typical training photo)."""
        parts = self.parts(x)
        return self.combine(parts[:, 0], parts[:, 1])

    def unusual(self, x):
        """Return a bool per photo: True when it is unlike the training photos."""
        return self.scores(x) > self.threshold

    def card_entry(self):
        """Return the thresholds as the model card records them."""
        return {"threshold": self.threshold} | ({} if self.face is None else {"face_threshold": self.face.threshold})

    def unlike_faces(self, x):
        """Return a bool per photo: True when its face descriptor is far from every group of training faces."""
        return self.face.unusual(x) if self.face is not None else np.zeros(len(x), bool)

    def save(self, folder):
        """Write the score's parameters into a model version's folder; return the file names written."""
        face = {} if self.face is None else self.face.arrays()
        np.savez(folder / NOVELTY_FILE, mean=self.mean, scale=self.scale, components=self.components,
                 spread=self.spread, residual=np.array(self.residual), threshold=np.array(self.threshold), **face)
        return [NOVELTY_FILE]

    @classmethod
    def load(cls, folder):
        """Read the score a version was saved with, or None for versions written without one."""
        if not (folder / NOVELTY_FILE).is_file():
            return None
        with np.load(folder / NOVELTY_FILE, allow_pickle=False) as arrays:
            face = FaceNovelty.from_arrays(arrays) if "face_centroids" in arrays else None
            return cls(arrays["mean"], arrays["scale"], arrays["components"], arrays["spread"],
                       float(arrays["residual"]), float(arrays["threshold"]), face)


class FaceNovelty:
    """How far a face descriptor lies from the nearest group of training faces, and the distance that is too far."""

    def __init__(self, centroids, columns, threshold=np.inf):
        self.centroids, self.columns, self.threshold = centroids, (int(columns[0]), int(columns[1])), float(threshold)

    @classmethod
    def fit(cls, x, columns, seed=0):
        """Group the descriptors in `x[:, columns]` by k-means; keep the centroids of groups of MIN_MEMBERS or more."""
        descriptors = np.asarray(x, np.float64)[:, columns[0]:columns[1]]
        groups = max(1, min(len(descriptors) // PHOTOS_PER_GROUP, len(descriptors) // MIN_MEMBERS))
        kmeans = KMeans(groups, n_init=4, random_state=seed).fit(descriptors)
        kept = np.bincount(kmeans.labels_, minlength=groups) >= MIN_MEMBERS
        return cls(kmeans.cluster_centers_[kept] if kept.any() else descriptors.mean(axis=0, keepdims=True), columns)

    @classmethod
    def fit_with_threshold(cls, x, columns, folds, seed=0):
        """Fit on all of `x`; set the threshold from the distances of faces held out by `folds`."""
        held_out = np.zeros(len(x))
        for train, test in folds:
            held_out[test] = cls.fit(x[train], columns, seed).distances(x[test])
        fitted = cls.fit(x, columns, seed)
        fitted.threshold = float(np.quantile(held_out, FACE_QUANTILE))
        return fitted

    def distances(self, x):
        """Return each photo's distance from the nearest centroid, in descriptor units."""
        descriptors = np.asarray(x, np.float64)[:, self.columns[0]:self.columns[1]]
        return np.sqrt(((descriptors[:, np.newaxis] - self.centroids[np.newaxis]) ** 2).sum(axis=-1)).min(axis=1)

    def unusual(self, x):
        return self.distances(x) > self.threshold

    def arrays(self):
        return {"face_centroids": self.centroids, "face_columns": np.array(self.columns),
                "face_threshold": np.array(self.threshold)}

    @classmethod
    def from_arrays(cls, arrays):
        return cls(arrays["face_centroids"], arrays["face_columns"], float(arrays["face_threshold"]))


def face_columns(blocks, block_sizes):
    """Return (start, stop) of the face descriptor's columns in a pipeline's features, or None without it."""
    if FACE_BLOCK not in blocks:
        return None
    start = sum(block_sizes[:blocks.index(FACE_BLOCK)])
    return start, start + block_sizes[blocks.index(FACE_BLOCK)]
