"""Decode untrusted image bytes into a plain RGB array, safely."""
import io
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ml.errors import ImageError, UnsupportedImage

DEFAULT_MAX_PIXELS = 40_000_000


def decode_image(data, max_pixels=DEFAULT_MAX_PIXELS):
    """Return the photo in `data` (bytes) as an RGB uint8 array, upright, without metadata.

    Raises ImageError with a human message for anything that is not a readable,
    reasonably sized image.
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
            image.load()
            image = ImageOps.exif_transpose(image)
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
    """Encode an RGB uint8 array as PNG bytes (lossless, no metadata)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def resize(rgb, size):
    """Resize an RGB array to size x size with area averaging (good for shrinking)."""

    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    grow = size > min(rgb.shape[0], rgb.shape[1])
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_CUBIC if grow else cv2.INTER_AREA)
