"""What pages, the API and the command line show of a model version, computed in one place."""


def version_summary(version, active=None):
    """Return the figures of a model version that lists and comparisons show."""
    card, metrics = version.card, version.card.metrics
    per_class = metrics["per_class"]
    return {
        "version": version.version, "created": card.created, "active": version.version == active,
        "dataset": card.dataset["id"], "images": card.dataset.get("images"), "labels": card.labels,
        "backbone": card.backbone["name"], "weights": card.backbone["weights"].get("name"),
        "head": card.head, "image_size": card.image_size, "card_format": card.format,
        "evaluation": metrics.get("method"), "folds": metrics.get("folds"), "grouped": metrics.get("grouped", False),
        "evaluation_note": metrics.get("note", ""),
        "accuracy": metrics["accuracy"], "accuracy_std": metrics.get("accuracy_std"),
        "macro_f1": metrics["macro_f1"], "macro_f1_std": metrics.get("macro_f1_std"),
        "macro_roc_auc": metrics.get("macro_roc_auc"), "evaluated_images": metrics.get("n"),
        "recall": {label: row.get("recall") for label, row in per_class.items()},
        "baselines": metrics.get("baselines", {}),
        "training_seconds": card.training_seconds,
        "training_memory_mib": card.training_peak_memory_mib,
        "fine_tune_precision": metrics.get("fine_tune_precision"),
        "pipeline": card.pipeline_name,
        "useful": card.usefulness["useful"],
        "useful_note": card.usefulness.get("note", ""),
        "broken": None,
    }


def broken_summary(broken, active=None):
    """Return what lists show of a version that cannot be served: its name and its problem."""
    return {"version": broken.version, "active": broken.version == active, "broken": broken.problem}


def percent(value, std=None):
    """Format a share as '81.2%' or '81.2% ± 4.1'."""
    if value is None:
        return "n/a"
    text = f"{value * 100:.1f}%"
    return text if std is None else f"{text} ± {std * 100:.1f}"
