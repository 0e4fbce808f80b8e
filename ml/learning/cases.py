"""The case gallery a training run saves with its version, and how well matching in it finds a photo's condition.

The gallery's space is the face descriptor (the dlib-face block's 128 values) when the version
computes it: the kind of face phenotype space in which face-matching systems place a patient
among validated cases. A version without it (VGG16, or texture and shape blocks only) uses its own
features, each block centred, scaled and weighted as its linear head sees them; the card says which.

Every photo of the dataset is a case, gallery-only classes included. The figures are
leave-one-person-out: each photo is matched against the cases of every other person (every other
photo where the dataset names no people), as a new patient's photo would be.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ml.datasets.store import Dataset
from ml.learning.calibration import decide
from ml.learning.pipelines import block_scaling
from ml.photos.images import resize
from ml.versions.gallery import GALLERY_FILE, THUMBNAIL_SIDE, CaseGallery, unit_rows

FACE_SPACE = "dlib-face"
CHUNK = 512                 # query photos per similarity block of the leave-one-person-out sweep
TOP = 5                     # the figures' top-k: the true condition among the 5 conditions matched first


def gallery_space(blocks, block_sizes):
    """Return (the space in words, its (first, end) columns in the version's features, the sizes of its blocks)."""
    blocks, block_sizes = list(blocks), [int(size) for size in block_sizes]
    if FACE_SPACE in blocks:
        at = blocks.index(FACE_SPACE)
        start = sum(block_sizes[:at])
        return (f"the face descriptor ({FACE_SPACE}, {block_sizes[at]} values)", (start, start + block_sizes[at]),
                [block_sizes[at]])
    return (f"this version's own features ({'+'.join(blocks)}, {sum(block_sizes)} values; it computes no face "
            "descriptor)", (0, sum(block_sizes)), block_sizes)


@dataclass(frozen=True)
class GallerySource:
    """Every photo of a dataset, gallery-only classes included, as a training run holds them."""
    dataset: Dataset               # the whole dataset
    crops: np.ndarray
    labels: np.ndarray             # indices into dataset.labels
    persons: list | None           # one id per photo, or None where the dataset names no people
    vectors: Callable              # (extractor, blocks) -> the version's feature vectors of every photo


@dataclass(frozen=True)
class Sweep:
    """Leave-one-person-out matching of every case: where its condition ranks, and what its k nearest cases are."""
    rank: np.ndarray               # 0: its condition had the nearest case; len(labels): no case of it was left
    within: np.ndarray             # similarity to its nearest case of the same condition (another person); NaN: none
    among_nearest: np.ndarray      # whether its condition is among its k nearest cases'


def build_gallery(source, extractor, blocks, block_sizes, k):
    """Return (the CaseGallery, the card's description of it, its Sweep) of a version's features."""
    dataset = source.dataset
    space, columns, sizes = gallery_space(blocks, block_sizes)
    x = np.asarray(source.vectors(extractor, blocks), np.float64)[:, columns[0]:columns[1]]
    mean, scale = block_scaling(x, sizes)
    unit = unit_rows((x - mean) / scale).astype(np.float32)
    persons = source.persons
    sweep = leave_one_person_out(unit, source.labels, persons, len(dataset.labels), k)
    consented = np.flatnonzero(dataset.consented())
    rare = set(dataset.manifest.gallery_only or ())
    gallery = CaseGallery(
        labels=dataset.labels, case_labels=source.labels, vectors=unit, mean=mean, scale=scale, columns=columns,
        within=sweep.within, persons=[p or "" for p in persons] if persons else [""] * len(unit),
        gallery_only=[label in rare for label in dataset.labels],
        thumbnails=np.stack([thumbnail(source.crops[i]) for i in consented]) if len(consented) else np.zeros(0),
        thumbnail_cases=consented)
    card = {"file": GALLERY_FILE, "space": space, "k": k, "cases": len(gallery), "conditions": gallery.counts(),
            "gallery_only": [label for label in dataset.labels if label in rare], "thumbnails": int(len(consented)),
            "people_named": persons is not None}
    return gallery, card, sweep


def thumbnail(crop):
    """Return a face crop shrunk to THUMBNAIL_SIDE pixels a side: what staff may see of a consented case."""
    return resize(np.asarray(crop, np.uint8), THUMBNAIL_SIDE)


def leave_one_person_out(unit, labels, persons, n_labels, k):
    """Match every case against the cases of all other people; return the Sweep.

    Conditions are ranked by their nearest case (the way a clinician reads a list of similar
    patients); `persons` None leaves out only the photo itself.
    """
    labels = np.asarray(labels)
    n = len(labels)
    codes = np.unique(np.asarray(persons, dtype=str), return_inverse=True)[1] if persons is not None else np.arange(n)
    order = np.argsort(labels, kind="stable")
    present, starts = np.unique(labels[order], return_index=True)
    column = np.full(n_labels, -1)
    column[present] = np.arange(len(present))
    rank, within, among = np.zeros(n, int), np.full(n, np.nan, np.float32), np.zeros(n, bool)
    k = min(k, max(n - 1, 1))
    for start in range(0, n, CHUNK):
        rows = np.arange(start, min(start + CHUNK, n))
        similarity = unit[rows] @ unit.T
        similarity[codes[rows, None] == codes[None, :]] = -np.inf
        best = np.maximum.reduceat(similarity[:, order], starts, axis=1)      # each condition's nearest case
        own = best[np.arange(len(rows)), column[labels[rows]]]
        found = np.isfinite(own)
        rank[rows] = np.where(found, np.sum(best > own[:, None], axis=1), n_labels)
        within[rows] = np.where(found, own, np.nan)
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        usable = np.take_along_axis(similarity, nearest, axis=1) > -np.inf
        among[rows] = np.any((labels[nearest] == labels[rows, None]) & usable, axis=1)
    return Sweep(rank, within, among)


def case_figures(sweep, source, classifier, thresholds, k):
    """Return the card's figures of matching in the gallery, beside the classifier's, per condition and by kind.

    `classifier`: the classifier's held-out probabilities of the photos it learnt ([n, classes],
    rows of photos it never held out are NaN), in the order of `source.dataset.classifier_rows()`.
    The abstention figure is how often, on the photos where those probabilities fall below the
    thresholds, the true condition is among the k nearest cases.
    """
    dataset = source.dataset
    rare = set(dataset.manifest.gallery_only or ())
    rows = dataset.classifier_rows()
    evaluated = ~np.isnan(classifier).any(axis=1)
    classified = {int(i): p for i, p, used in zip(rows, classifier, evaluated) if used}
    kept = [label for label in dataset.labels if label not in rare]
    per_condition = {}
    for index, label in enumerate(dataset.labels):
        members = np.flatnonzero(source.labels == index)
        entry = {"photos": int(len(members)), "gallery_only": label in rare, **_top(sweep.rank[members])}
        if label not in rare:
            scored = [classified[i] for i in members if i in classified]
            ranks = [int(np.sum(p > p[kept.index(label)])) for p in scored]
            entry |= {f"classifier_{key}": value for key, value in _top(np.array(ranks, int)).items()}
        per_condition[label] = entry
    kinds = {}
    for kind, chosen in (("frequent", [i for i, label in enumerate(dataset.labels) if label not in rare]),
                         ("rare", [i for i, label in enumerate(dataset.labels) if label in rare])):
        members = np.flatnonzero(np.isin(source.labels, chosen))
        kinds[kind] = {"conditions": len(chosen), **_top(sweep.rank[members])}
    abstained = [i for i, p in classified.items() if decide(p, thresholds)]
    found = int(np.sum(sweep.among_nearest[abstained])) if abstained else 0
    return {"evaluation": "leave-one-person-out" if source.persons is not None else
            "leave-one-photo-out (the dataset names no people: photos of one person may match each other)",
            "k": k, "per_condition": per_condition, **kinds,
            "abstained": {"n": len(abstained), "found": found,
                          "share": found / len(abstained) if abstained else None}}


def _top(ranks):
    """Return {"n", "top1", "top5"} of the ranks of true conditions (None where there are none)."""
    n = len(ranks)
    return {"n": int(n), "top1": float(np.mean(ranks < 1)) if n else None,
            "top5": float(np.mean(ranks < TOP)) if n else None}
