"""The feature cache: every image's vector per block, kept as one .npy file per image and block.

Files are named by the image's digest, in a folder per block's cache id (blocks whose features
must not be cached have none), and written atomically.
"""
import math

import numpy as np

from ml.features.extractor import FaceFeatures
from ml.progress import Progress

CHUNK = 16              # photos computed in one batch ...
MIN_STEPS = 20          # ... or fewer, so that a source of features reports at least this many steps


def block_features(blocks, extractors, crops, digests, cache_root, report):
    """Return {block: [n, size] features}, reusing vectors cached per image and block.

    `extractors` holds the networks built already (the VGG16 backbones), by block. The other
    blocks are face blocks, which share one alignment per photo: a photo missing from any face
    block's cache is aligned once and all face blocks are computed for it.
    """
    face_blocks = [name for name in blocks if name not in extractors]
    sources = [(FaceFeatures(face_blocks), face_blocks)] if face_blocks else []
    sources += [(extractors[name], [name]) for name in blocks if name in extractors]
    found = {}
    for part, (extractor, names) in enumerate(sources):
        step = Progress("features", part=part, parts=len(sources))              # one pass per source
        caches = [cache_root / cache_id if cache_id else None for cache_id in extractor.cache_ids]
        vectors = [_read_cache(cache, digests) for cache in caches]
        missing = [i for i, digest in enumerate(digests) if any(digest not in v for v in vectors)]
        total, done = len(digests), len(digests) - len(missing)
        report(step.replace(done=done, total=total))
        size = batch_size(len(missing))
        for start in range(0, len(missing), size):
            chunk = missing[start:start + size]
            for cache, stored, computed in zip(caches, vectors, extractor.block_features(crops[chunk])):
                for i, vector in zip(chunk, computed):
                    stored[digests[i]] = vector
                    if cache is not None:
                        _save_atomically(cache / f"{digests[i]}.npy", vector)
            report(step.replace(done=done + start + len(chunk), total=total))
        for name, stored in zip(names, vectors):
            found[name] = np.stack([stored[digest] for digest in digests]).astype(np.float64)
    return found


def uncached(extractor, digests, cache_root):
    """Return how many photos (by digest) lack the features of some block of `extractor` in the cache."""
    caches = [cache_root / cache_id if cache_id else None for cache_id in extractor.cache_ids]
    return sum(any(cache is None or not (cache / f"{digest}.npy").is_file() for cache in caches) for digest in digests)


def batch_size(missing):
    """Return how many photos are computed in one batch when `missing` are: CHUNK, or fewer to make MIN_STEPS steps."""
    return min(CHUNK, max(1, math.ceil(missing / MIN_STEPS)))


def _read_cache(cache, digests):
    if cache is None:
        return {}
    cache.mkdir(parents=True, exist_ok=True)
    return {digest: np.load(cache / f"{digest}.npy") for digest in set(digests) if (cache / f"{digest}.npy").is_file()}


def _save_atomically(path, array):
    staging = path.with_suffix(".tmp.npy")
    np.save(staging, array)
    staging.replace(path)

