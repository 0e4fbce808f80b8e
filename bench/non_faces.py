"""Pictures that are not faces, from packages and made in code: what the face gate must refuse.

scikit-image's photos and textures (a coffee cup, a cat, a rocket, bricks, grass, ...), crops of
the astronaut photo that hold no face, and synthetic checkerboards, stripes, gradients, noise
and blurred blobs at several sizes. The benchmark and the tests use the same gallery.
"""
import cv2
import numpy as np

PACKAGE_PICTURES = ("coffee", "chelsea", "rocket", "brick", "grass", "gravel", "text", "moon", "page",
                    "hubble_deep_field", "coins", "clock", "colorwheel", "immunohistochemistry", "logo", "retina",
                    "shepp_logan_phantom", "microaneurysms", "cell", "checkerboard")
SIZES = (48, 64, 128, 256, 512)


def as_rgb(picture):
    """Return any image array as contiguous uint8 RGB."""
    picture = np.asarray(picture)
    if picture.dtype != np.uint8:
        picture = (255 * (picture - picture.min()) / (np.ptp(picture) + 1e-9)).astype(np.uint8)
    if picture.ndim == 2:
        picture = np.stack([picture] * 3, axis=-1)
    return np.ascontiguousarray(picture[..., :3])


def package_pictures():
    """Return {name: RGB} of the non-face pictures scikit-image ships, and faceless crops of its astronaut."""
    import skimage.data

    gallery = {name: as_rgb(getattr(skimage.data, name)()) for name in PACKAGE_PICTURES}
    astronaut = skimage.data.astronaut()
    gallery.update({"astronaut-background": astronaut[0:150, 0:150], "astronaut-corner": astronaut[300:, 300:],
                    "astronaut-flag": astronaut[0:200, 300:], "astronaut-suit": astronaut[250:, 0:250]})
    return {name: np.ascontiguousarray(picture) for name, picture in gallery.items()}


def synthetic_pictures(sizes=SIZES, seed=0):
    """Return {name: RGB} of checkerboards, stripes, gradients, noise and blurred blobs at each size."""
    rng = np.random.default_rng(seed)
    gallery = {}
    for side in sizes:
        squares = (np.indices((side, side)).sum(axis=0) // max(4, side // 8)) % 2
        stripes = ((np.arange(side) // max(3, side // 16)) % 2)[np.newaxis].repeat(side, axis=0)
        gradient = np.zeros((side, side, 3), np.uint8)
        gradient[..., 0], gradient[..., 1] = np.linspace(0, 255, side)[np.newaxis], np.linspace(0, 255, side)[:, None]
        gradient[..., 2] = 128
        noise = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        gallery.update({f"checkerboard-{side}": as_rgb(squares * 255), f"stripes-{side}": as_rgb(stripes * 255),
                        f"gradient-{side}": gradient, f"noise-{side}": noise,
                        f"blobs-{side}": cv2.GaussianBlur(noise, (0, 0), side / 40)})
    return gallery


def non_faces():
    """Return the whole gallery: {name: RGB}."""
    return package_pictures() | synthetic_pictures()
