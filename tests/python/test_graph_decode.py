"""export.decode_to_rgb (the exported graph's decoder) agrees with images.decode_bytes.

A photo must give the same pixels whether tensor-guess reads it in Python or a
label_image.py-style program feeds its bytes to `DecodeJpeg/contents:0`.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tensorguess.data.images import decode_bytes

tf = pytest.importorskip("tensorflow")
from tensorguess.export.frozen import decode_to_rgb  # noqa: E402 (needs TensorFlow)

SRC = Path(__file__).resolve().parents[2] / "src"
HEIGHT, WIDTH = 45, 70  # odd sizes: chroma subsampling and row padding get exercised


def gradient(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    red = x * 255 // (width - 1)
    green = y * 255 // (height - 1)
    blue = (128 + 100 * np.sin(x / 7.0) * np.cos(y / 5.0)).astype(int)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def rgba() -> Image.Image:
    pixels = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    pixels[..., :3] = gradient()
    pixels[..., 3] = np.linspace(0, 255, WIDTH).astype(np.uint8)[None, :]
    pixels[:5, :5, 3] = 0
    pixels[-5:, -5:, 3] = 255
    return Image.fromarray(pixels)


def la() -> Image.Image:
    grey = np.asarray(Image.fromarray(gradient()).convert("L"))
    alpha = np.linspace(255, 0, HEIGHT).astype(np.uint8)[:, None].repeat(WIDTH, axis=1)
    return Image.fromarray(np.stack([grey, alpha], axis=-1), "LA")


PICTURE = Image.fromarray(gradient())

LOSSLESS = {
    "png-rgb": lambda: encode(PICTURE, "PNG"),
    "png-rgba": lambda: encode(rgba(), "PNG"),
    "png-l": lambda: encode(PICTURE.convert("L"), "PNG"),
    "png-la": lambda: encode(la(), "PNG"),
    "png-palette": lambda: encode(PICTURE.quantize(64), "PNG"),
    "png-palette-transparent": lambda: encode(PICTURE.quantize(64), "PNG", transparency=3),
    "png-16bit": lambda: encode(Image.fromarray(gradient()[..., 0].astype(np.uint16) * 257), "PNG"),
    "gif": lambda: encode(PICTURE.quantize(256), "GIF"),
    "gif-animated": lambda: animated("GIF"),
    "bmp-24bit": lambda: encode(PICTURE, "BMP"),
    "bmp-grey": lambda: encode(PICTURE.convert("L"), "BMP"),
    "webp-lossless": lambda: encode(PICTURE, "WEBP", lossless=True),
    "webp-lossless-rgba": lambda: encode(rgba(), "WEBP", lossless=True, exact=True),
}

LOSSY = {
    "jpeg": lambda: encode(PICTURE, "JPEG", quality=90),
    "jpeg-444": lambda: encode(PICTURE, "JPEG", quality=95, subsampling=0),
    "jpeg-progressive": lambda: encode(PICTURE, "JPEG", quality=90, progressive=True),
    "jpeg-grey": lambda: encode(PICTURE.convert("L"), "JPEG", quality=90),
    "jpeg-cmyk": lambda: encode(PICTURE.convert("CMYK"), "JPEG", quality=90),
    "webp-lossy": lambda: encode(PICTURE, "WEBP", quality=85),
}


def animated(fmt: str, mode: str = "RGB") -> bytes:
    first = PICTURE.convert(mode)
    frames = [Image.new(mode, (WIDTH, HEIGHT), colour) for colour in ("red", "blue")]
    buffer = io.BytesIO()
    options = {"lossless": True} if fmt == "WEBP" else {}
    first.save(buffer, fmt, save_all=True, append_images=frames, duration=50, **options)
    return buffer.getvalue()


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def decode_eagerly(contents):
    return decode_to_rgb(contents)


def decode_in_session(data: bytes) -> np.ndarray:
    """As the exported frozen graph runs it: a TF1 graph fed through a string placeholder."""
    graph = tf.Graph()
    with graph.as_default():
        contents = tf.compat.v1.placeholder(tf.string, shape=[], name="DecodeJpeg/contents")
        image = decode_to_rgb(contents)
        assert image.shape.as_list() == [None, None, 3]
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run(image, {contents: data})


DECODERS = {"tf.function": lambda data: decode_eagerly(tf.constant(data)).numpy(),
            "session": decode_in_session}


def difference(data: bytes, decoder: str) -> np.ndarray:
    expected = decode_bytes(data)
    got = DECODERS[decoder](data)
    assert got.dtype == np.uint8
    assert got.shape == expected.shape, (got.shape, expected.shape)
    return np.abs(got.astype(int) - expected.astype(int))


@pytest.mark.parametrize("decoder", list(DECODERS))
@pytest.mark.parametrize("kind", list(LOSSLESS))
def test_lossless_formats_match_python(kind, decoder):
    data = LOSSLESS[kind]()
    assert difference(data, decoder).max() <= 2


@pytest.mark.parametrize("decoder", list(DECODERS))
@pytest.mark.parametrize("kind", list(LOSSY))
def test_lossy_formats_match_python(kind, decoder):
    data = LOSSY[kind]()
    diff = difference(data, decoder)
    assert diff.mean() < 2.0, diff.mean()
    assert diff.max() <= 16, diff.max()


def test_graph_decodes_what_it_is_fed_not_its_first_input():
    # One Session, several formats in turn: the tf.cond picks the right branch every time.
    graph = tf.Graph()
    with graph.as_default():
        contents = tf.compat.v1.placeholder(tf.string, shape=[])
        image = decode_to_rgb(contents)
    with tf.compat.v1.Session(graph=graph) as session:
        for kind in ("png-rgba", "jpeg", "gif", "png-l", "jpeg-cmyk", "bmp-24bit", "webp-lossless"):
            data = {**LOSSLESS, **LOSSY}[kind]()
            got = session.run(image, {contents: data})
            expected = decode_bytes(data)
            assert got.shape == expected.shape
            assert np.abs(got.astype(int) - expected.astype(int)).mean() < 2.0, kind


def test_transparent_pixels_become_white_in_the_graph_too():
    got = DECODERS["tf.function"](LOSSLESS["png-rgba"]())
    assert (got[:5, :5] == 255).all()
    np.testing.assert_array_equal(got[-5:, -5:], gradient()[-5:, -5:])


def test_broken_bytes_are_an_error_in_the_graph_not_a_crash():
    jpeg = LOSSY["jpeg"]()
    for data in (b"", b"not an image at all", jpeg[: len(jpeg) // 3] + b"\x00" * 10):
        with pytest.raises(tf.errors.InvalidArgumentError):
            DECODERS["tf.function"](data)


# --- known disagreements: each a real bug, reported; strict so a fix flips them to failures ------------

def bmp_32bit_no_alpha() -> bytes:
    """A classic 32-bit BI_RGB BMP: the fourth byte is unused (zero), not alpha (many Windows tools)."""
    import struct

    pixels = gradient(4, 6)
    rows = b"".join(
        bytes(v for px in pixels[y] for v in (px[2], px[1], px[0], 0)) for y in range(3, -1, -1)
    )
    header = struct.pack("<IiiHHIIiiII", 40, 6, 4, 1, 32, 0, len(rows), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + len(rows), 0, 0, 54) + header + rows


def test_32bit_bmp_reads_as_opaque_in_python():
    np.testing.assert_array_equal(decode_bytes(bmp_32bit_no_alpha()), gradient(4, 6))


def test_32bit_bmp_matches_python():
    assert difference(bmp_32bit_no_alpha(), "tf.function").max() <= 2


@pytest.mark.xfail(strict=True, reason=(
    "BUG frozen.decode_to_rgb: TensorFlow's BMP decoder reads an 8-bit palette BMP's indices as grey "
    "levels; Pillow applies the palette"))
def test_palette_bmp_matches_python():
    palette = Image.new("P", (6, 4))
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12))
    for x in range(6):
        for y in range(4):
            palette.putpixel((x, y), (x + y) % 4)
    assert difference(encode(palette, "BMP"), "tf.function").max() <= 2


@pytest.mark.xfail(strict=True, reason=(
    "BUG frozen.decode_to_rgb: TensorFlow's GIF decoder gives transparent pixels of the first frame as "
    "black (0,0,0); images.decode_bytes lays them over white"))
def test_transparent_gif_matches_python():
    data = encode(PICTURE.quantize(64), "GIF", transparency=3)
    assert (decode_bytes(data) == 255).all(axis=-1).any()
    assert difference(data, "tf.function").max() <= 2


# TensorFlow 2.21's DecodeImage aborts the process (SIGABRT) on an animated WebP without
# alpha; decode_to_rgb refuses animated WebPs with a clean InvalidArgumentError instead.
def test_animated_webp_does_not_kill_the_process(tmp_path):
    path = tmp_path / "animated.webp"
    path.write_bytes(animated("WEBP"))
    assert decode_bytes(path.read_bytes()).shape == (HEIGHT, WIDTH, 3)
    script = textwrap.dedent(f"""
        import tensorflow as tf
        from tensorguess.export.frozen import decode_to_rgb
        try:
            print(decode_to_rgb(tf.constant(open({str(path)!r}, "rb").read())).shape)
        except tf.errors.InvalidArgumentError as error:
            print("clean error:", error)
    """)
    env = {**os.environ, "PYTHONPATH": str(SRC), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    assert b"clean error:" in done.stdout and b"animated WebP is not supported" in done.stdout
