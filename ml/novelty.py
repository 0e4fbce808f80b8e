"""How unlike the training photos a photo is: a score that lets a model refuse what it never saw.

The pipeline's features, block-scaled, are described by their main directions of variation
(PCA): a photo's score is its whitened distance inside that subspace plus its distance from it,
relative to the training photos'. The threshold is a high percentile of the scores of photos
held out by cross-validation, so in-distribution photos rarely pass it. Only means, directions
and spreads are kept, never a training photo's features.
"""
import numpy as np

from ml.pipelines import block_scaling

COMPONENTS = 16
QUANTILE = 0.99         # about 1 in 100 held-out training photos scores above the threshold
MARGIN = 1.25           # and the threshold sits a quarter above that percentile
NOVELTY_FILE = "novelty.npz"


class Novelty:
    """A fitted novelty score; `unusual(x)` says which photos lie beyond the threshold."""

    def __init__(self, mean, scale, components, spread, residual, threshold=np.inf):
        self.mean, self.scale, self.components = mean, scale, components
        self.spread, self.residual, self.threshold = spread, float(residual), float(threshold)

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
    def fit_with_threshold(cls, x, block_sizes, folds):
        """Fit on all of `x`; scale the distance from the subspace and set the threshold on held-out photos.

        Photos the subspace was fitted on lie closer to it than new ones, so the typical distance
        from it is measured on photos held out by `folds`, as is the threshold.
        """
        parts = np.zeros((len(x), 2))
        for train, test in folds:
            parts[test] = cls.fit(x[train], block_sizes).parts(x[test])
        fitted = cls.fit(x, block_sizes)
        fitted.residual = max(float(np.mean(parts[:, 1])), 1e-6)
        held_out = fitted.combine(parts[:, 0], parts[:, 1])
        fitted.threshold = float(np.quantile(held_out, QUANTILE)) * MARGIN
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

    def save(self, folder):
        """Write the score's parameters into a model version's folder; return the file names written."""
        np.savez(folder / NOVELTY_FILE, mean=self.mean, scale=self.scale, components=self.components,
                 spread=self.spread, residual=np.array(self.residual), threshold=np.array(self.threshold))
        return [NOVELTY_FILE]

    @classmethod
    def load(cls, folder):
        """Read the score a version was saved with, or None for versions written without one."""
        if not (folder / NOVELTY_FILE).is_file():
            return None
        with np.load(folder / NOVELTY_FILE, allow_pickle=False) as arrays:
            return cls(arrays["mean"], arrays["scale"], arrays["components"], arrays["spread"],
                       float(arrays["residual"]), float(arrays["threshold"]))
