"""Decode untrusted image bytes into a plain RGB array, safely."""
import io
import threading
import warnings
from contextlib import nullcontext

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ml.errors import ImageError, UnsupportedImage

DEFAULT_MAX_PIXELS = 40_000_000
# Photos are analysed at most this size on their longer side. Faces are searched at 1,024 px
# (ml.photos.faces.DETECTION_MAX_SIDE), and a face an eighth of the longer side still gives its
# 256 px crop from real pixels; more pixels only cost memory and time.
MAX_SIDE = 2048
# A photo decoded at more than MAX_SIDE x MAX_SIDE pixels holds one to three full-size copies
# (up to 120 MB each at 40 megapixels) for a second or more: so many at once in one process,
# the others wait (bench/large_photos.py: sixteen at once peaked at 5.6 GB before, 2.6 GB after).
FULL_SIZE_DECODES = threading.BoundedSemaphore(2)


def decode_image(data, max_pixels=DEFAULT_MAX_PIXELS, max_side=MAX_SIDE):
    """Return the photo in `data` (bytes) as an RGB uint8 array, upright, without metadata, at most `max_side`.

    A larger photo is shrunk (area averaging) as it is decoded: JPEG at a reduced scale by the
    decoder itself, other formats right after decoding. Raises ImageError with a human message
    for anything that is not a readable, reasonably sized image.
    """
    if not data:
        raise ImageError("The file is empty.")
    with warnings.catch_warnings():
        # Pillow warns before it refuses; both mean "too many pixels" to us.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"The image is too large ({width}x{height} pixels; "
                    f"the limit is {max_pixels:,} pixels).")
            if _fitted(image.size, max_side) != image.size:
                image.draft(None, _fitted(image.size, max_side))     # JPEG: decode at 1/2, 1/4 or 1/8
            width, height = image.size
            with FULL_SIZE_DECODES if width * height > max_side ** 2 else nullcontext():
                image.load()
                ImageOps.exif_transpose(image, in_place=True)
                image = _shrunk(image, max_side)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError("The image is too large to decode safely.") from None
        except UnidentifiedImageError:
            raise UnsupportedImage("The file is not an image in a supported format "
                             "(JPEG, PNG, BMP, GIF, TIFF or WebP).") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"The image is damaged or truncated ({exc}).") from None
    return _to_rgb(image)


def _fitted(size, max_side):
    """Return (width, height) shrunk to fit `max_side`, keeping the aspect; unchanged when it fits."""
    width, height = size
    scale = max_side / max(width, height)
    if scale >= 1:
        return size
    return max(1, round(width * scale)), max(1, round(height * scale))


def _shrunk(image, max_side):
    """Return a Pillow image area-averaged down to fit `max_side` (the same image when it fits)."""
    size = _fitted(image.size, max_side)
    if size == image.size:
        return image
    # Pillow shrinks bilevel and palette images by picking pixels, not averaging them.
    if image.mode == "1":
        image = image.convert("L")
    elif image.mode in ("P", "PA"):
        image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
    return image.resize(size, Image.Resampling.BOX)


def _to_rgb(image):
    """Convert any Pillow mode to 8-bit RGB; transparency becomes white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        if not np.isfinite(pixels).all():
            raise ImageError("The image holds pixels that are not numbers (NaN or infinite values); "
                             "it is not a photo.")
        top = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        grey = np.clip(pixels / top * 255.0, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.stack([grey] * 3, axis=-1))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def encode_png(rgb):
    """Encode an RGB uint8 array as PNG bytes (lossless, no metadata).

    Compression level 1: on a 256 px face crop, 8 ms and 8% more bytes than the default level 6's 31 ms.
    """
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def resize(rgb, size):
    """Resize an RGB array to size x size with area averaging (good for shrinking)."""

    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    grow = size > min(rgb.shape[0], rgb.shape[1])
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_CUBIC if grow else cv2.INTER_AREA)
