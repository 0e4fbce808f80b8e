"""TrainingOptions: every option a training run takes, its range and default, defined once."""
import json
from dataclasses import dataclass, field, fields
from typing import Callable

from ml.errors import TrainingError

BLOCKS = ("dlib-face", "hog", "lbp", "geometry", "vggface", "vgg16-imagenet")
VGG_BLOCKS = ("vggface", "vgg16-imagenet")
# The pipelines `auto` compares by nested cross-validation (those whose weights are present), and
# the choices a form offers: fusions first, then single blocks.
PIPELINES = ("dlib-face+hog+lbp+geometry", "dlib-face+hog", "hog+lbp+geometry", "dlib-face", "hog", "lbp",
             "geometry", "vggface", "vgg16-imagenet")
HEADS = ("linear", "softmax", "svm")
MIXED_PRECISION = ("auto", "on", "off")
MAX_WEIGHTS_PATH = 1000
_KIND_NAMES = {int: "a whole number", float: "a number"}
# Where the options of VGG16 blocks, the softmax head and fine-tuning make a difference (`auto` compares
# the VGG16 blocks too where their weights are present).
FOR_VGG = {"backbone": ("auto",) + VGG_BLOCKS}
FOR_SOFTMAX = {"head": ("softmax",)}
# What can be fine-tuned: VGG16's last convolutional block, or the face network's 256-filter stages.
FINE_TUNABLE = VGG_BLOCKS + ("dlib-face",)
FOR_FINE_TUNING = {"backbone": FINE_TUNABLE, "head": ("softmax",)}


def is_vgg16(pipeline):
    """Say whether a pipeline is a VGG16 network (built from weights, saved whole with its version), not face blocks."""
    return pipeline in VGG_BLOCKS


def check_pipeline(name):
    """Refuse a `backbone` that is neither auto nor one block or a fusion of blocks ('dlib-face+hog')."""
    parts = name.split("+")
    if name == "auto" or (all(part in BLOCKS for part in parts) and len(set(parts)) == len(parts)
                          and not (len(parts) > 1 and set(parts) & set(VGG_BLOCKS))):
        return name
    raise TrainingError(f"Unknown backbone {_shown(name)}; choose auto, one of {', '.join(BLOCKS)}, or a fusion "
                        f"of the face blocks joined by '+' (e.g. dlib-face+hog).")


def check_weights(weights):
    """Refuse `weights` that are empty or too long to be pretrained, none or a file path."""
    if not 0 < len(weights) <= MAX_WEIGHTS_PATH:
        raise TrainingError(f"weights must be pretrained, none or the path of a weights file of at most "
                            f"{MAX_WEIGHTS_PATH} characters (got {_shown(weights)}).")


def _shown(value):
    """Return a user's value as JSON writes it (NaN, Infinity, true, "text"), cut short if long."""
    text = json.dumps(value, default=repr)
    return text if len(text) <= 40 else text[:37] + "..."


def _bound(number):
    return str(number) if isinstance(number, int) else f"{number:g}"


@dataclass(frozen=True)
class OptionSpec:
    """One training option: its kind, default, the values it allows and a one-line help."""
    name: str
    kind: type                      # int, float or str
    default: object
    help: str
    low: float | None = None        # numbers: the range allowed, closed unless `interval` says "(]", "[)" or "()"
    high: float | None = None
    interval: str = "[]"
    choices: tuple = ()             # text: the only values allowed
    offered: tuple = ()             # text: the values a form offers, where `check` allows others too
    check: Callable | None = None   # text: raises TrainingError for a value it refuses
    auto: bool = False              # None ("auto" from users): chosen during training
    applies_to: dict = field(default_factory=dict)     # {"backbone": (...), "head": (...)}; {}: every run

    def allowed(self):
        """Describe the values this option takes, e.g. 'a whole number from 1 to 1000'."""
        if self.choices:
            text = f"one of {', '.join(self.choices)}"
        elif self.kind is str:
            text = "text"
        else:
            low = f"above {_bound(self.low)}" if self.interval[0] == "(" else f"at least {_bound(self.low)}"
            high = f"below {_bound(self.high)}" if self.interval[1] == ")" else f"at most {_bound(self.high)}"
            span = (f"from {_bound(self.low)} to {_bound(self.high)}" if self.interval == "[]"
                    else f"{low} and {high}")
            text = f"{_KIND_NAMES[self.kind]} {span}"
        return f"auto or {text}" if self.auto else text

    def applies(self, backbone, head):
        """Say whether this option makes a difference to a run with the given backbone and head."""
        chosen = {"backbone": backbone, "head": head}
        return all(chosen[name] in values for name, values in self.applies_to.items())

    def describe(self):
        """Return the help, with the range of a number, as the CLI and the training form show it."""
        return self.help if self.kind is str else f"{self.help} ({self.allowed()})"

    def parse(self, value):
        """Return a user's value (JSON, form field or command line) as this option's type, or refuse it."""
        if self.auto and value in (None, "auto"):
            return None
        if self.kind is str:
            self.validate(value)
            return value
        number = _number_in(value) if isinstance(value, str) else value
        if self.kind is int and isinstance(number, float) and number.is_integer():
            number = int(number)
        if not self._allows(number):
            raise self._refusal(value)
        return float(number) if self.kind is float else number

    def validate(self, value):
        """Raise TrainingError naming this option and the values it allows unless `value` is one of them."""
        if self.auto and value is None:
            return
        if self.check and isinstance(value, str):
            self.check(value)
        elif not self._allows(value):
            raise self._refusal(value)

    def _refusal(self, value):
        return TrainingError(f"{self.name} must be {self.allowed()} (got {_shown(value)}).")

    def _allows(self, value):
        if self.kind is str:
            return value in self.choices
        kinds = (int, float) if self.kind is float else (int,)
        return isinstance(value, kinds) and not isinstance(value, bool) and self._in_range(value)

    def _in_range(self, number):
        """Compare with the bounds; NaN compares false, and infinities fall outside the finite bounds."""
        above = number > self.low if self.interval[0] == "(" else number >= self.low
        below = number < self.high if self.interval[1] == ")" else number <= self.high
        return above and below


def _number_in(text):
    """Return the int or float a text spells, or the text itself when it spells no number."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def option(default, help, kind=None, **rules):
    """Declare a TrainingOptions field: its default, a one-line help and the rules of its OptionSpec."""
    return field(default=default, metadata=dict(rules, help=help, kind=kind or type(default)))


@dataclass(frozen=True)
class TrainingOptions:
    """Everything a training run can be told; the names are the same in the CLI, API and forms."""
    backbone: str = option("auto", "auto: the pipelines compared by nested cross-validation; or one block, or face "
                           "blocks joined by '+' (e.g. dlib-face+hog).", check=check_pipeline,
                           offered=("auto",) + PIPELINES)
    head: str = option("linear", "The classifier on the features; softmax is the one that can fine-tune.",
                       choices=HEADS)
    folds: int = option(5, "Cross-validation folds.", low=2, high=20)
    weights: str = option("pretrained", "VGG16 blocks: pretrained (imagenet is a synonym for vgg16-imagenet), "
                          "none (random, for tests), or the path of a weights file.", check=check_weights,
                          offered=("pretrained", "none"), applies_to=FOR_VGG)
    image_size: int = option(224, "VGG16 blocks' input size in pixels.", low=32, high=512, applies_to=FOR_VGG)
    epochs: int = option(30, "Softmax head epochs (with early stopping).", low=1, high=1000, applies_to=FOR_SOFTMAX)
    fine_tune_epochs: int = option(0, "Softmax head on a VGG16 block or dlib-face: epochs fine-tuning VGG16's last "
                                   "convolutional block or the face network's 256-filter stages, evaluated on a "
                                   "held-out split (fast on a GPU; minutes on a CPU).", low=0, high=1000,
                                   applies_to=FOR_FINE_TUNING)
    batch_size: int = option(16, "Photos per training step of the softmax head.", low=1, high=512,
                             applies_to=FOR_SOFTMAX)
    learning_rate: float = option(1e-3, "Learning rate of the softmax head.", low=0, high=1, interval="(]",
                                  applies_to=FOR_SOFTMAX)
    fine_tune_learning_rate: float = option(1e-5, "Learning rate while fine-tuning.", low=0, high=1, interval="(]",
                                            applies_to=FOR_FINE_TUNING)
    mixed_precision: str = option("auto", "Fine-tuning VGG16 in float16 arithmetic with float32 weights; auto: "
                                  "when a GPU is present.", choices=MIXED_PRECISION, applies_to=FOR_FINE_TUNING)
    regularization: float | None = option(None, "C of the linear head (smaller: stronger regularisation); auto: "
                                          "chosen by inner cross-validation.", kind=float, low=0, high=1_000_000,
                                          interval="(]", auto=True, applies_to={"head": ("linear", "svm")})
    min_coverage: float = option(0.8, "Abstention thresholds answer at least this share of held-out photos.",
                                 low=0.5, high=1)
    dropout: float = option(0.3, "Dropout before the softmax layer.", low=0, high=1, interval="[)",
                            applies_to=FOR_SOFTMAX)
    patience: int = option(5, "Epochs without improvement before early stopping.", low=1, high=1000,
                           applies_to=FOR_SOFTMAX)
    test_fraction: float = option(0.2, "Share of the photos held out for testing when fine-tuning.", low=0,
                                  high=0.5, interval="()", applies_to=FOR_FINE_TUNING)
    validation_fraction: float = option(0.15, "Share of the training photos kept for early stopping and "
                                        "calibration.", low=0, high=0.5, interval="()", applies_to=FOR_SOFTMAX)
    nearest_cases: int = option(5, "Validated cases of the gallery shown beside each result, nearest first.", low=1,
                                high=20)
    seed: int = option(1337, "Seed of every random choice, for repeatable runs.", low=0, high=2 ** 32 - 1)

    def __post_init__(self):
        for spec in OPTION_SPECS.values():
            spec.validate(getattr(self, spec.name))
        if self.fine_tune_epochs and self.head != "softmax":
            raise TrainingError("Fine-tuning trains the softmax head with the network: use head softmax.")

    @classmethod
    def from_dict(cls, options):
        """Build options from user input (JSON, a form, a job record), refusing unknown names and bad values."""
        unknown = set(options) - set(OPTION_SPECS)
        if unknown:
            raise TrainingError(f"Unknown training option(s): {', '.join(sorted(unknown))}; the options are "
                                f"{', '.join(OPTION_SPECS)}.")
        return cls(**{name: OPTION_SPECS[name].parse(value) for name, value in options.items()})


# name -> OptionSpec, in the order of the fields.
OPTION_SPECS = {f.name: OptionSpec(f.name, default=f.default, **f.metadata) for f in fields(TrainingOptions)}
