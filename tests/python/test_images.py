"""images.py: decoding by content, orientation, colour modes, broken files, listing and hashing.

Every image is made with PIL in tmp_path; nothing binary is committed.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tensorguess.data.images import (
    Skipped,
    UnreadableImage,
    content_hash,
    decode_bytes,
    list_files,
    read_image,
    sniff_format,
)

HEIGHT, WIDTH = 48, 64


def gradient(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A smooth RGB picture (JPEG keeps it within a few levels), different in every channel."""
    y, x = np.mgrid[0:height, 0:width]
    red = x * 255 // (width - 1)
    green = y * 255 // (height - 1)
    blue = 255 - (x + y) * 255 // (width + height - 2)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def assert_rgb(array: np.ndarray, height: int = HEIGHT, width: int = WIDTH) -> None:
    assert isinstance(array, np.ndarray)
    assert array.dtype == np.uint8
    assert array.shape == (height, width, 3)


# --- formats, identified by content whatever the file is called -------------------------------------

PICTURE = gradient()


def lossless(fmt: str) -> bytes:
    image = Image.fromarray(PICTURE)
    if fmt == "GIF":
        # A GIF holds at most 256 colours: quantise first and compare with the quantised picture.
        return encode(image.quantize(256), "GIF")
    if fmt == "WEBP":
        return encode(image, "WEBP", lossless=True)
    return encode(image, fmt)


def expected_pixels(fmt: str) -> np.ndarray:
    if fmt == "GIF":
        return np.asarray(Image.fromarray(PICTURE).quantize(256).convert("RGB"))
    return PICTURE


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "WEBP"])
@pytest.mark.parametrize("name", ["picture.{ext}", "picture.jpg", "picture.txt", "picture"])
def test_lossless_formats_decode_exactly_whatever_the_name(tmp_path, fmt, name):
    data = lossless(fmt)
    path = write(tmp_path, name.format(ext=fmt.lower()), data)
    pixels = read_image(path)
    assert_rgb(pixels)
    np.testing.assert_array_equal(pixels, expected_pixels(fmt))
    np.testing.assert_array_equal(decode_bytes(data), pixels)


@pytest.mark.parametrize("name", ["photo.jpg", "photo.png", "photo", "photo.JPEG.gif"])
def test_jpeg_decodes_whatever_the_name(tmp_path, name):
    path = write(tmp_path, name, encode(Image.fromarray(PICTURE), "JPEG", quality=95))
    pixels = read_image(path)
    assert_rgb(pixels)
    assert np.abs(pixels.astype(int) - PICTURE.astype(int)).mean() < 2.0


def test_png_named_jpg_is_read_as_png(tmp_path):
    path = write(tmp_path, "holiday.jpg", encode(Image.fromarray(PICTURE), "PNG"))
    assert sniff_format(path.read_bytes()[:16]) == "PNG"
    np.testing.assert_array_equal(read_image(path), PICTURE)


@pytest.mark.parametrize(
    "fmt, expected",
    [("JPEG", "JPEG"), ("PNG", "PNG"), ("GIF", "GIF"), ("BMP", "BMP"), ("WEBP", "WEBP")],
)
def test_sniff_format(fmt, expected):
    assert sniff_format(encode(Image.fromarray(PICTURE), fmt)[:16]) == expected


def test_animated_gif_gives_its_first_frame(tmp_path):
    colours = [(200, 30, 40), (20, 210, 60), (10, 20, 230)]
    frames = [Image.new("RGB", (WIDTH, HEIGHT), colour) for colour in colours]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(buffer.getvalue())).n_frames == 3
    pixels = read_image(write(tmp_path, "animation", buffer.getvalue()))
    assert_rgb(pixels)
    assert (pixels == np.array(colours[0], np.uint8)).all()


def test_animated_webp_gives_its_first_frame(tmp_path):
    colours = [(200, 30, 40), (20, 210, 60)]
    frames = [Image.new("RGB", (WIDTH, HEIGHT), colour) for colour in colours]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    pixels = read_image(write(tmp_path, "animation.webp", buffer.getvalue()))
    assert_rgb(pixels)
    assert (pixels == np.array(colours[0], np.uint8)).all()


# --- EXIF orientation -------------------------------------------------------------------------------

def marked_picture() -> np.ndarray:
    """Blue everywhere, a red block in the stored top-left corner."""
    pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    pixels[...] = (0, 0, 255)
    pixels[:12, :12] = (255, 0, 0)
    return pixels


def with_orientation(fmt: str, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = Image.fromarray(marked_picture())
    options = {"quality": 95} if fmt == "JPEG" else {}
    return encode(image, fmt, exif=exif.tobytes(), **options)


def red_corner(pixels: np.ndarray) -> str:
    corners = {
        "top-left": pixels[:6, :6],
        "top-right": pixels[:6, -6:],
        "bottom-left": pixels[-6:, :6],
        "bottom-right": pixels[-6:, -6:],
    }
    red = [name for name, block in corners.items()
           if (block[..., 0] > 200).all() and (block[..., 2] < 60).all()]
    assert len(red) == 1, f"expected one red corner, found {red}"
    return red[0]


@pytest.mark.parametrize(
    "orientation, corner, rotate_k",
    [
        (1, "top-left", 0),
        (3, "bottom-right", 2),
        (6, "top-right", -1),  # stored sideways: turn 90 degrees clockwise to view
        (8, "bottom-left", 1),  # turn 90 degrees anticlockwise to view
    ],
)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_is_applied(tmp_path, fmt, orientation, corner, rotate_k):
    data = with_orientation(fmt, orientation)
    assert Image.open(io.BytesIO(data)).getexif()[0x0112] == orientation
    pixels = read_image(write(tmp_path, f"sideways.{fmt.lower()}", data))
    expected = np.rot90(marked_picture(), k=rotate_k)
    assert pixels.shape == expected.shape
    if orientation in (6, 8):
        assert pixels.shape == (WIDTH, HEIGHT, 3)
    assert red_corner(pixels) == corner
    assert np.abs(pixels.astype(int) - expected.astype(int)).mean() < 3.0


def test_mirrored_orientation_is_applied():
    # 2: mirrored left to right; the red block is stored top-left and shows top-right.
    pixels = decode_bytes(with_orientation("PNG", 2))
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    assert red_corner(pixels) == "top-right"


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_broken_exif_does_not_make_a_good_photo_unreadable():
    # An orientation value outside 1..8 and an EXIF block that stops short are both ignored.
    exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00\x63\x00\x00\x00"
    data = encode(Image.fromarray(PICTURE), "JPEG", quality=95, exif=exif)
    assert_rgb(decode_bytes(data))
    short = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x00" * 10
    data = encode(Image.fromarray(PICTURE), "JPEG", quality=95, exif=short)
    assert_rgb(decode_bytes(data))


# --- colour modes -----------------------------------------------------------------------------------

def test_grayscale_becomes_three_equal_channels():
    grey = Image.fromarray(PICTURE).convert("L")
    for fmt in ("PNG", "BMP", "GIF", "WEBP"):
        options = {"lossless": True} if fmt == "WEBP" else {}
        pixels = decode_bytes(encode(grey, fmt, **options))
        assert_rgb(pixels)
        for channel in range(3):
            np.testing.assert_array_equal(pixels[..., channel], np.asarray(grey), err_msg=fmt)
    pixels = decode_bytes(encode(grey, "JPEG", quality=95))
    assert_rgb(pixels)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()


def test_cmyk_jpeg_comes_out_rgb():
    colours = {(0, 255, 255, 0): (255, 0, 0), (255, 0, 255, 0): (0, 255, 0),
               (0, 0, 0, 0): (255, 255, 255), (0, 0, 0, 255): (0, 0, 0)}
    for cmyk, rgb in colours.items():
        data = encode(Image.new("CMYK", (16, 8), cmyk), "JPEG", quality=100)
        assert Image.open(io.BytesIO(data)).mode == "CMYK"
        pixels = decode_bytes(data)
        assert_rgb(pixels, 8, 16)
        assert np.abs(pixels.astype(int) - np.array(rgb)).max() <= 3, (cmyk, pixels[0, 0])
    photo = encode(Image.fromarray(PICTURE).convert("CMYK"), "JPEG", quality=95)
    pixels = decode_bytes(photo)
    assert_rgb(pixels)
    assert np.abs(pixels.astype(int) - PICTURE.astype(int)).mean() < 6.0


def test_palette_image_with_and_without_transparency():
    palette = Image.new("P", (4, 2))
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12))
    for x, index in enumerate([1, 2, 3, 0]):
        palette.putpixel((x, 0), index)
        palette.putpixel((x, 1), index)
    opaque = decode_bytes(encode(palette, "PNG"))
    assert opaque[0].tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 0]]
    for fmt in ("PNG", "GIF"):
        clear = decode_bytes(encode(palette, fmt, transparency=0))
        assert clear.shape == (2, 4, 3)
        # index 0 is transparent: laid over white, not black
        assert clear[0].tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], fmt


def rgba_picture() -> np.ndarray:
    pixels = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    pixels[..., :3] = PICTURE
    pixels[..., 3] = 255
    pixels[0, 0] = (10, 20, 30, 0)  # fully transparent, dark colour underneath
    pixels[0, 1] = (0, 0, 0, 128)  # half transparent black
    pixels[0, 2] = (200, 100, 50, 255)  # opaque
    return pixels


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_rgba_is_laid_over_white(fmt):
    options = {"lossless": True, "exact": True} if fmt == "WEBP" else {}
    pixels = decode_bytes(encode(Image.fromarray(rgba_picture()), fmt, **options))
    assert_rgb(pixels)
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert all(126 <= value <= 128 for value in pixels[0, 1].tolist())
    assert pixels[0, 2].tolist() == [200, 100, 50]
    np.testing.assert_array_equal(pixels[1:], PICTURE[1:])


def test_grey_with_alpha_is_laid_over_white():
    la = np.zeros((2, 3, 2), np.uint8)
    la[..., 0] = 40
    la[..., 1] = 255
    la[0, 0] = (40, 0)
    la[0, 1] = (0, 128)
    pixels = decode_bytes(encode(Image.fromarray(la, "LA"), "PNG"))
    assert pixels.shape == (2, 3, 3) and pixels.dtype == np.uint8
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert all(126 <= value <= 128 for value in pixels[0, 1].tolist())
    assert pixels[1].tolist() == [[40, 40, 40]] * 3


def test_sixteen_bit_png_keeps_the_top_byte():
    values = np.array([[0, 255, 256, 4095], [32768, 40000, 65280, 65535]], np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    data = encode(image, "PNG")
    assert data[24] == 16  # the IHDR bit depth: a real 16-bit PNG
    pixels = decode_bytes(data)
    assert pixels.shape == (2, 4, 3) and pixels.dtype == np.uint8
    expected = (values >> 8).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], expected)


def test_sixteen_bit_gradient_is_not_all_white():
    ramp = (np.arange(256, dtype=np.uint32) * 257).astype(np.uint16).reshape(16, 16)
    pixels = decode_bytes(encode(Image.fromarray(ramp), "PNG"))
    np.testing.assert_array_equal(pixels[..., 0], np.arange(256).reshape(16, 16))


# --- broken files -----------------------------------------------------------------------------------

def real_jpeg() -> bytes:
    return encode(Image.fromarray(gradient(120, 160)), "JPEG", quality=90)


def real_png() -> bytes:
    return encode(Image.fromarray(gradient(120, 160)), "PNG")


def random_bytes(count: int, seed: int = 3) -> bytes:
    data = np.random.default_rng(seed).integers(0, 256, count, dtype=np.uint8).tobytes()
    assert sniff_format(data[:16]) is None
    return data


BROKEN = {
    "empty": (lambda: b"", r"empty \(0 bytes\)"),
    "truncated jpeg": (lambda: real_jpeg()[: len(real_jpeg()) // 2], r"broken JPEG data .*truncated"),
    "truncated png": (lambda: real_png()[: len(real_png()) // 2], r"broken PNG data .*truncated"),
    "random bytes": (lambda: random_bytes(4096), r"not an image .*JPEG, PNG, GIF, BMP or WebP"),
    "text file": (lambda: b"category,file\ncats,a.jpg\n" * 20, r"not an image"),
    "jpeg header then garbage": (lambda: real_jpeg()[:20] + random_bytes(3000, seed=5), r"broken JPEG data"),
    "jpeg magic only": (lambda: b"\xff\xd8\xff", r"broken JPEG data"),
    "png signature only": (lambda: b"\x89PNG\r\n\x1a\n", r"broken PNG data"),
    "text that starts with BM": (lambda: b"BMW and Mercedes photos\n" * 3, r"broken BMP data"),
    "riff that is not webp": (lambda: b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(24), r"not an image"),
    "gif signature only": (lambda: b"GIF89a" + bytes(10), r"broken GIF data \(cannot identify image file\)"),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_broken_files_raise_unreadable_with_a_reason(tmp_path, kind):
    make, reason = BROKEN[kind]
    data = make()
    with pytest.raises(UnreadableImage, match=reason) as caught:
        decode_bytes(data)
    with pytest.raises(UnreadableImage, match=reason):
        read_image(write(tmp_path, "photo.jpg", data))
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300 and "object at 0x" not in message
    skipped = Skipped(tmp_path / "photo.jpg", message)
    assert skipped.warning() == f"tensor-guess: skipping {tmp_path / 'photo.jpg'}: {message}"


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "WEBP"])
def test_truncated_files_of_other_formats_are_unreadable(fmt):
    data = encode(Image.fromarray(gradient(120, 160)), fmt)
    with pytest.raises(UnreadableImage, match=f"broken {fmt} data"):
        decode_bytes(data[: len(data) // 2])


def test_missing_file_and_folder_are_unreadable(tmp_path):
    with pytest.raises(UnreadableImage, match="cannot read the file"):
        read_image(tmp_path / "nothing-here.jpg")
    (tmp_path / "a-folder.jpg").mkdir()
    with pytest.raises(UnreadableImage, match="cannot read the file"):
        read_image(tmp_path / "a-folder.jpg")


def test_broken_symlink_is_unreadable(tmp_path):
    link = tmp_path / "gone.jpg"
    link.symlink_to(tmp_path / "deleted.jpg")
    with pytest.raises(UnreadableImage, match="cannot read the file"):
        read_image(link)


# --- listing and hashing ----------------------------------------------------------------------------

def test_list_files_skips_hidden_files_and_folders_and_is_sorted(tmp_path):
    root = tmp_path / "cats"
    for name in ["b.jpg", "a.png", "C.jpg", "z", ".DS_Store", "._a.png", "sub/x.jpg", "sub/.hidden.jpg",
                 ".thumbnails/t.jpg", "sub/.git/objects/o.jpg", "a_dir/y.jpg", "a_dir/deeper/w.gif"]:
        write(root, name, b"x")
    (root / "empty_dir").mkdir()
    found = list_files(root)
    relative = [p.relative_to(root).as_posix() for p in found]
    assert relative == ["C.jpg", "a.png", "b.jpg", "z", "a_dir/y.jpg", "a_dir/deeper/w.gif", "sub/x.jpg"]
    assert all(isinstance(p, Path) and p.is_file() for p in found)
    # The order is a function of the names only: the same on every call and every machine.
    assert list_files(root) == found
    flat = [p for p in found if p.parent == root]
    assert flat == sorted(flat)


def test_list_files_does_not_judge_the_folder_it_was_given(tmp_path):
    # A hidden folder *above* the image folder (~/.local/photos) hides nothing.
    root = tmp_path / ".cache" / "photos"
    write(root, "one.jpg", b"1")
    assert [p.name for p in list_files(root)] == ["one.jpg"]


def test_content_hash_is_sha1_of_the_bytes(tmp_path):
    for size in (0, 1, 1 << 20, (1 << 20) + 7, 3 * (1 << 20)):
        data = os.urandom(size)
        path = write(tmp_path, f"f{size}.bin", data)
        assert content_hash(path) == hashlib.sha1(data).hexdigest()
    a = write(tmp_path, "a.jpg", real_jpeg())
    b = write(tmp_path, "renamed/b.png", real_jpeg())
    assert content_hash(a) == content_hash(b)
