"""How far a long job (a training or a dataset import) has come: one typed record, its phases and their words.

Every step of a job reports a Progress; the phases and the words for them are here only, so the
job page, the import page, the API and the command line say the same thing.
"""
import dataclasses
import time
from dataclasses import dataclass, field, fields

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
# Every phase a job reports, in the order a run goes through them, with what a person reads for it.
PHASES = {
    "import": "importing photos",
    "loading": "loading the photos and the face networks",
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
    done: int | None = None              # items (photos) handled so far in this phase, of `total`
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
        if self.total is not None and self.done is not None:
            unit = "photo" if self.phase in ("import", "features") else "item"
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
    """The rate of a counted step and the time it still needs, measured from its first item done.

    The first item pays for start-up (networks loaded on first use): counting it would make the
    first estimate hours long for a step of minutes, so the rate is that of the items after it.
    """

    def __init__(self, clock=time.monotonic):
        self.clock, self.first = clock, None

    def progress(self, phase, done, total):
        """Return the Progress of `done` items of `total`, with the rate so far and the time left at that rate."""
        now = self.clock()
        if done and self.first is None:
            self.first = (done, now)
        rate = None
        if self.first is not None and done > self.first[0] and now > self.first[1]:
            rate = (done - self.first[0]) / (now - self.first[1])
        return Progress(phase, done / total if total else 1.0, done, total, rate=rate,
                        seconds_left=(total - done) / rate if rate else None)
