import numpy as np
import pytest

from ml.learning.options import TrainingOptions
from ml.learning.pipelines import Candidate, LinearModel, block_scaling, candidates_for, choose, row_space


def signal_and_noise(n=80, seed=0, shuffle=False):
    """Two blocks: 'signal' carries the label in 5 of 40 columns, 'noise' is 400 columns of noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    signal = rng.normal(size=(n, 40))
    signal[:, :5] += 1.5 * labels[:, None]
    noise = rng.normal(size=(n, 400))
    if shuffle:
        labels = rng.permutation(labels)
    return {"signal": signal, "noise": noise}, labels


CANDIDATES = [c for name in ("signal", "noise", "signal+noise") for c in candidates_for(name)]


def test_auto_picks_the_informative_block_and_claims_its_nested_score():
    features, labels = signal_and_noise()
    choice = choose(features, labels, None, CANDIDATES, TrainingOptions(folds=5), baseline=None)
    assert choice.winner.blocks == ("signal",)
    assert all("signal" in chosen.split("+") for chosen in choice.chosen_per_fold)
    assert np.mean(choice.outer_accuracies) > 0.85
    rows = {row["pipeline"]: row for row in choice.candidates}
    assert rows["signal"]["chosen"] and rows["noise"]["accuracy"] < 0.7
    assert choice.candidates[0]["pipeline"] == "signal"           # best first


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_choosing_among_candidates_does_not_inflate_a_chance_dataset(seed):
    features, labels = signal_and_noise(seed=seed, shuffle=True)
    choice = choose(features, labels, None, CANDIDATES, TrainingOptions(folds=5), baseline=None)
    # The best candidate's own CV score is optimistic after picking among 15; the nested one is not.
    assert abs(np.mean(choice.outer_accuracies) - 0.5) < 0.15


def test_blocks_get_equal_total_variance_whatever_their_size():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 5, (50, 10)), rng.normal(3, 0.1, (50, 1000))], axis=1)
    mean, scale = block_scaling(x, [10, 1000])
    z = (x - mean) / scale
    assert z[:, :10].var(axis=0).sum() == pytest.approx(1.0)
    assert z[:, 10:].var(axis=0).sum() == pytest.approx(1.0)


def test_fitting_in_the_row_space_gives_the_same_model():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(30, 200)), rng.integers(0, 3, 30)
    full = LogisticRegression(C=0.5, max_iter=10000, tol=1e-10).fit(x, labels)
    basis, z = row_space(x)
    small = LogisticRegression(C=0.5, max_iter=10000, tol=1e-10).fit(z, labels)
    np.testing.assert_allclose(small.coef_ @ basis.T, full.coef_, atol=1e-4)
    np.testing.assert_allclose(small.predict_proba(x @ basis), full.predict_proba(x), atol=1e-5)


@pytest.mark.parametrize("head", ["linear", "svm"])
def test_a_linear_model_round_trips_through_its_arrays(head):
    features, labels = signal_and_noise()
    config = Candidate(("signal",), head, 1.0)
    model = LinearModel.fit(features["signal"], labels, [40], config, n_classes=3)
    again = LinearModel.from_arrays({k: np.asarray(v) for k, v in model.arrays().items()})
    probabilities = again.probabilities(features["signal"])
    np.testing.assert_allclose(probabilities, model.probabilities(features["signal"]))
    assert probabilities.shape == (80, 3) and np.all(probabilities[:, 2] == 0)      # class 2 never seen
    assert np.mean(probabilities.argmax(axis=1) == labels) > 0.85


def test_choosing_reports_each_fold_and_every_candidate_as_they_are_scored():
    features, labels = signal_and_noise()
    features["hog"] = features["noise"]               # the classical baseline's block
    events = []
    choose(features, labels, None, CANDIDATES, TrainingOptions(folds=4), events.append)
    scored = [step for step in events if step.candidates is not None]
    assert [step.fold for step in scored] == [1, 2, 3, 4] and scored[0].phase == "cross-validation"
    assert {row["pipeline"] for row in scored[-1].candidates} == {"signal", "noise", "signal+noise"}
    folds = [step for step in events if step.fold_accuracies is not None]
    assert [len(step.fold_accuracies) for step in folds] == [1, 2, 3, 4]
    assert all(step.phase == "nested selection" for step in folds)
    assert set(folds[-1].baselines) == {"majority", "hog-svm"} and folds[-1].baselines["majority"] == 0.5
    assert np.mean(folds[-1].fold_accuracies) > 0.85


@pytest.mark.parametrize("n_classes,head", [(2, "linear"), (3, "linear"), (3, "svm")])
def test_the_direction_is_the_gradient_of_the_class_log_probability(n_classes, head):
    rng = np.random.default_rng(n_classes)
    x = rng.normal(size=(30, 6)) * [1, 2, 3, 4, 5, 6] + 10
    labels = np.arange(30) % n_classes
    model = LinearModel.fit(x, labels, [2, 4], Candidate(("a", "b"), head, 1.0), n_classes)
    point, step = x[0], 1e-5
    for class_index in range(n_classes):
        numeric = [(np.log(model.probabilities((point + step * np.eye(6)[i])[None])[0, class_index])
                    - np.log(model.probabilities((point - step * np.eye(6)[i])[None])[0, class_index])) / (2 * step)
                   for i in range(6)]
        np.testing.assert_allclose(model.direction(point, class_index), numeric, rtol=1e-4, atol=1e-7)
    assert not model.direction(point, n_classes).any()          # a class absent from training: no direction


@pytest.mark.parametrize("C", [0.01, 1.0, 1000.0])
def test_many_classes_are_fitted_by_lbfgs_to_the_optimum_newton_reaches(C):
    """The same model: L-BFGS's penalised loss is within 0.1% of the optimum (Newton to 1e-10)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.utils.class_weight import compute_sample_weight

    from ml.learning.pipelines import make_estimator

    rng = np.random.default_rng(7)
    labels = np.arange(70) % 5
    x = rng.normal(size=(70, 40)) + labels[:, None] * 0.3
    weights = compute_sample_weight("balanced", labels)

    def penalised_loss(model):
        picked = model.predict_proba(x)[np.arange(len(labels)), labels]
        return C * np.sum(-weights * np.log(picked)) + 0.5 * np.sum(model.coef_ ** 2)
    fast = make_estimator(Candidate(("a",), "linear", C), 0, labels).fit(x, labels)
    optimum = LogisticRegression(C=C, class_weight="balanced", max_iter=5000, solver="newton-cholesky",
                                 tol=1e-10).fit(x, labels)
    assert fast.solver == "lbfgs" and make_estimator(Candidate(("a",), "linear", C), 0, labels % 2).solver != "lbfgs"
    assert penalised_loss(fast) == pytest.approx(penalised_loss(optimum), rel=1e-3)
