"""How far a long job (a training or a dataset import) has come: one typed record, and the signal that stops it."""
import time
from dataclasses import dataclass, field, fields

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


class Cancelled(Exception):
    """Raised by a progress callback to stop a job; the job writes nothing."""


@dataclass(frozen=True)
class Progress:
    """Where a job stands: its phase, the share of the whole job done (0..1), and the counts of this step."""
    phase: str
    fraction: float = 0.0
    done: int | None = None              # items (photos) handled so far in this phase, of `total`
    total: int | None = None
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

    @classmethod
    def of(cls, event, fraction):
        """Return the record of a step event (a dict with `phase` and some of the counts and metrics)."""
        counts = {f.name: event[f.name] for f in fields(cls) if f.name in event and f.name not in ("phase", "metrics")}
        return cls(phase=event["phase"], **dict(counts, fraction=fraction),
                   metrics={name: float(event[name]) for name in METRICS if name in event})

    @property
    def curve_point(self):
        """Whether this is a finished epoch of a curve (kept in the job's history)."""
        return self.epoch is not None

    def as_dict(self):
        """Return the record as a job's JSON `progress`: the fields that are set, the metrics among them."""
        body = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "metrics" and getattr(self, f.name) is not None}
        return body | self.metrics


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
