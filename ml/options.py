"""TrainingOptions: every option a training run takes, its range and default, defined once."""
from dataclasses import dataclass, fields

from ml.errors import TrainingError

BLOCKS = ("dlib-face", "hog", "lbp", "geometry", "vggface", "vgg16-imagenet")
VGG_BLOCKS = ("vggface", "vgg16-imagenet")
# The pipelines `auto` compares by nested cross-validation (those whose weights are present), and
# the choices a form offers: fusions first, then single blocks.
PIPELINES = ("dlib-face+hog+lbp+geometry", "dlib-face+hog", "hog+lbp+geometry", "dlib-face", "hog", "lbp",
             "geometry", "vggface", "vgg16-imagenet")
HEADS = ("linear", "softmax", "svm")
MIXED_PRECISION = ("auto", "on", "off")
_KIND_NAMES = {int: "a whole number", float: "a number", str: "text"}


def check_pipeline(name):
    """Refuse a `backbone` that is neither auto nor one block or a fusion of blocks ('dlib-face+hog')."""
    parts = name.split("+")
    if name == "auto" or (all(part in BLOCKS for part in parts) and len(set(parts)) == len(parts)
                          and not (len(parts) > 1 and set(parts) & set(VGG_BLOCKS))):
        return name
    raise TrainingError(f"Unknown backbone {name!r}; choose auto, one of {', '.join(BLOCKS)}, or a fusion of "
                        f"the face blocks joined by '+' (e.g. dlib-face+hog).")


@dataclass(frozen=True)
class TrainingOptions:
    """Everything a training run can be told; the names are the same in the CLI, API and forms."""
    backbone: str = "auto"          # auto: candidates compared by nested cross-validation; or blocks "a+b"
    head: str = "linear"
    folds: int = 5
    weights: str = "pretrained"     # VGG16 blocks: pretrained (imagenet / vggface), none, or a file
    image_size: int = 224
    epochs: int = 30
    fine_tune_epochs: int = 0
    batch_size: int = 16
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-5
    mixed_precision: str = "auto"   # fine-tuning in float16 with float32 weights: auto = on a GPU
    regularization: float | None = None   # C of the linear head; None: chosen by inner cross-validation
    min_coverage: float = 0.8       # abstention answers at least this share of out-of-fold photos
    dropout: float = 0.3
    patience: int = 5
    test_fraction: float = 0.2
    validation_fraction: float = 0.15
    seed: int = 1337

    def __post_init__(self):
        from ml.backbones.vgg import check_image_size

        check_pipeline(self.backbone)
        if self.head not in HEADS:
            raise TrainingError(f"Unknown head {self.head!r}; choose one of {', '.join(HEADS)}.")
        check_image_size(self.image_size)
        if not 1 <= self.epochs <= 1000 or not 0 <= self.fine_tune_epochs <= 1000:
            raise TrainingError("epochs must be 1-1000 and fine_tune_epochs 0-1000.")
        if self.fine_tune_epochs and self.head != "softmax":
            raise TrainingError("Fine-tuning trains the softmax head with the network: use head softmax.")
        if self.mixed_precision not in MIXED_PRECISION:
            raise TrainingError(f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}.")
        if not 2 <= self.folds <= 20:
            raise TrainingError("folds must be 2-20.")
        if not 1 <= self.batch_size <= 512 or self.patience < 1 or \
                (self.regularization is not None and self.regularization <= 0):
            raise TrainingError("batch_size must be 1-512, patience at least 1 and regularization above 0.")
        if not 0.5 <= self.min_coverage <= 1:
            raise TrainingError("min_coverage must be between 0.5 and 1.")
        if not (0 < self.test_fraction < 0.5 and 0 < self.validation_fraction < 0.5):
            raise TrainingError("test_fraction and validation_fraction must each be between 0 and 0.5.")

    @classmethod
    def from_dict(cls, options):
        """Build options from user input, refusing unknown names and malformed values."""
        known = {f.name: f.type for f in fields(cls)}
        unknown = set(options) - set(known)
        if unknown:
            raise TrainingError(f"Unknown training option(s): {', '.join(sorted(unknown))}.")
        values = {}
        for name, value in options.items():
            kind = known[name]
            if name == "regularization":
                values[name] = None if value in (None, "auto") else float(value)
                continue
            try:
                values[name] = kind(value)
            except (TypeError, ValueError):
                raise TrainingError(f"Training option {name} must be {_KIND_NAMES[kind]}.") from None
        return cls(**values)
