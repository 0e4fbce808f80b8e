import numpy as np
from sklearn.model_selection import KFold

from ml.novelty import Novelty

BLOCKS = [20, 500]


def photos(n, seed, mixing=np.random.default_rng(0).normal(size=(5, sum(BLOCKS)))):
    """Features of n photos of one kind: two blocks varying along a few shared directions."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 5)) @ mixing + 0.1 * rng.normal(size=(n, sum(BLOCKS)))


def test_held_out_photos_rarely_pass_the_threshold_and_strangers_do():
    train = photos(200, seed=1)
    novelty = Novelty.fit_with_threshold(train, BLOCKS, list(KFold(5, shuffle=True, random_state=0).split(train)))
    assert novelty.unusual(photos(300, seed=2)).mean() <= 0.03          # new photos of the same kind
    rng = np.random.default_rng(3)
    strangers = rng.normal(size=(50, sum(BLOCKS))) * train.std(axis=0) + train.mean(axis=0)
    assert novelty.unusual(strangers).all()                             # same spread, none of the structure
    assert novelty.unusual((train.mean(axis=0) + 20 * train.std(axis=0))[np.newaxis]).all()


def test_the_score_survives_saving_and_a_version_without_one_has_none(tmp_path):
    train = photos(80, seed=4)
    novelty = Novelty.fit(train, BLOCKS)
    novelty.threshold = 3.5
    assert novelty.save(tmp_path) == ["novelty.npz"]
    again = Novelty.load(tmp_path)
    np.testing.assert_allclose(again.scores(train[:5]), novelty.scores(train[:5]))
    assert again.threshold == 3.5 and Novelty.load(tmp_path / "elsewhere") is None
