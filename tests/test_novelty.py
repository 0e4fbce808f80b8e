import numpy as np
from sklearn.model_selection import KFold

from ml.learning.novelty import MIN_MEMBERS, FaceNovelty, Novelty

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


def population(n, seed, centre):
    """Face descriptors of one population: groups of similar faces around `centre`, 128 values each."""
    rng = np.random.default_rng(seed)
    groups = centre + 0.3 * np.random.default_rng(7).normal(size=(6, 128)) / np.sqrt(128)
    return groups[rng.integers(0, 6, n)] + 0.05 * rng.normal(size=(n, 128))


CHILDREN = np.zeros(128)
ADULTS = np.full(128, 0.06)           # another population: as far from the children as their groups are apart


def test_the_fused_score_misses_another_population_and_the_descriptor_score_sees_it():
    blocks, sizes = ["dlib-face", "hog"], [128, 40]
    children = np.hstack([population(200, 1, CHILDREN), photos_of_texture(200, 1)])
    adults = np.hstack([population(100, 2, ADULTS), photos_of_texture(100, 2)])
    folds = list(KFold(5, shuffle=True, random_state=0).split(children))
    novelty = Novelty.fit_with_threshold(children, sizes, folds, blocks)
    new_children = np.hstack([population(300, 3, CHILDREN), photos_of_texture(300, 3)])
    assert novelty.unusual(adults).mean() <= 0.1                        # they share the children's directions
    assert novelty.unlike_faces(new_children).mean() <= 0.06 and novelty.unlike_faces(adults).mean() >= 0.9
    assert novelty.card_entry().keys() == {"threshold", "face_threshold"}
    without = Novelty.fit_with_threshold(children, sizes, folds, ["hog", "lbp"])
    assert without.face is None and not without.unlike_faces(adults).any()


def photos_of_texture(n, seed):
    return np.random.default_rng(100 + seed).normal(size=(n, 40))


def test_the_descriptor_score_keeps_group_centroids_never_a_photo_and_survives_saving(tmp_path):
    faces = np.hstack([np.random.default_rng(9).normal(size=(61, 5)), population(61, 4, CHILDREN)])
    novelty = FaceNovelty.fit_with_threshold(faces, (5, 133), list(KFold(3, shuffle=True, random_state=0).split(faces)))
    assert len(novelty.centroids) <= 61 // MIN_MEMBERS and novelty.centroids.shape[1] == 128
    nearest = np.sqrt(((faces[:, np.newaxis, 5:] - novelty.centroids[np.newaxis]) ** 2).sum(axis=-1)).min(axis=0)
    assert nearest.min() > 1e-6                                         # no centroid is one photo's descriptor
    fused = Novelty.fit(faces, [5, 128])
    fused.face = novelty
    fused.save(tmp_path)
    again = Novelty.load(tmp_path)
    np.testing.assert_allclose(again.face.distances(faces), novelty.distances(faces))
    assert again.face.threshold == novelty.threshold and again.face.columns == (5, 133)
