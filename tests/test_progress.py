from ml.progress import Pace, Progress


def test_pace_gives_the_rate_and_the_time_left_from_the_first_item_done():
    now = [100.0]
    pace = Pace(clock=lambda: now[0])
    assert pace.progress("import", 0, 10).as_dict() == {"phase": "import", "fraction": 0.0, "done": 0, "total": 10}
    now[0] = 120.0                                            # the first photo waited for the networks to load
    first = pace.progress("import", 1, 10)
    assert first.rate is None and first.seconds_left is None  # no estimate from start-up alone
    now[0] = 123.5
    step = pace.progress("import", 8, 10)
    assert (step.fraction, step.rate, step.seconds_left) == (0.8, 2.0, 1.0)


def test_an_epoch_is_a_point_of_a_curve_with_its_metrics_beside_the_counts():
    epoch = Progress.of({"phase": "head", "epoch": 2, "epochs": 30, "loss": 0.5, "val_accuracy": 0.75}, 0.9)
    assert epoch.curve_point and epoch.as_dict() == {"phase": "head", "fraction": 0.9, "epoch": 2, "epochs": 30,
                                                     "loss": 0.5, "val_accuracy": 0.75}
    inside_a_fold = Progress.of({"phase": "cross-validation", "fold": 1, "folds": 5, "fold_epoch": 3,
                                 "fold_epochs": 30}, 0.6)
    assert not inside_a_fold.curve_point and inside_a_fold.fold_epoch == 3
