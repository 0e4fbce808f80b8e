"""The model card: what a trained version is, how it was made and how well it did.

Only the registry reads and writes card files. A card of an older format loads with defaults for
what it lacks; a card that cannot be read raises CardError, which marks only its own version broken.
"""
import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime

from ml.errors import CardError
from ml.versions.metrics import Metrics

CARD_FORMAT = 2           # 1: before feature blocks (no "format", "pipeline" or "novelty")


@dataclass(frozen=True)
class ModelCard:
    """A version's labels, pipeline, face options, dataset, metrics and thresholds."""
    labels: list
    backbone: dict
    head: str
    face: dict
    dataset: dict
    metrics: Metrics                         # built from a dict too (training, a card's JSON)
    abstention: dict
    image_size: int | None = None
    pipeline: dict | None = None            # None on format-1 cards: the backbone alone
    options: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    calibration: dict = field(default_factory=lambda: {"temperature": 1.0})
    novelty: dict | None = None
    training_seconds: float | None = None
    training_peak_memory_mib: float | None = None
    software: dict = field(default_factory=dict)
    format: int = CARD_FORMAT
    version: str | None = None               # the next three are set by the registry when it saves
    created: str | None = None
    files: list = field(default_factory=list)
    imported: dict | None = None             # where and when a version came from another site
    conversions: list = field(default_factory=list)   # files rewritten since training, e.g. a pickled head
    gallery: dict | None = None              # the case gallery: its space, k, cases per condition, gallery-only ones

    def __post_init__(self):
        if isinstance(self.metrics, dict):
            object.__setattr__(self, "metrics", Metrics.from_dict(self.metrics))
        elif not isinstance(self.metrics, Metrics):
            raise CardError("card.json: metrics is missing or not a dict")

    @property
    def blocks(self):
        """Return the feature blocks the version's extractor computes."""
        return (self.pipeline or {}).get("blocks") or [self.backbone["name"]]

    @property
    def pipeline_name(self):
        return (self.pipeline or {}).get("name", self.backbone["name"])

    @property
    def usefulness(self):
        """Return the usefulness flag ({"useful": True} for versions from before it existed)."""
        return self.metrics.usefulness or {"useful": True, "note": ""}

    def to_dict(self):
        """Return the card as the JSON object written to card.json."""
        return dataclasses.asdict(self) | {"metrics": self.metrics.to_dict()}

    def replace(self, **changes):
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data):
        """Read a card from its JSON object, or raise CardError saying what is wrong with it."""
        if not isinstance(data, dict):
            raise CardError("card.json does not hold a JSON object")
        card_format = data.get("format", 1)
        if not isinstance(card_format, int) or isinstance(card_format, bool) or card_format < 1:
            raise CardError(f"card.json has an invalid format {card_format!r}")
        if card_format > CARD_FORMAT:
            raise CardError(f"card.json is of format {card_format}, newer than this FaceDx reads ({CARD_FORMAT})")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and f.name not in data]
        if missing:
            raise CardError(f"card.json lacks {', '.join(missing)}")
        card = cls(**{k: v for k, v in data.items() if k in names} | {"format": card_format})
        card._check()
        return card

    def _check(self):
        """Check the fields that pages, the API and the predictor read, so a damaged card fails here."""
        expect(self.labels, list, "labels")
        if len(self.labels) < 2 or not all(isinstance(label, str) for label in self.labels):
            raise CardError("card.json: labels must name at least two conditions")
        for name in ("backbone", "face", "dataset", "abstention", "calibration", "options", "software"):
            expect(getattr(self, name), dict, name)
        expect(self.head, str, "head")
        expect(self.backbone.get("name"), str, "backbone.name")
        expect(self.backbone.get("weights"), dict, "backbone.weights")
        expect(self.dataset.get("id"), str, "dataset.id")
        expect(self.metrics.per_class, dict, "metrics.per_class")
        for key in ("accuracy", "macro_f1"):
            expect_number(getattr(self.metrics, key), f"metrics.{key}")
        check_thresholds(self.abstention)
        expect_number(self.calibration.get("temperature"), "calibration.temperature")
        expect(self.history, list, "history")
        if self.pipeline is not None:
            expect(self.pipeline, dict, "pipeline")
            expect(self.pipeline.get("blocks"), list, "pipeline.blocks")
        expect(self.files, list, "files")
        if not all(isinstance(name, str) for name in self.files):
            raise CardError("card.json: files must be file names")
        expect(self.conversions, list, "conversions")
        for name, kind in (("image_size", int), ("novelty", dict), ("version", str), ("created", str),
                           ("imported", dict), ("gallery", dict)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                raise CardError(f"card.json: {name} is not a {kind.__name__}")
        for name in ("training_seconds", "training_peak_memory_mib"):
            if getattr(self, name) is not None:
                expect_number(getattr(self, name), name)
        if self.gallery is not None:
            k = self.gallery.get("k")
            if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 100:
                raise CardError("card.json: gallery.k is not a number of cases from 1 to 100")
            expect(self.gallery.get("gallery_only"), list, "gallery.gallery_only")
        if self.created is not None:
            try:
                datetime.fromisoformat(self.created)
            except ValueError:
                raise CardError("card.json: created is not a date and time") from None


def check_thresholds(abstention):
    """Return abstention thresholds if they are two finite numbers, else raise CardError."""
    expect(abstention, dict, "abstention")
    for key in ("min_probability", "min_margin"):
        expect_number(abstention.get(key), f"abstention.{key}")
    return abstention


def expect(value, kind, name):
    """Raise CardError unless `value` is of `kind`."""
    if not isinstance(value, kind):
        raise CardError(f"card.json: {name} is missing or not a {kind.__name__}")


def expect_number(value, name):
    """Raise CardError unless `value` is a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CardError(f"card.json: {name} is missing or not a finite number")
