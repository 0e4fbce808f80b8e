"""Baselines every evaluation reports beside the model: the majority class, and HOG + linear SVM."""
import cv2
import numpy as np
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

HOG_SIZE = 128
# 16 px blocks of 2x2 cells of 8 px, 9 orientations: the classic Dalal-Triggs layout, 8100 values.
_HOG = cv2.HOGDescriptor((HOG_SIZE, HOG_SIZE), (16, 16), (8, 8), (8, 8), 9)


def hog_features(crops, aligner):
    """Return HOG descriptors of the faces, aligned on their landmarks as in the reference study."""
    rows = []
    for crop in crops:
        grey = cv2.cvtColor(aligner.align(np.ascontiguousarray(crop)), cv2.COLOR_RGB2GRAY)
        rows.append(_HOG.compute(cv2.resize(grey, (HOG_SIZE, HOG_SIZE), interpolation=cv2.INTER_AREA)).ravel())
    return np.stack(rows)


def baselines(seed):
    """Return {name: (classifier factory, which features it uses)}."""
    return {
        "majority": (lambda: DummyClassifier(strategy="most_frequent"), None),
        "hog-svm": (lambda: make_pipeline(StandardScaler(), LinearSVC(C=0.01, class_weight="balanced",
                                                                      random_state=seed, max_iter=20000)), "hog"),
    }
