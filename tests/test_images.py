import io
import threading

import numpy as np
import pytest
from PIL import Image, ImageFile

from ml.errors import ImageError
from ml.photos import images
from ml.photos.images import decode_image, encode_png, resize
from tests.helpers import jpeg_bytes, png_bytes


def saved(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_png_round_trip():
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    decoded = decode_image(png_bytes(rgb))
    assert decoded.dtype == np.uint8 and decoded.shape == (20, 30, 3)
    assert np.array_equal(decoded, rgb)


def test_exif_orientation_is_applied():
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = (255, 0, 0)                        # left half red
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 6                                 # "rotate 90 degrees clockwise to display"
    decoded = decode_image(saved(image, "JPEG", exif=exif, quality=95))
    assert decoded.shape == (40, 20, 3)
    assert decoded[:20, :, 0].mean() > 200 and decoded[20:, :, 0].mean() < 50   # red now on top


@pytest.mark.parametrize("mode", ["CMYK", "L", "P", "LA", "RGBA", "1"])
def test_every_mode_becomes_rgb(mode):
    image = Image.fromarray(np.full((10, 12, 3), 128, np.uint8)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    decoded = decode_image(saved(image, fmt))
    assert decoded.shape == (10, 12, 3) and decoded.dtype == np.uint8


def test_transparency_becomes_white():
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert decode_image(saved(image, "PNG")).min() == 255


def test_sixteen_bit_image_is_scaled_to_eight_bits():
    pixels = np.full((6, 6), 65535, np.uint16)
    pixels[0, 0] = 0
    decoded = decode_image(saved(Image.fromarray(pixels), "PNG"))
    assert decoded.shape == (6, 6, 3)
    assert decoded[1, 1, 0] == 255 and decoded[0, 0, 0] == 0


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = saved(frames[0], "GIF", save_all=True, append_images=frames[1:])
    decoded = decode_image(data)
    assert decoded[..., 0].mean() > 200 and decoded[..., 2].mean() < 50


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"just some text, no picture", "not an image"),
    (jpeg_bytes(np.zeros((64, 64, 3), np.uint8))[:300], "damaged or truncated"),
    (png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))[:500],
     "damaged or truncated"),
])
def test_broken_input_raises_one_clear_error(data, message):
    with pytest.raises(ImageError, match=message):
        decode_image(data)


def test_decompression_bomb_is_refused_before_decoding():
    bomb = saved(Image.new("1", (12_000, 12_000)), "PNG")     # 144 M pixels in a few kB
    assert len(bomb) < 100_000
    with pytest.raises(ImageError, match="too large"):
        decode_image(bomb)
    with pytest.raises(ImageError, match="too large"):
        decode_image(png_bytes(np.zeros((50, 50, 3), np.uint8)), max_pixels=2_000)


def halves(width, height):
    """An image whose left half is red and right half blue."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[:, :width // 2] = (255, 0, 0)
    rgb[:, width // 2:] = (0, 0, 255)
    return Image.fromarray(rgb)


@pytest.mark.parametrize("fmt, mode", [("PNG", "RGB"), ("JPEG", "RGB"), ("PNG", "P"), ("PNG", "1"),
                                       ("TIFF", "I;16")])
def test_a_large_photo_is_shrunk_to_the_working_size(fmt, mode):
    decoded = decode_image(saved(halves(600, 200).convert(mode), fmt), max_side=150)
    assert decoded.shape == (50, 150, 3)
    if mode in ("RGB", "P"):                     # the colours are averaged, not picked or lost
        assert decoded[:, :70, 0].mean() > 200 and decoded[:, 80:, 2].mean() > 200


def test_an_upright_shrunk_photo_keeps_its_exif_orientation():
    image = halves(400, 200)
    exif = image.getexif()
    exif[0x0112] = 6                                 # "rotate 90 degrees clockwise to display"
    decoded = decode_image(saved(image, "JPEG", exif=exif, quality=95), max_side=100)
    assert decoded.shape == (100, 50, 3)
    assert decoded[:45, :, 0].mean() > 200 and decoded[55:, :, 2].mean() > 200     # red now on top


@pytest.fixture
def full_size_decodes(monkeypatch):
    """Record, for each image decoded, its size and whether it held a full-size decode slot (one slot)."""
    slot, seen = threading.BoundedSemaphore(1), set()
    monkeypatch.setattr(images, "FULL_SIZE_DECODES", slot)
    load = ImageFile.ImageFile.load

    def recording_load(image):
        held = not slot.acquire(blocking=False)
        if not held:
            slot.release()
        seen.add((image.size, held))
        return load(image)
    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    return seen


def test_a_jpeg_is_decoded_at_a_reduced_scale_without_a_full_size_slot(full_size_decodes):
    decoded = decode_image(saved(halves(1600, 1200), "JPEG"), max_side=200)
    assert decoded.shape == (150, 200, 3)
    assert full_size_decodes == {((200, 150), False)}         # the decoder itself gave 1/8 of the pixels


def test_a_png_over_the_working_size_is_decoded_only_in_a_full_size_slot(full_size_decodes):
    decode_image(saved(halves(1600, 1200), "PNG"), max_side=200)
    decode_image(saved(halves(100, 50), "PNG"), max_side=200)
    assert full_size_decodes == {((1600, 1200), True), ((100, 50), False)}


def test_encode_png_drops_metadata():
    image = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    exif = image.getexif()
    exif[0x010F] = "Camera maker"
    decoded = decode_image(saved(image, "JPEG", exif=exif))
    assert "exif" not in Image.open(io.BytesIO(encode_png(decoded))).info


def test_resize_gives_a_square_of_the_asked_size():
    assert resize(np.zeros((100, 100, 3), np.uint8), 32).shape == (32, 32, 3)
    assert resize(np.zeros((16, 16, 3), np.uint8), 32).shape == (32, 32, 3)
