"""What a version scored: the typed record of a model card's `metrics`.

Training builds the figures as JSON-ready values (ml/learning/evaluation.py, card_figures.py); the
card holds them as this record, so pages, the API and the command line read named fields instead
of keys. A card written by an older FaceDx may lack a figure: it is None (or empty) here. Keys
this version does not know are kept as they were, so a card round-trips unchanged.
"""
import dataclasses
from dataclasses import dataclass, field

from ml.errors import CardError


@dataclass(frozen=True)
class Metrics:
    """Accuracy and the figures around it, from cross-validation or one held-out split."""
    accuracy: float = None                    # None only on a damaged card: the card's checks refuse it
    macro_f1: float = None
    per_class: dict = None                    # label -> precision, recall, f1, support
    accuracy_std: float | None = None         # across folds; None for one held-out split
    macro_f1_std: float | None = None
    macro_roc_auc: float | None = None
    n: int | None = None                      # photos evaluated
    confusion_matrix: list | None = None
    method: str | None = None                 # "cross-validation" or "held-out"
    folds: int | None = None
    grouped: bool = False                     # folds keep each person on one side
    note: str = ""                            # how it was evaluated, in words
    split: dict | None = None                 # held-out: photos in train, validation and test
    baselines: dict = field(default_factory=dict)       # name -> accuracy (± std), macro F1 on the same folds
    fold_accuracies: list | None = None
    candidates: list | None = None            # auto: every candidate pipeline's score, best first
    chosen_per_fold: list | None = None
    selection: str | None = None              # how the pipeline was chosen, in words
    clinical: dict | None = None              # sensitivity and specificity per condition, with intervals
    subgroups: list | None = None             # accuracy by sex, age band, ancestry where the dataset names them
    usefulness: dict | None = None            # {"useful": bool, "note": str}
    calibration: dict | None = None
    fine_tune_precision: str | None = None
    cases: dict | None = None                 # matching in the case gallery (leave-one-person-out)
    extra: dict = field(default_factory=dict)   # figures of a newer FaceDx, kept as they were
    keys: tuple = field(default=(), compare=False, repr=False)     # the card's own keys, in its order

    @classmethod
    def from_dict(cls, data):
        """Read the metrics of a card's JSON object, or raise CardError."""
        if not isinstance(data, dict):
            raise CardError("card.json: metrics is missing or not a dict")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra", "keys"}
        return cls(**{k: v for k, v in data.items() if k in names},
                   extra={k: v for k, v in data.items() if k not in names}, keys=tuple(data))

    def to_dict(self):
        """Return the metrics as the card's JSON object: its own keys in their order, then any figure set since."""
        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("extra", "keys")}
        body |= self.extra
        ordered = {key: body[key] for key in self.keys if key in body}
        added = {key: value for key, value in body.items() if key not in ordered and value != _DEFAULTS.get(key)}
        return ordered | added

    def replace(self, **changes):
        """Return a copy with some figures changed."""
        return dataclasses.replace(self, **changes)


# What a figure is when a card does not say it: such figures are not written back.
_DEFAULTS = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
             for f in dataclasses.fields(Metrics)}
