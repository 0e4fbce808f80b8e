"""A demo dataset of the workflow: two people told apart, from face photos that ship inside installed packages.

scikit-image ships a photo of the astronaut Eileen Collins, matplotlib one of Grace Hopper. Each
is varied (turned a little, scaled, shifted, lit differently, mirrored, re-compressed) into as
many photos as asked. The set shows import, training, a result and its map within minutes; it is
a demo of the workflow, not a clinical model, and its names say so.
"""
import math
from pathlib import Path

import cv2
import numpy as np

from ml.errors import FaceDxError

DEMO_DATASET = "demo-who-is-who"
PEOPLE = ("demo-eileen-collins", "demo-grace-hopper")
INTENDED_USE = ("DEMO of the FaceDx workflow: tells two well-known people apart (photos that ship with "
                "scikit-image and matplotlib). It is not a clinical model and says nothing about any condition.")


def shipped_faces():
    """Return {person: RGB array} of the face photos that scikit-image and matplotlib ship."""
    try:
        import matplotlib.cbook
        import skimage.data
    except ImportError:
        raise FaceDxError("The demo uses the face photos that ship with scikit-image and matplotlib: install them "
                          "with `.venv/bin/pip install -r requirements-test.txt` (or `make test` once).") from None
    hopper = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return {PEOPLE[0]: skimage.data.astronaut(), PEOPLE[1]: cv2.cvtColor(hopper, cv2.COLOR_BGR2RGB)}


def varied(photo, rng):
    """Return one variation of an RGB photo: turned up to 8 degrees, scaled 0.9-1.1, shifted, relit, maybe mirrored."""
    height, width = photo.shape[:2]
    turn, scale = rng.uniform(-8, 8), rng.uniform(0.9, 1.1)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), turn, scale)
    matrix[:, 2] += rng.uniform(-0.05, 0.05, 2) * (width, height)
    image = cv2.warpAffine(photo, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
    gain, lift = rng.uniform(0.75, 1.2), rng.uniform(-20, 20)
    image = np.clip(image.astype(np.float32) * gain + lift, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.2))
    return image


def write_demo_folder(folder, per_person=12, seed=0):
    """Write the demo set as one sub-folder of JPEGs per person under `folder`; return the folder."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    digits = max(2, math.ceil(math.log10(per_person + 1)))
    for person, photo in shipped_faces().items():
        (folder / person).mkdir(parents=True, exist_ok=True)
        for number in range(per_person):
            image = varied(photo, rng)
            quality = int(rng.integers(70, 96))
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
            assert ok
            (folder / person / f"{person}-{number:0{digits}d}.jpg").write_bytes(jpeg.tobytes())
    return folder


def try_photo(seed=1000):
    """Return a JPEG of one more variation of the first person, never in the dataset: a photo to try the model on."""
    photo = shipped_faces()[PEOPLE[0]]
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(varied(photo, np.random.default_rng(seed)), cv2.COLOR_RGB2BGR))
    assert ok
    return jpeg.tobytes()
