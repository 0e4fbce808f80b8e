"""What pages, the API and the command line show of a model version, computed in one place."""
import json
import math

from ml.learning.evaluation import AGE_BANDS, clinical_figures


def version_summary(version, active=None):
    """Return the figures of a model version that lists and comparisons show."""
    card, metrics = version.card, version.card.metrics
    per_class = metrics.per_class
    return {
        "version": version.version, "created": card.created, "active": version.version == active,
        "dataset": card.dataset["id"], "images": card.dataset.get("images"), "labels": card.labels,
        "backbone": card.backbone["name"], "weights": card.backbone["weights"].get("name"),
        "head": card.head, "image_size": card.image_size, "card_format": card.format,
        "evaluation": metrics.method, "folds": metrics.folds, "grouped": metrics.grouped,
        "evaluation_note": metrics.note,
        "accuracy": metrics.accuracy, "accuracy_std": metrics.accuracy_std,
        "macro_f1": metrics.macro_f1, "macro_f1_std": metrics.macro_f1_std,
        "macro_roc_auc": metrics.macro_roc_auc, "evaluated_images": metrics.n,
        "recall": {label: row.get("recall") for label, row in per_class.items()},
        "baselines": metrics.baselines,
        "training_seconds": card.training_seconds,
        "training_memory_mib": card.training_peak_memory_mib,
        "fine_tune_precision": metrics.fine_tune_precision,
        "pipeline": card.pipeline_name,
        "useful": card.usefulness["useful"],
        "useful_note": card.usefulness.get("note", ""),
        "gallery": card.gallery, "nearest_cases": metrics.cases,
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


def clinical_percent(share):
    """Format a share as a clinician reads it: whole percents, never '100%' or '0%' ('>99%', '<1%')."""
    whole = math.floor(share * 100 + 0.5)
    if whole >= 100:
        return ">99%"
    return "<1%" if whole <= 0 else f"{whole}%"


def with_interval(share, low, high):
    """Format a share with its 95% interval, for doctors and administrators alike: '92% (95% interval 80% to 97%)'."""
    return f"{clinical_percent(share)} (95% interval {clinical_percent(low)} to {clinical_percent(high)})"


def proportion(figure):
    """Format a counted share {k, n, value, low, high}: '11 of 12: 92% (95% interval 65% to >99%)'."""
    shown = "n/a" if figure.get("value") is None else with_interval(figure["value"], figure["low"], figure["high"])
    return f"{figure['k']} of {figure['n']}: {shown}"


def clinical_figures_of(version):
    """Return each condition's sensitivity and specificity: from the card, else from its held-out predictions."""
    figures = version.card.metrics.clinical
    if figures:
        return figures
    # Cards from before these figures were recorded keep their out-of-fold predictions beside them.
    try:
        rows = json.loads((version.path / "evaluation.json").read_text())
    except (OSError, ValueError):
        return None
    if not rows:
        return None
    predicted = [max(range(len(row["probabilities"])), key=row["probabilities"].__getitem__) for row in rows]
    return clinical_figures([row["label"] for row in rows], predicted, version.card.labels)


DEFAULT_INTENDED_USE = (
    "A screening aid for clinicians. From a photo of one patient's face it ranks the conditions listed below by "
    "probability, to help decide whether to refer the patient for a clinical assessment. It does not diagnose, "
    "and it knows no condition other than those listed: a clinician must assess every patient.")


def intended_use(version_name):
    """Return (what the version is for, who last set it or None for the default)."""
    from web.db import db
    from web.records import IntendedUse

    row = db.session.get(IntendedUse, version_name)
    return (row.text, row.updated_by) if row else (DEFAULT_INTENDED_USE, None)


def model_facts(version):
    """Return what a doctor should know of a model version: its use, data, evaluation and blind spots."""
    card, metrics = version.card, version.card.metrics
    subgroups = metrics.subgroups or []
    return {
        "version": version.version, "created": (card.created or "")[:10], "pipeline": card.pipeline_name,
        "intended_use": intended_use(version.version)[0], "labels": card.labels,
        "photos": {label: row.get("support") for label, row in metrics.per_class.items()},
        "images": card.dataset.get("images"), "evaluation": metrics.note,
        "grouped": metrics.grouped, "clinical": clinical_figures_of(version),
        "subgroups": subgroups, "not_trained_on": blind_spots(card.labels, subgroups),
    }


def blind_spots(labels, subgroups):
    """Say what a model was not trained on: other conditions, and the people its dataset did not describe."""
    spots = [f"Any condition other than {', '.join(labels)}: a patient with another condition still gets one of "
             "these, with a probability that means nothing."]
    given = {}
    for row in subgroups:
        given.setdefault(row["attribute"], set()).add(row["group"])
    missing = [name for name in ("sex", "age", "ancestry") if name not in given]
    if missing:
        spots.append(f"The dataset did not give the {', '.join(missing)} of the people photographed: how the model "
                     "does for each such group was not measured.")
    absent_ages = [name for _, name in AGE_BANDS if "age" in given and name not in given["age"]]
    if absent_ages:
        spots.append(f"No photos of people aged {', '.join(absent_ages)} (in years).")
    if len(given.get("sex", ())) == 1:
        spots.append(f"Photos of one sex only ({next(iter(given['sex']))}).")
    return spots
