from ml.progress import Pace, Progress


def test_pace_gives_the_rate_and_the_time_left_from_the_first_item_done():
    now = [100.0]
    pace = Pace(clock=lambda: now[0])
    assert pace.progress("import", 0, 10).as_dict() == {"phase": "import", "fraction": 0.0, "done": 0, "total": 10,
                                                        "step": "importing photos: photo 0 of 10"}
    now[0] = 120.0                                            # the first photo waited for the networks to load
    first = pace.progress("import", 1, 10)
    assert first.rate is None and first.seconds_left is None  # no estimate from start-up alone
    now[0] = 123.5
    step = pace.progress("import", 8, 10)
    assert (step.fraction, step.rate, step.seconds_left) == (0.8, 2.0, 1.0)


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

    assert Progress("loading").words == "loading the photos and the face networks"
    counted = Progress("features", done=1200, total=2000, rate=40.0, seconds_left=20)
    assert counted.words == "computing features: photo 1,200 of 2,000 · 40.0 photos a second · about 20 s left"
    assert Progress("nested selection", fold=2, folds=5).as_dict()["step"] == \
        "choosing the pipeline inside each fold: fold 2 of 5"
    assert list(PHASES)[:3] == ["import", "loading", "features"]        # in the order a run goes through them
    with pytest.raises(ValueError, match="unknown phase"):
        Progress("warming up")
