"""Huge photos: reduced JPEG decoding, the decode budget, banded shrinking, the bomb refusal,
and guessDir's peak memory over three 12000x12000 photos.

Photos are real (../shared) or made with PIL in tmp_path; peak memory is measured on a
child process (os.wait4's ru_maxrss), never timed.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SIGN_DIGITS, SUPERHEROES
from PIL import Image, ImageOps

from tensorguess.data import decode_budget
from tensorguess.data.decode_budget import DecodeBudget, capacity_from
from tensorguess.data.images import UnreadableImage, decode_bytes, read_image, read_rgb
from tensorguess.features import pipeline
from tensorguess.features.modules import shrink_to_fit

PHONE_PHOTO = SIGN_DIGITS / "7" / "IMG_5935.JPG"  # 3024x3024, EXIF orientation 6 (rotated)
SIZE = 224


def shrunk(pixels: np.ndarray) -> np.ndarray:
    return shrink_to_fit(pixels, SIZE).numpy()


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


# --- reduced JPEG decoding ----------------------------------------------------------------------------

def test_a_jpeg_over_max_pixels_decodes_at_half_size_close_to_a_full_decode():
    full = read_image(PHONE_PHOTO)
    half = read_image(PHONE_PHOTO, target=SIZE, max_pixels=1512 * 1512)
    assert full.shape == (3024, 3024, 3) and half.shape == (1512, 1512, 3)
    difference = np.abs(shrunk(full) - shrunk(half))
    # Measured 0.0002 mean and 0.017 max on this photo (bench/huge_photos.py): libjpeg's
    # scaled IDCT is a low-pass filter close to the box average. A quarter of a level on
    # average, and 15 levels at the worst pixel, where clipped saturated colours differ.
    assert difference.mean() < 1 / 255 / 4
    assert difference.max() < 15 / 255


def test_the_least_reduction_that_fits_is_taken_and_never_below_the_margin(tmp_path):
    path = tmp_path / "wide.jpg"
    path.write_bytes(encode(Image.fromarray(np.full((1000, 2000, 3), 128, np.uint8)), "JPEG"))
    assert read_rgb(path, max_pixels=2_000_000).size == (2000, 1000)  # fits: full size
    assert read_rgb(path, max_pixels=600_000).size == (1000, 500)
    assert read_rgb(path, max_pixels=100_000).size == (250, 125)  # 1/4 would still be 125,000
    # With a 224 network, no side may go under DRAFT_MARGIN x 224 = 1344: no reduction at all.
    assert read_rgb(path, target=SIZE, max_pixels=100_000).size == (2000, 1000)
    assert read_rgb(path).size == (2000, 1000)  # no max_pixels: always full size


def test_exif_orientation_is_applied_to_a_reduced_jpeg(tmp_path):
    picture = np.zeros((800, 1600, 3), np.uint8)
    picture[:200, :400] = (255, 0, 0)  # red in the top-left corner of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: the red goes top-right
    data = encode(Image.fromarray(picture), "JPEG", quality=95, exif=exif.tobytes())
    full = decode_bytes(data)
    reduced = decode_bytes(data, max_pixels=400 * 200)
    assert full.shape == (1600, 800, 3) and reduced.shape == (400, 200, 3)
    assert reduced[:40, -40:, 0].mean() > 200 and reduced[:40, -40:, 1].mean() < 50  # red, top-right
    assert reduced[-40:, :40, 0].mean() < 50
    np.testing.assert_allclose(reduced[::10, ::10], full[2::40, 2::40], atol=40)


def test_the_real_phone_photo_comes_upright_when_reduced():
    with Image.open(PHONE_PHOTO) as stored:
        upright = np.asarray(ImageOps.exif_transpose(stored).resize((378, 378), Image.BOX), np.float32)
    reduced = read_image(PHONE_PHOTO, max_pixels=378 * 378)  # 1/8
    assert reduced.shape == (378, 378, 3)
    assert np.abs(reduced.astype(np.float32) - upright).mean() < 4  # unrotated it would be ~40


# --- the decompression-bomb refusal, by the declared size ---------------------------------------------

def jpeg_declaring(width: int, height: int) -> bytes:
    """A valid little JPEG whose frame header claims width x height."""
    data = bytearray(encode(Image.new("RGB", (16, 16), "grey"), "JPEG"))
    frame = data.index(b"\xff\xc0")
    data[frame + 5:frame + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def png_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (16, 16), "grey"), "PNG"))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # IHDR's CRC
    return bytes(data)


@pytest.mark.parametrize("declaring", [jpeg_declaring, png_declaring])
@pytest.mark.parametrize("side", [15000, 30000])  # 225 MP (Pillow warns), 900 MP (Pillow errs)
def test_a_bomb_is_refused_by_its_declared_size_before_any_decoding(tmp_path, declaring, side):
    path = tmp_path / "bomb"
    path.write_bytes(declaring(side, side))
    held: list[int] = []
    started = time.perf_counter()
    with pytest.raises(UnreadableImage, match="too large to decode safely"):
        read_image(path, target=SIZE, max_pixels=64_000_000, hold=held.append)
    assert held == []  # refused before the budget was even asked
    assert time.perf_counter() - started < 1


def test_the_refusal_holds_even_where_pillows_warning_does_not(monkeypatch):
    # warnings.catch_warnings is not thread-safe: another worker leaving it can drop the
    # "error" filter under this one. The check of our own must refuse all the same.
    monkeypatch.setattr(Image, "_decompression_bomb_check", lambda size: None)
    with pytest.raises(UnreadableImage, match=r"15000x15000 = 225,000,000 pixels, over the limit"):
        decode_bytes(jpeg_declaring(15000, 15000))


# --- the decode budget --------------------------------------------------------------------------------

def test_the_budget_bounds_the_pixels_held_at_once():
    budget = DecodeBudget(100)
    in_flight, most, lock = [0], [0], threading.Lock()

    def work(pixels: int) -> None:
        with budget.hold(pixels):
            with lock:
                in_flight[0] += pixels
                most[0] = max(most[0], in_flight[0])
            time.sleep(0.01)
            with lock:
                in_flight[0] -= pixels

    threads = [threading.Thread(target=work, args=(30,)) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == budget.peak == 90  # three at a time, never four
    assert budget._held == 0


def test_a_request_over_the_whole_budget_waits_for_an_empty_budget_then_runs_alone():
    budget = DecodeBudget(10)
    events: list[str] = []
    small_in, huge_in, release_small = threading.Event(), threading.Event(), threading.Event()

    def small() -> None:
        with budget.hold(5):
            small_in.set()
            release_small.wait(5)
            events.append("small out")

    def huge() -> None:
        with budget.hold(50):
            events.append("huge in")
            huge_in.set()
            time.sleep(0.05)
            events.append("huge out")

    def later() -> None:
        with budget.hold(1):
            events.append("later in")

    first = threading.Thread(target=small)
    first.start()
    small_in.wait(5)
    second = threading.Thread(target=huge)
    second.start()
    time.sleep(0.05)
    third = threading.Thread(target=later)  # arrives after the huge one: may not overtake it
    third.start()
    time.sleep(0.05)
    assert events == []
    release_small.set()
    for thread in (first, second, third):
        thread.join(5)
    assert events == ["small out", "huge in", "huge out", "later in"]


def test_the_budget_is_read_from_the_environment(capsys):
    assert capacity_from({}) == 64_000_000
    assert capacity_from({"TG_DECODE_BUDGET_MPIX": "2.5"}) == 2_500_000
    assert capacity_from({"TG_DECODE_BUDGET_MPIX": "0"}) is None
    assert capacity_from({"TG_DECODE_BUDGET_MPIX": "lots"}) == 64_000_000
    assert "TG_DECODE_BUDGET_MPIX='lots' is not a number of megapixels" in capsys.readouterr().err


def test_the_worker_count_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("TG_DECODE_WORKERS", "16")
    assert pipeline.default_workers() == 16
    monkeypatch.delenv("TG_DECODE_WORKERS")
    assert pipeline.default_workers() == max(2, os.cpu_count() or 2)


def noisy_png(path: Path, height: int, width: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path, compress_level=1)
    return path


def test_decoding_through_the_pipeline_stays_within_the_budget(tmp_path, monkeypatch):
    budget = DecodeBudget(2_500_000)
    monkeypatch.setattr(decode_budget, "_shared", budget)
    paths = [noisy_png(tmp_path / f"{i}.png", 1000, 1100, i) for i in range(8)]  # 1.1 MP each
    paths.append(noisy_png(tmp_path / "over.png", 1500, 2000, 9))  # 3 MP: over the whole budget
    batches = list(pipeline.decoded_batches(paths, SIZE, batch_size=4, workers=6))
    assert 2_200_000 <= budget.peak <= 2_500_000  # two at a time, and the big one alone
    pixels = np.concatenate([batch.pixels for batch in batches])
    expected = np.stack([shrunk(read_image(p)) for p in paths])
    # Above 1 MP the pipeline shrinks in bands: TensorFlow's area weights, summed in
    # another order, so equal to float32 rounding (measured under 3e-7).
    np.testing.assert_allclose(pixels, expected, atol=2e-6, rtol=0)


# --- shrinking in bands -------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3000, 2000), (2241, 225), (224, 5000), (100, 3001), (12001, 449)])
def test_banded_shrinking_gives_shrink_to_fits_pixels(shape):
    pixels = np.random.default_rng(3).integers(0, 256, (*shape, 3), dtype=np.uint8)
    banded = pipeline.shrink_in_bands(Image.fromarray(pixels), SIZE)
    expected = shrunk(pixels)
    assert banded.shape == expected.shape and banded.dtype == np.float32
    # TensorFlow places its spans in float32: near 12000 px a span end is off by 1e-3 of a
    # pixel, which both sides compute alike; what is left is summation order (1e-5 at most).
    np.testing.assert_allclose(banded, expected, atol=2e-5, rtol=0)


def test_the_real_phone_photo_shrunk_in_bands_equals_a_full_shrink():
    banded = pipeline.shrink_in_bands(read_rgb(PHONE_PHOTO), SIZE)
    np.testing.assert_allclose(banded, shrunk(read_image(PHONE_PHOTO)), atol=2e-6, rtol=0)


# --- guessDir over three 12000x12000 photos -----------------------------------------------------------

def huge_jpeg(path: Path) -> None:
    """A 12000x12000 JPEG of a real photo upscaled, with noise so that it compresses like one."""
    photo = sorted((SUPERHEROES / "elsa").iterdir())[0]
    with Image.open(photo) as source:
        pixels = np.asarray(source.convert("RGB").resize((12000, 12000), Image.BILINEAR)).copy()
    noise = np.random.default_rng(1).integers(-12, 13, (1000, 1000, 3), dtype=np.int16)
    for top in range(0, 12000, 1000):
        for left in range(0, 12000, 1000):
            tile = pixels[top:top + 1000, left:left + 1000]
            tile[...] = np.clip(tile + noise, 0, 255)
    Image.fromarray(pixels).save(path, quality=85)


def test_sorting_three_12000x12000_photos_peaks_under_1_5_gb(trained, tmp_path):
    base, _, _ = trained
    source = tmp_path / "photos"
    source.mkdir()
    huge_jpeg(source / "huge-1.jpg")
    for index in (2, 3):
        os.link(source / "huge-1.jpg", source / f"huge-{index}.jpg")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    for name in ("TG_DECODE_BUDGET_MPIX", "TG_DECODE_WORKERS"):
        env.pop(name, None)
    peak, output, errors = peak_rss_of(
        [sys.executable, "-m", "tensorguess", "sort", str(base), str(source), str(tmp_path / "sorted")],
        env, tmp_path / "sort.log")
    assert "Copied 3 images" in output, errors[-2000:]
    assert peak < 1.5e9, f"peak RSS {peak / 1e9:.2f} GB"


# Runs the command after it as its child and writes the child's peak RSS (KiB) to the
# file named first. A child's ru_maxrss includes the address space it was forked (or
# vforked) from: measured from pytest's own child, the figure would be at least pytest's
# peak, TensorFlow and the trained fixture included. This small process is the parent.
MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
open(sys.argv[1], "w").write(f"{usage.ru_maxrss} {child.returncode}")
"""


def peak_rss_of(command: list[str], env: dict[str, str], log: Path) -> tuple[int, str, str]:
    """(bytes of peak RSS, stdout, stderr) of one run of `command`."""
    result = log.with_suffix(".rss")
    run = subprocess.run([sys.executable, "-c", MEASURE, str(result), *command], env=env,
                         capture_output=True, timeout=300, check=True)
    max_rss, status = map(int, result.read_text().split())
    output, errors = run.stdout.decode(errors="replace"), run.stderr.decode(errors="replace")
    assert status == 0, errors[-2000:]
    return max_rss * 1024, output, errors
