"""Pipelines: feature blocks fused into one linear head, and `auto`'s choice among them by nested CV.

Each block is standardised and scaled to the same total variance (so 8,100 HOG values do not
drown 128 face-descriptor ones), then the blocks are concatenated. The head is logistic
regression whose C is chosen by inner cross-validation, or the classical baseline's linear SVM.

`auto` is honest about choosing: inside each outer training fold the candidates (every
(pipeline, C) pair) are compared by inner cross-validation and only the winner is scored on the
outer fold; the mean of those outer scores is what the model card claims. The final model is
the candidate that cross-validation on all photos prefers, trained on all photos.
"""
import time
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from ml.learning.evaluation import cross_validation_folds
from ml.progress import Progress

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
BASELINE_SVM_C = 0.01          # the classical baseline's recipe: standardised HOG, linear SVM, C 0.01
MAX_ITER = 5000


@dataclass(frozen=True)
class Candidate:
    """One candidate configuration of a pipeline: the blocks it fuses, its head and the head's C."""
    blocks: tuple
    head: str                   # linear | svm | softmax
    C: float | None             # None: the softmax head

    @property
    def pipeline(self):
        """The pipeline's name, e.g. 'dlib-face+hog', or 'hog-svm' for the classical baseline."""
        return "+".join(self.blocks) + ("-svm" if self.head == "svm" else "")


BASELINE = Candidate(("hog",), "svm", BASELINE_SVM_C)


def candidates_for(pipeline, head="linear", regularization=None):
    """Return the candidates of one pipeline: every C of the grid, or the given one."""
    if head == "svm":
        return [Candidate(tuple(pipeline.split("+")), "svm", regularization or BASELINE_SVM_C)]
    grid = C_GRID if regularization is None else (regularization,)
    return [Candidate(tuple(pipeline.split("+")), "linear", c) for c in grid]


def block_scaling(x, block_sizes):
    """Return (mean, scale): standardise each column, then give each block a total variance of 1."""
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std < 1e-8] = 1.0
    weights = np.concatenate([np.full(size, np.sqrt(size)) for size in block_sizes])
    return mean, std * weights


class LinearModel:
    """A linear classifier on block-scaled features, kept as plain arrays (no pickle)."""

    def __init__(self, mean, scale, coef, intercept, classes, n_classes, head):
        self.mean, self.scale, self.coef, self.intercept = mean, scale, coef, intercept
        self.classes, self.n_classes, self.head = np.asarray(classes), n_classes, head

    @classmethod
    def fit(cls, x, labels, block_sizes, candidate, n_classes, seed=0):
        """Fit `candidate`'s head on block-scaled `x`."""
        mean, scale = block_scaling(x, block_sizes)
        basis, z = row_space((x - mean) / scale)
        estimator = make_estimator(candidate, seed, labels).fit(z, labels)
        coef = estimator.coef_ @ basis.T
        return cls(mean, scale, coef, estimator.intercept_, estimator.classes_, n_classes, candidate.head)

    def logits(self, x):
        """Return one score per known class (sklearn keeps one for two classes: the second's)."""
        scores = ((x - self.mean) / self.scale) @ self.coef.T + self.intercept
        return np.concatenate([np.zeros_like(scores), scores], axis=1) if self.coef.shape[0] == 1 else scores

    def probabilities(self, x, n_classes=None):
        """Return [n, n_classes] probabilities: the softmax of the scores (classes absent from training get 0)."""
        scores = self.logits(np.asarray(x, np.float64))
        scores -= scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        full = np.zeros((len(x), n_classes or self.n_classes))
        full[:, self.classes] = exp / exp.sum(axis=1, keepdims=True)
        return full

    def direction(self, x, class_index):
        """Return the gradient of log p(class_index) at one photo's raw features `x` (zero for a class never seen).

        The scores are linear, so the gradient is the class's weights less the probability-weighted
        weights of all classes, over each feature's scale.
        """
        weights = np.concatenate([np.zeros_like(self.coef), self.coef]) if self.coef.shape[0] == 1 else self.coef
        present = np.flatnonzero(self.classes == class_index)
        if not len(present):
            return np.zeros(weights.shape[1])
        scores = self.logits(np.asarray(x, np.float64)[np.newaxis])[0]
        p = np.exp(scores - scores.max())
        p /= p.sum()
        return (weights[present[0]] - p @ weights) / self.scale

    def arrays(self):
        """Return the model as named arrays, to be saved with numpy.savez."""
        return {"mean": self.mean, "scale": self.scale, "coef": self.coef, "intercept": self.intercept,
                "classes": self.classes, "n_classes": np.array(self.n_classes), "head": np.array(self.head)}

    @classmethod
    def from_arrays(cls, arrays):
        return cls(arrays["mean"], arrays["scale"], arrays["coef"], arrays["intercept"], arrays["classes"],
                   int(arrays["n_classes"]), str(arrays["head"]))


def make_estimator(candidate, seed, labels):
    """Return the scikit-learn estimator of a candidate's head, for fitting on `labels`.

    Logistic regression: Newton's method for two classes; for more, L-BFGS to a tight tolerance.
    Newton's Hessian grows with classes x features squared: on 7 classes of 240 photos (in their
    row space) one fit took 0.6-1.6 s, L-BFGS 0.01-0.07 s, with the same decisions on the held-out
    photos and probabilities within 0.011 (`bench.accuracy --age-bands`' features, C 0.01-1000);
    at tolerance 1e-6 it ends nearer the optimum than Newton does at its default (tested).
    """
    if candidate.head == "svm":
        return LinearSVC(C=candidate.C, class_weight="balanced", random_state=seed, max_iter=20000)
    if len(np.unique(labels)) > 2:
        return LogisticRegression(C=candidate.C, class_weight="balanced", max_iter=MAX_ITER, random_state=seed,
                                  solver="lbfgs", tol=1e-6)
    return LogisticRegression(C=candidate.C, class_weight="balanced", max_iter=MAX_ITER, random_state=seed,
                              solver="newton-cholesky")


def row_space(x):
    """Return (basis, x in it): an L2-penalised linear model's weights lie in the span of its training rows.

    With more features than photos, fitting in that span (at most n dimensions) gives the same
    model as fitting in all of them, much faster. The span is found from the photos' Gram matrix.
    """
    if x.shape[1] <= x.shape[0]:
        return np.eye(x.shape[1]), x
    u, s = _span(x @ x.T)
    return x.T @ (u / s), u * s


def _span(gram):
    """Return (u, s): the eigenvectors and square-rooted eigenvalues of a Gram matrix that are not zero."""
    values, vectors = np.linalg.eigh(gram)
    keep = values > max(values.max(), 1e-12) * 1e-10
    if not keep.any():
        keep[-1] = True
    return vectors[:, keep], np.sqrt(np.maximum(values[keep], 1e-12))


class Grams:
    """Each block's features, block-scaled once on all photos, as Gram matrices of the photos.

    Standardising uses no label, so computing it once on all photos leaks nothing a fold could
    learn from; it lets every fold and every fusion work on n x n matrices (a fusion's Gram
    matrix is the sum of its blocks') instead of thousands of columns.
    """

    def __init__(self, features):
        self.grams = {}
        for name, x in features.items():
            mean, scale = block_scaling(x, [x.shape[1]])
            z = (x - mean) / scale
            self.grams[name] = z @ z.T

    def of(self, blocks):
        return sum(self.grams[name] for name in blocks)


def fold_predictions(grams, labels, train, test, candidates, n_classes, seed, timings=None, fitted=None):
    """Return {candidate: probabilities of the test photos} for every candidate fitted on the train photos.

    A pipeline's projection onto its training photos' span is computed once per fold and shared by
    all its Cs; they are fitted from the smallest C up, each starting from the previous solution
    (the same optimum, reached in about half the iterations on 7 classes). `fitted` is called after
    each candidate's fit.
    """
    out = {}
    by_pipeline = {}
    for candidate in candidates:
        by_pipeline.setdefault(candidate.pipeline, []).append(candidate)
    for pipeline, group in by_pipeline.items():
        started = time.perf_counter()
        gram = grams.of(group[0].blocks)
        u, s = _span(gram[np.ix_(train, train)])
        z_train, z_test = u * s, gram[np.ix_(test, train)] @ (u / s)
        estimator = None
        for candidate in sorted(group, key=lambda c: c.C):
            if estimator is None or candidate.head == "svm":
                estimator = make_estimator(candidate, seed, labels[train])
                if candidate.head != "svm":
                    estimator.set_params(warm_start=True)
            estimator.set_params(C=candidate.C).fit(z_train, labels[train])
            model = LinearModel(0.0, 1.0, estimator.coef_, estimator.intercept_, estimator.classes_, n_classes,
                                candidate.head)
            out[candidate] = model.probabilities(z_test)
            if fitted:
                fitted()
        if timings is not None:
            timings[pipeline] = timings.get(pipeline, 0.0) + time.perf_counter() - started
    return out


def cv_predictions(grams, labels, folds, candidates, n_classes, seed, timings=None, report=None, fitted=None):
    """Return {candidate: out-of-fold probabilities [n, n_classes]} over the given folds (indices into `grams`).

    `report(fold number, pooled so far)` is called after each fold, `fitted()` after each candidate's fit in one.
    """
    pooled = {candidate: np.zeros((len(labels), n_classes)) for candidate in candidates}
    for number, (train, test) in enumerate(folds, 1):
        for candidate, probabilities in fold_predictions(grams, labels, train, test, candidates, n_classes, seed,
                                                      timings, fitted).items():
            pooled[candidate][test] = probabilities
        if report:
            report(number, pooled)
    return pooled


def fold_accuracies(probabilities, labels, folds):
    """Return the accuracy of out-of-fold probabilities on each fold."""
    return [float(np.mean(probabilities[test].argmax(axis=1) == labels[test])) for _, test in folds]


def rank_key(probabilities, labels, folds):
    """Order candidates by photos right over all folds, then by log-loss (lower is better).

    Counts, not the mean of fold accuracies: folds of unequal size would make two candidates
    with the same photos right differ by rounding, and the log-loss would never break the tie.
    """
    tested = np.concatenate([test for _, test in folds])
    picked = np.clip(probabilities[tested, labels[tested]], 1e-12, 1.0)
    return int(np.sum(probabilities[tested].argmax(axis=1) == labels[tested])), float(np.mean(np.log(picked)))


@dataclass
class Counter:
    """Steps done of a known total, counted by the callbacks of a long loop."""
    total: int
    done: int = 0


@dataclass
class Choice:
    """What cross-validation found: the winner, its honest score and every candidate's.

    `choose` compares linear candidates by nested cross-validation; the softmax head's one
    candidate is cross-validated alone (ml/learning/training.py) and reported the same way.
    """
    winner: Candidate
    outer_predictions: np.ndarray        # out-of-fold probabilities of "choose, then fit" on each outer fold
    served_predictions: np.ndarray       # the winner's own out-of-fold probabilities: what the served model does
    outer_accuracies: list
    chosen_per_fold: list | None         # the pipeline each outer fold chose; None where nothing was chosen
    candidates: list                     # rows for the model card, best first
    baseline_predictions: np.ndarray     # the classical baseline's out-of-fold probabilities, same outer folds
    folds: list                          # the outer (train, test) index pairs
    grouped: bool                        # whether the folds keep each person on one side


def choose(features, labels, groups, candidates, options, report=None, baseline=BASELINE):
    """Compare `candidates` by nested cross-validation; return the Choice.

    `features` must hold every block the candidates (and the baseline, unless it is None) use.
    """
    report = report or (lambda step: None)
    n_classes = int(labels.max()) + 1
    folds, grouped, n_folds = cross_validation_folds(labels, groups, options.folds, options.seed)
    scored = list(dict.fromkeys(list(candidates) + ([baseline] if baseline else [])))
    timings = {}
    grams = Grams(features)
    per_fold = len(scored)                                       # candidates fitted in each fold
    fits = Counter(n_folds * per_fold)

    def fold_done(number, pooled):         # every candidate scored on one more fold
        report(Progress("cross-validation", fold=number, folds=n_folds, done=number * per_fold, total=fits.total,
                        candidates=candidates_so_far(pooled, labels, folds[:number], candidates)))

    def fitted():                          # one candidate fitted on one fold: a step of the share done
        fits.done += 1
        report(Progress("cross-validation", fold=(fits.done - 1) // per_fold + 1, folds=n_folds,
                        done=fits.done, total=fits.total))
    outer = cv_predictions(grams, labels, folds, scored, n_classes, options.seed, timings, fold_done, fitted)
    nested = np.zeros((len(labels), n_classes))
    chosen = []
    for number, (train, test) in enumerate(folds, 1):
        report(Progress("nested selection", fold=number, folds=n_folds))
        if len(candidates) == 1:
            best = candidates[0]
        else:
            inner_groups = None if groups is None else [groups[i] for i in train]
            inner, _, _ = cross_validation_folds(labels[train], inner_groups, options.folds, options.seed)
            inner = [(train[a], train[b]) for a, b in inner]
            inner_fits = Counter(len(inner) * len(candidates))

            def inner_fitted(number=number, inner_fits=inner_fits):
                inner_fits.done += 1
                report(Progress("nested selection", fold=number, folds=n_folds,
                                done=(number - 1) * inner_fits.total + inner_fits.done,
                                total=n_folds * inner_fits.total))
            inner_pred = cv_predictions(grams, labels, inner, candidates, n_classes, options.seed,
                                        fitted=inner_fitted)
            best = max(candidates, key=lambda c: rank_key(inner_pred[c], labels, inner))
        chosen.append(best)
        nested[test] = outer[best][test]
        report(Progress("nested selection", fold=number, folds=n_folds, done=number, total=n_folds,
                        **folds_so_far(nested, outer[baseline] if baseline else None, labels, folds[:number])))
    winner = max(candidates, key=lambda c: rank_key(outer[c], labels, folds))
    return Choice(winner, nested, outer[winner], fold_accuracies(nested, labels, folds),
                  [c.pipeline for c in chosen],
                  candidate_rows(outer, labels, folds, candidates, timings, winner),
                  outer[baseline] if baseline else None, folds, grouped)


def candidate_rows(outer, labels, folds, candidates, timings, winner):
    """Return one row per pipeline (its best C): CV accuracy +- std, seconds, and whether it was chosen."""
    best = {}
    for candidate in candidates:
        key = rank_key(outer[candidate], labels, folds)
        if candidate.pipeline not in best or key > best[candidate.pipeline][0]:
            best[candidate.pipeline] = (key, candidate)
    rows = []
    for pipeline, (_, candidate) in best.items():
        accuracies = fold_accuracies(outer[candidate], labels, folds)
        rows.append({"pipeline": pipeline, "head": candidate.head, "C": candidate.C,
                     "accuracy": float(np.mean(accuracies)), "accuracy_std": float(np.std(accuracies)),
                     "seconds": round(timings.get(pipeline, 0.0), 2), "chosen": candidate == winner})
    return sorted(rows, key=lambda row: -row["accuracy"])


def candidates_so_far(pooled, labels, folds, candidates):
    """Return each candidate pipeline's mean accuracy (at its best C) on the folds scored so far, best first."""
    best = {}
    for candidate in candidates:
        accuracy = float(np.mean(fold_accuracies(pooled[candidate], labels, folds)))
        best[candidate.pipeline] = max(best.get(candidate.pipeline, 0.0), accuracy)
    return [{"pipeline": name, "accuracy": accuracy} for name, accuracy in sorted(best.items(), key=lambda r: -r[1])]


def folds_so_far(predictions, baseline, labels, folds):
    """Return the accuracy on each fold scored so far, and the baselines' mean accuracy on the same folds."""
    majority = [float(np.mean(labels[test] == np.bincount(labels[train]).argmax())) for train, test in folds]
    baselines = {"majority": float(np.mean(majority))}
    if baseline is not None:
        baselines[BASELINE.pipeline] = float(np.mean(fold_accuracies(baseline, labels, folds)))
    return {"fold_accuracies": fold_accuracies(predictions, labels, folds), "baselines": baselines}
