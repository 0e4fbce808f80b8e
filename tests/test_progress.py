import pytest

from ml.progress import Pace, Progress


def test_pace_gives_no_estimate_until_it_is_steady_and_leaves_out_a_photo_that_waited():
    now = [100.0]
    pace = Pace(clock=lambda: now[0])
    assert pace.progress("import", 0, 400).as_dict() == {"phase": "import", "fraction": 0.0, "done": 0, "total": 400,
                                                         "step": "importing photos: photo 0 of 400"}
    now[0] += 0.3
    steps = [pace.progress("import", 1, 400)]
    now[0] += 20.0                              # the second photo waited 20 s (a network loading, a busy machine)
    steps.append(pace.progress("import", 2, 400))
    for done in range(3, 41):
        now[0] += 0.3
        steps.append(pace.progress("import", done, 400))
    shown = [step for step in steps if step.seconds_left is not None]
    assert all(step.rate is None for step in steps if step.seconds_left is None)
    # Eight photos timed, then three estimates that agree: the first is shown at photo 11, never one of hours.
    assert shown[0].done == 11 and all(step.done >= 11 for step in shown)
    assert shown[0].rate == pytest.approx(1 / 0.3) and shown[0].seconds_left == pytest.approx(389 * 0.3)
    assert shown[0].words == "importing photos: photo 11 of 400 · 3.3 photos a second · about 2 min left"
    assert max(step.seconds_left for step in shown) < 120


def test_pace_follows_work_that_became_slower_and_says_nothing_while_it_changes():
    now = [0.0]
    pace = Pace(clock=lambda: now[0])
    steps = []
    for done in range(1, 61):
        now[0] += 0.1 if done < 15 else 1.0             # from the 15th photo on, each takes ten times longer
        steps.append(pace.progress("import", done, 100))
    assert steps[13].seconds_left == pytest.approx(86 * 0.1)
    assert any(step.seconds_left is None for step in steps[15:30])          # withheld while it changes
    assert steps[-1].seconds_left == pytest.approx(40 * 1.0)                 # the window holds slow photos only


def test_an_epoch_is_a_point_of_a_curve_with_its_metrics_beside_the_counts():
    epoch = Progress("head", 0.9, epoch=2, epochs=30, metrics={"loss": 0.5, "val_accuracy": 0.75})
    assert epoch.curve_point and epoch.as_dict() == {"phase": "head", "fraction": 0.9, "epoch": 2, "epochs": 30,
                                                     "loss": 0.5, "val_accuracy": 0.75,
                                                     "step": "training the head: epoch 2 of 30"}
    inside_a_fold = Progress("cross-validation", 0.6, fold=1, folds=5, fold_epoch=3, fold_epochs=30)
    assert not inside_a_fold.curve_point and inside_a_fold.fold_epoch == 3
    assert inside_a_fold.words == "cross-validation: fold 1 of 5, epoch 3 of 30"


def test_every_step_is_put_into_words_in_one_place_for_pages_api_and_command_line():
    import pytest

    from ml.progress import PHASES

    assert Progress("starting").words == "loading the face networks"
    assert Progress("loading").words == "loading the photos"
    counted = Progress("features", done=1200, total=2000, rate=40.0, seconds_left=20)
    assert counted.words == "computing features: photo 1,200 of 2,000 · 40.0 photos a second · about 20 s left"
    assert Progress("nested selection", fold=2, folds=5).as_dict()["step"] == \
        "choosing the pipeline inside each fold: fold 2 of 5"
    assert list(PHASES)[:4] == ["starting", "import", "loading", "features"]   # in the order a run goes through them
    with pytest.raises(ValueError, match="unknown phase"):
        Progress("warming up")
