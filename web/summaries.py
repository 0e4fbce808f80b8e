"""What pages, the API and the command line show of a model version, computed in one place."""


def version_summary(version, active=None):
    """Return the figures of a model version that lists and comparisons show."""
    card, metrics = version.card, version.card["metrics"]
    per_class = metrics["per_class"]
    return {
        "version": version.version, "created": card.get("created"), "active": version.version == active,
        "dataset": card["dataset"]["id"], "images": card["dataset"]["images"], "labels": card["labels"],
        "backbone": card["backbone"]["name"], "weights": card["backbone"]["weights"]["name"],
        "head": card["head"], "image_size": card["image_size"],
        "evaluation": metrics["method"], "folds": metrics.get("folds"), "grouped": metrics.get("grouped", False),
        "evaluation_note": metrics.get("note", ""),
        "accuracy": metrics["accuracy"], "accuracy_std": metrics.get("accuracy_std"),
        "macro_f1": metrics["macro_f1"], "macro_f1_std": metrics.get("macro_f1_std"),
        "macro_roc_auc": metrics.get("macro_roc_auc"), "evaluated_images": metrics["n"],
        "recall": {label: row["recall"] for label, row in per_class.items()},
        "baselines": metrics.get("baselines", {}),
        "training_seconds": card.get("training_seconds"),
        "training_memory_mib": card.get("training_peak_memory_mib"),
        "fine_tune_precision": metrics.get("fine_tune_precision"),
        "pipeline": card.get("pipeline", {}).get("name", card["backbone"]["name"]),
        "useful": (metrics.get("usefulness") or {"useful": True})["useful"],
        "useful_note": (metrics.get("usefulness") or {}).get("note", ""),
    }


def percent(value, std=None):
    """Format a share as '81.2%' or '81.2% ± 4.1'."""
    if value is None:
        return "n/a"
    text = f"{value * 100:.1f}%"
    return text if std is None else f"{text} ± {std * 100:.1f}"
