"""How far a long job (a training or a dataset import) has come: one typed record, its phases and their words.

Every step of a job reports a Progress; the phases and the words for them are here only, so the
job page, the import page, the API and the command line say the same thing.
"""
import collections
import dataclasses
import statistics
import time
from dataclasses import dataclass, field, fields

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
# Every phase a job reports, in the order a run goes through them, with what a person reads for it.
PHASES = {
    "starting": "loading the face networks",
    "import": "importing photos",
    "loading": "loading the photos",
    "features": "computing features",
    "baselines": "scoring the baselines",
    "cross-validation": "cross-validation",
    "nested selection": "choosing the pipeline inside each fold",
    "head": "training the head",
    "fine-tune": "fine-tuning",
    "final head": "training the final model on all photos",
    "evaluating": "evaluating",
    "saving": "saving",
    "saved": "saved",
}


# The phases whose counts (`done` of `total`) a person reads, and what they count; the other phases count
# their smaller steps for the share of the run done only (ml/learning/run_plan.py).
COUNTED = {"import": "photo", "features": "photo", "saving": "file"}


class Cancelled(Exception):
    """Raised by a progress callback to stop a job; the job writes nothing."""


@dataclass(frozen=True)
class Progress:
    """Where a job stands: its phase, the share of the whole job done (0..1), and the counts of this step.

    A step reports one with the fraction left at 0; the job's reporter fills it in (and carries the
    scores so far) before the record is stored.
    """
    phase: str
    fraction: float = 0.0
    done: int | None = None              # items (photos, fits, files) handled so far in this phase, of `total`
    total: int | None = None
    part: int | None = None              # features: which source of features (of `parts`) is computed
    parts: int | None = None
    fold: int | None = None
    folds: int | None = None
    fold_epoch: int | None = None        # an epoch inside a cross-validation fold: progress only, no curve
    fold_epochs: int | None = None
    epoch: int | None = None             # an epoch of a curve that the model card keeps
    epochs: int | None = None
    rate: float | None = None            # items per second in this phase
    seconds_left: float | None = None
    fold_accuracies: list | None = None  # cross-validation: the accuracy on each fold scored so far
    baselines: dict | None = None        # the baselines' mean accuracy on those folds, by name
    candidates: list | None = None       # the candidate pipelines' accuracy so far, best first
    metrics: dict = field(default_factory=dict)     # an epoch's loss, accuracy, val_loss, val_accuracy

    def __post_init__(self):
        if self.phase not in PHASES and self.phase not in ("succeeded", "failed", "cancelled"):
            raise ValueError(f"unknown phase {self.phase!r}")

    def replace(self, **changes):
        """Return a copy with `changes`."""
        return dataclasses.replace(self, **changes)

    @property
    def curve_point(self):
        """Whether this is a finished epoch of a curve (kept in the job's history)."""
        return self.epoch is not None

    @property
    def words(self):
        """Say where the job stands, as every page and the command line show it."""
        words = PHASES.get(self.phase, self.phase)
        if self.total is not None and self.done is not None and self.phase in COUNTED:
            unit = COUNTED[self.phase]
            counts = [f"{unit} {self.done:,} of {self.total:,}"]
            if self.rate:
                counts.append(f"{self.rate:.1f} {unit}s a second")
            if self.seconds_left is not None and self.done < self.total:
                counts.append(f"about {duration(self.seconds_left)} left")
            return f"{words}: {' · '.join(counts)}"
        if self.fold is not None:
            words += f": fold {self.fold} of {self.folds}"
            if self.fold_epoch is not None:
                words += f", epoch {self.fold_epoch} of {self.fold_epochs}"
            return words
        if self.epoch is not None:
            return f"{words}: epoch {self.epoch} of {self.epochs}"
        return words

    def as_dict(self):
        """Return the record as a job's JSON `progress`: the fields that are set, the metrics, and its words."""
        body = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "metrics" and getattr(self, f.name) is not None}
        return body | self.metrics | {"step": self.words}


def duration(seconds):
    """Return a duration in the largest unit that fits: 40 s, 3 min, 2 h 10 min."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds // 3600} h {round(seconds % 3600 / 60)} min"


class Pace:
    """The rate of a counted step and the time it still needs, given only once the estimate is steady.

    The rate is that of the last WINDOW items, leaving out the few (under a quarter of them) that
    took over OUTLIER times the median: a photo that waited for a network to load or for a busy
    machine would make an estimate hours long for a step of minutes. When more are that slow, the
    work itself became slower, and they count. No estimate is given before STEADY_ITEMS items were
    timed and the finishing times of the last three estimates agree within STEADY_SHARE of the time
    left: a number that is then shown does not jump about.
    """
    WINDOW, OUTLIER, STEADY_ITEMS, STEADY_SHARE = 32, 5.0, 8, 0.25

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.seen = collections.deque(maxlen=self.WINDOW + 1)       # (items done, when)
        self.finishes = collections.deque(maxlen=3)                 # the moments the last estimates end at

    def progress(self, phase, done, total):
        """Return the Progress of `done` items of `total`, with the rate and the time left once they are steady."""
        now = self.clock()
        if done and (not self.seen or done > self.seen[-1][0]):
            self.seen.append((done, now))
        rate = self._rate()
        seconds_left = (total - done) / rate if rate else None
        if seconds_left is not None:
            self.finishes.append(now + seconds_left)
            if not self._steady(seconds_left):
                rate = seconds_left = None
        return Progress(phase, done / total if total else 1.0, done, total, rate=rate, seconds_left=seconds_left)

    def _rate(self):
        """Return items a second over the window, outliers left out; None before STEADY_ITEMS items were timed."""
        points = list(self.seen)
        per_item = [(t1 - t0) / (d1 - d0) for (d0, t0), (d1, t1) in zip(points, points[1:])]
        if not points or points[-1][0] - points[0][0] < self.STEADY_ITEMS:
            return None
        typical = statistics.median(per_item)
        slow = sum(each > self.OUTLIER * typical for each in per_item)
        kept = [(d1 - d0, t1 - t0) for (d0, t0), (d1, t1), each in zip(points, points[1:], per_item)
                if each <= self.OUTLIER * typical or 4 * slow >= len(per_item)]
        seconds = sum(t for _, t in kept)
        return sum(n for n, _ in kept) / seconds if seconds > 0 else None

    def _steady(self, seconds_left):
        return len(self.finishes) == self.finishes.maxlen and \
            max(self.finishes) - min(self.finishes) <= self.STEADY_SHARE * max(seconds_left, 1.0)
