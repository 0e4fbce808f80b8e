"""The share of a training run done: what its progress bar shows, moving with the work.

Each phase of a run has an expected cost in seconds: first from what the run will do (photos,
sources of features, folds, candidate pipelines, epochs) at the rough speeds of SPEEDS, then
from what it measures. Once a phase has done part of its work, its cost is what that part took,
scaled to the whole phase; the later phases of the same kind (the fits of nested selection and
of the final model, after those of cross-validation) are scaled alike. At every step the share
grows by the part of the work still ahead that the step did: it never steps back, moves with
every step that ends, and reaches 1 only when the run is saved.
"""
import time

from ml.learning.pipelines import BASELINE

# Rough seconds on two busy CPU cores (an `auto` run on 36 tinted faces: 1.3 s to load the face
# network, 0.1 s a photo for the face blocks, 0.25 s for a pipeline's six fits on a fold of 29
# photos); a run replaces them with what it measures as it goes, so they only shape the first
# steps of each kind.
SPEEDS = {
    "start": 1.0,                # loading the face network, before the first photo is read
    "vgg_start": 2.0,            # ... and building a VGG16 network, each
    "read_photo": 0.002,         # reading one stored face crop
    "face_photo": 0.08,          # aligning one photo and computing its face blocks
    "vgg_photo": 0.04,           # VGG16 features of one photo at 224 px (in proportion to its area)
    "fit": 0.2,                  # one pipeline's fits (all its regularisations) on one fold ...
    "fit_per_photo2": 1e-6,      # ... and per squared photo of the fold
    "epoch_photo": 2e-4,         # one epoch of the softmax head, per photo
    "save": 0.5,
    "save_vgg": 2.0,
}
# Later phases whose cost moves with a phase measured before them: the same kind of work.
SCALED_WITH = {"cross-validation": ("nested selection", "final head")}


class RunPlan:
    """A run's phases, in the order it goes through them, with their expected costs; `advance` gives the share."""

    def __init__(self, costs, clock=time.monotonic):
        self.costs = dict(costs)
        self.clock = clock
        self.fraction = 0.0
        self.done_before = 0.0          # seconds of work done at the last step, in the current costs
        self.last_step_at = None
        self.started = {}               # phase -> when it began (the step before its first)

    @classmethod
    def for_run(cls, options, labels, groups, pipelines, candidates, vgg_sizes, clock=time.monotonic):
        """Plan a run of `options` on photos with `labels`; `vgg_sizes`: the image size of each VGG16 source."""
        from ml.learning.evaluation import cross_validation_folds

        n = len(labels)
        folds = cross_validation_folds(labels, groups, options.folds, options.seed)[2]
        fold_n = n * (folds - 1) / folds
        fit = SPEEDS["fit"] + SPEEDS["fit_per_photo2"] * fold_n ** 2
        compared = {c.pipeline for c in candidates}
        scored = len(compared | {BASELINE.pipeline})          # cross-validation scores the baseline too
        face_source = any(not size for size in vgg_sizes.values())
        features = n * (SPEEDS["face_photo"] * face_source
                        + sum(SPEEDS["vgg_photo"] * (size / 224) ** 2 for size in vgg_sizes.values() if size))
        epochs = SPEEDS["epoch_photo"] * options.epochs * n
        costs = {"starting": SPEEDS["start"] + SPEEDS["vgg_start"] * sum(1 for s in vgg_sizes.values() if s),
                 "loading": SPEEDS["read_photo"] * n, "features": features}
        if options.fine_tune_epochs:
            costs |= {"head": epochs, "fine-tune": epochs * 20 * options.fine_tune_epochs / max(options.epochs, 1),
                      "evaluating": fit}
        elif options.head == "softmax":
            costs |= {"cross-validation": epochs * folds * (folds - 1) / folds + fit * folds, "evaluating": fit,
                      "final head": fit, "head": epochs}
        else:
            nested = folds * folds * len(compared) * fit if len(candidates) > 1 else 0
            costs |= {"cross-validation": folds * scored * fit, "nested selection": nested,
                      "evaluating": fit, "final head": 2 * fit}
        save = SPEEDS["save"] + SPEEDS["save_vgg"] * any(vgg_sizes.values())
        return cls(costs | {"saving": save, "saved": 0.0}, clock)

    def advance(self, step):
        """Return the share of the run done after `step` (a Progress), 0..1, rounded to 4 places."""
        now = self.clock()
        if step.phase not in self.costs:
            return round(self.fraction, 4)
        self.started.setdefault(step.phase, self.last_step_at if self.last_step_at is not None else now)
        self.last_step_at = now
        within = 1.0 if step.phase == "saved" else min(1.0, within_phase(step))
        done = self._done(step.phase, within)
        ahead = sum(self.costs.values()) - self.done_before
        if step.phase == "saved":
            self.fraction = 1.0
        elif done > self.done_before and ahead > 0:
            self.fraction += (1 - self.fraction) * min(1.0, (done - self.done_before) / ahead)
        self._measure(step.phase, within, now)
        self.done_before = self._done(step.phase, within)
        return round(min(self.fraction, 0.9999 if step.phase != "saved" else 1.0), 4)

    def _done(self, phase, within):
        names = list(self.costs)
        return sum(self.costs[name] for name in names[:names.index(phase)]) + self.costs[phase] * within

    def _measure(self, phase, within, now):
        """Replace a phase's expected cost by what its part done took, scaled to the whole phase."""
        elapsed = now - self.started[phase]
        if within <= 0 or elapsed <= 0 or phase == "saved":
            return
        measured = elapsed / within
        if self.costs[phase] > 0:
            ratio = measured / self.costs[phase]
            for later in SCALED_WITH.get(phase, ()):
                if later in self.costs:
                    self.costs[later] *= ratio
        self.costs[phase] = measured


def within_phase(step):
    """Return the share of its own phase that a step says is done, 0..1."""
    if step.phase == "features" and step.total:
        return ((step.part or 0) + step.done / step.total) / (step.parts or 1)
    if step.total:
        return step.done / step.total
    if step.fold and step.folds:
        inside = (step.fold_epoch or 0) / step.fold_epochs if step.fold_epochs else 0.0
        return (step.fold - 1 + inside) / step.folds
    if step.epoch and step.epochs:
        return step.epoch / step.epochs
    return 0.0


def vgg_sizes(pipelines, options):
    """Return {source of features: its VGG16's image size, or 0 for the face blocks} for a run's pipelines."""
    from ml.learning.options import is_vgg16

    sources = {}
    for pipeline in pipelines:
        for block in pipeline.split("+"):
            sources[block if is_vgg16(block) else "face"] = options.image_size if is_vgg16(block) else 0
    return sources
