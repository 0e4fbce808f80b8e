"""The share of a training run done: planned, measured as the run goes, and flat for no long stretch of a real run."""
import time

import numpy as np
import pytest

from ml.datasets import import_dataset
from ml.learning.options import TrainingOptions
from ml.learning.run_plan import RunPlan, within_phase
from ml.learning.training import train
from ml.progress import Progress
from ml.versions.registry import ModelRegistry
from tests.helpers import SYNTHETIC_FACES, synthetic_entries, write_zip


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_phase_slower_than_planned_still_moves_the_share_at_every_step_and_it_ends_at_one():
    clock = Clock()
    plan = RunPlan({"starting": 1.0, "loading": 1.0, "features": 10.0, "cross-validation": 1.0,
                    "nested selection": 5.0, "evaluating": 0.5, "final head": 0.5, "saving": 1.0, "saved": 0.0},
                   clock)
    steps = ([Progress("starting"), Progress("loading")]
             + [Progress("features", part=0, parts=1, done=done, total=20) for done in range(0, 21)]
             + [Progress("cross-validation", fold=1 + n // 8, folds=5, done=n, total=40) for n in range(1, 41)]
             + [Progress("nested selection", fold=1 + n // 10, folds=5, done=n, total=50) for n in range(1, 51)]
             + [Progress("evaluating")] + [Progress("final head", done=n, total=3) for n in (1, 2, 3)]
             + [Progress("saving", done=n, total=4) for n in range(1, 5)] + [Progress("saved")])
    fractions, nested_planned = [], None
    for step in steps:
        clock.now += 3.0 if step.phase == "cross-validation" else 0.2     # cross-validation: 120 s, not 1 s
        if step.phase == "nested selection" and nested_planned is None:
            nested_planned = plan.costs["nested selection"]
        fractions.append(plan.advance(step))
    assert fractions[0] == 0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    # Every step moves it, but one that starts a phase without counting anything yet.
    assert [step.phase for step, before, after in zip(steps[1:], fractions, fractions[1:]) if after <= before] == [
        "evaluating"]
    # Cross-validation's cost was measured as it ran; nested selection (the same fits) was planned alike.
    assert plan.costs["cross-validation"] == pytest.approx(120, rel=0.05)
    assert nested_planned == pytest.approx(5.0 * 120, rel=0.05)
    assert plan.costs["nested selection"] == pytest.approx(50 * 0.2, rel=0.05)


def test_a_fine_tuning_run_and_a_step_outside_the_plan():
    clock = Clock()
    options = TrainingOptions(backbone="vgg16-imagenet", head="softmax", epochs=3, fine_tune_epochs=2)
    plan = RunPlan.for_run(options, np.array([0, 1] * 10), None, ["vgg16-imagenet"], [], {"vgg16-imagenet": 224},
                           clock)
    assert list(plan.costs) == ["starting", "loading", "features", "head", "fine-tune", "evaluating", "saving",
                                "saved"]
    steps = ([Progress("starting"), Progress("loading")]
             + [Progress("features", part=part, parts=2, done=done, total=10) for part in (0, 1) for done in (0, 5, 10)]
             + [Progress("head", epoch=n, epochs=3) for n in (1, 2, 3)]
             + [Progress("fine-tune", epoch=n, epochs=2) for n in (1, 2)]
             + [Progress("cross-validation", fold=1, folds=3)]                     # not a phase of this run
             + [Progress("evaluating"), Progress("saving"), Progress("saved")])
    fractions = []
    for step in steps:
        clock.now += 1.0
        fractions.append(plan.advance(step))
    assert fractions == sorted(fractions) and fractions[0] == 0 and fractions[-1] == 1.0
    assert within_phase(Progress("cross-validation", fold=2, folds=4, fold_epoch=5, fold_epochs=10)) == 0.375


def test_the_share_of_a_real_training_run_is_never_flat_for_more_than_a_tenth_of_it(tmp_path):
    """The default run an administrator starts (auto: nested selection among the face pipelines on 5 folds)."""
    archive = write_zip(tmp_path / "faces.zip", synthetic_entries(per_class=16))
    dataset = import_dataset(archive, "faces", tmp_path / "datasets", face=SYNTHETIC_FACES)
    seen = []
    started = time.monotonic()
    train(dataset, TrainingOptions(), ModelRegistry(tmp_path / "models"),
          progress=lambda step: seen.append((time.monotonic(), step.fraction, step.phase)))
    ended = time.monotonic()
    run = ended - started
    assert "nested selection" in {phase for _, _, phase in seen} and seen[-1][1:] == (1.0, "saved")
    changes, last = [started], 0.0
    for moment, fraction, _ in seen:
        if fraction > last:
            changes.append(moment)
            last = fraction
    flat = [(later - earlier, earlier - started) for earlier, later in zip(changes, changes[1:] + [ended])]
    longest, at = max(flat)
    assert longest <= run / 10, f"flat for {longest:.1f} s of a {run:.1f} s run, from {at:.1f} s: {seen}"
    fractions = [fraction for _, fraction, _ in seen]
    assert fractions == sorted(fractions)
