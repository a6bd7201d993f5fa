"""Decode images on worker threads while the network runs on the batches before them."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tensorguess.data import decode_budget
from tensorguess.data.images import UnreadableImage, as_array, read_rgb
from tensorguess.features.modules import enlarge, shrink_to_fit

WORKERS_ENV = "TG_DECODE_WORKERS"

# Pillow allocates a large image in blocks of this size (16 MB by default). glibc serves
# a block under its mmap threshold, which rises to 32 MB once a block is freed, from a
# worker thread's heap, and a heap keeps freed memory: a huge photo's 576 MB would stay
# in the process after it was shrunk, and each worker's heap could keep its own. Blocks
# above that threshold are mapped and unmapped, so freed pixels go back to the system.
PILLOW_BLOCK_SIZE = 64 << 20


@functools.cache
def set_up_decoding() -> None:
    """Pillow's allocation for the decoding threads (PILLOW_BLOCK_SIZE); once a process."""
    Image.core.set_block_size(PILLOW_BLOCK_SIZE)


def default_workers() -> int:
    """Decoding threads: TG_DECODE_WORKERS if it is a positive number, else one per core (at least 2)."""
    text = os.environ.get(WORKERS_ENV, "").strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    if text:
        print(f"tensor-guess: {WORKERS_ENV}={text!r} is not a positive number; using one per core",
              file=sys.stderr, flush=True)
    return max(2, os.cpu_count() or 2)


def bounded_map(fn: Callable, items: Iterable, workers: int, window: int) -> Iterator:
    """map(fn, items) on a thread pool, in order, with at most `window` results pending.

    Workers run ahead of the consumer by `window` items, which is what lets image
    decoding overlap the network without holding every decoded image in memory.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        source = iter(items)
        pending = deque(pool.submit(fn, item) for item in itertools.islice(source, window))
        while pending:
            result = pending.popleft().result()
            for item in itertools.islice(source, 1):
                pending.append(pool.submit(fn, item))
            yield result


def ahead(items: Iterable, depth: int) -> Iterator:
    """The items of `items`, in order, produced on a thread of their own up to `depth` ahead.

    What the consumer does with one item (run the network, copy a photo) then overlaps the
    making of the next ones (assembling a batch, running the network on it): the costly calls
    there (TensorFlow, LiteRT, file reads and writes) release the GIL. An exception of the
    producer is raised in the consumer, at the item it stopped at; a consumer that stops early
    (an error, a break) stops the producer at its next item.
    """
    done = object()
    pending: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                pending.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            put((False, error))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator's own cleanup (its pool of workers), on its own thread
        put((True, done))

    thread = threading.Thread(target=produce, name="tensor-guess-ahead", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = pending.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()


# Reduced JPEG decoding and banded shrinking for photos past the budget. False decodes every
# photo at full size and shrinks it whole with TensorFlow: bench/huge_photos.py's baseline,
# which sets it before running a command (with a budget of 0, nothing limits the decoding).
decode_reduced = True


def prepare_for_network(path: Path, size: int) -> np.ndarray:
    """Read and decode one image for `network_batch`: float32 in [0,1], at most size x size.

    The first step of `resize_image` (shrinking) runs here, on a worker thread, where
    the full-size pixels are, so no batch ever holds a full-size photo; the second
    (enlarging) runs in `network_batch` on the whole batch at once. Together they
    give the pixels of `resize_image` on the image as decoded (exactly, up to
    BANDED_ABOVE pixels; within float32 rounding above).

    Huge photos: the pixels being decoded are held in the process's decode budget
    (decode_budget.shared) from just before they are decoded until they are shrunk,
    so that all workers together never hold more than it; a JPEG larger than the
    whole budget is decoded at reduced size to fit in it (images.decode_bytes); and
    an image of more than BANDED_ABOVE pixels is shrunk a band of rows at a time
    (`shrink_in_bands`), never copied whole.
    """
    set_up_decoding()
    budget = decode_budget.shared()
    reduced = decode_reduced
    with contextlib.ExitStack() as held:
        image = read_rgb(path, target=size, max_pixels=budget.capacity if reduced else None,
                         hold=lambda pixels: held.enter_context(budget.hold(pixels)))
        if reduced and image.width * image.height > BANDED_ABOVE:
            pixels = shrink_in_bands(image, size)
        else:
            array = as_array(image)
            del image  # Pillow's copy of the pixels, before TensorFlow makes a float32 one
            if array.shape[0] > size or array.shape[1] > size:
                pixels = shrink_to_fit(array, size).numpy()
            else:
                # Bit for bit what tf.image.convert_image_dtype does, without a TensorFlow call.
                pixels = array.astype(np.float32) * np.float32(1 / 255)
            del array
        image = None  # before the budget is released: the next worker may decode into this room
    return pixels


# Decoded images with more pixels than this are shrunk by `shrink_in_bands` (about 4
# bytes a pixel: Pillow's) rather than by shrink_to_fit (about 19: Pillow's, a uint8
# copy and TensorFlow's float32 one), so that the budget's pixels all cost about the
# same. Smaller ones (every photo of ../shared's sets but one) keep shrink_to_fit's pixels.
BANDED_ABOVE = 1_000_000
BAND_PIXELS = 1 << 19  # rows per band: about this many pixels, 6 MB in float32


def shrink_in_bands(image: Image.Image, size: int) -> np.ndarray:
    """shrink_to_fit's box average, computed a band of rows at a time from Pillow's pixels.

    TensorFlow's area-resize weights (`area_weights`), applied as two matrix products
    (rows, then columns), so that no full-size copy is ever made; the result differs
    from shrink_to_fit's by float32 rounding only (under 1e-5; the weights, 10 MB for a
    12000-pixel side, are the one other cost).
    """
    width, height = image.size
    rows, columns = area_weights(height, size), area_weights(width, size)
    band = max(1, BAND_PIXELS // width)
    shrunk_rows = np.zeros((rows.shape[0], width, 3), np.float32)
    for top in range(0, height, band):
        bottom = min(top + band, height)
        weights = rows[:, top:bottom]
        fed = np.flatnonzero(weights.any(axis=1))  # the few output rows this band feeds
        first, last = fed[0], fed[-1] + 1
        pixels = np.asarray(image.crop((0, top, width, bottom)), dtype=np.float32)
        shrunk_rows[first:last] += np.tensordot(weights[first:last], pixels, axes=1)
    # One BLAS product per output row: a broadcast matmul would loop in numpy (seconds), and
    # a single tensordot would copy all of shrunk_rows first.
    return np.stack([columns @ row for row in shrunk_rows]) * np.float32(1 / 255)


def area_weights(length: int, size: int) -> np.ndarray:
    """[out, length] float32 weights of the box average of `length` pixels down to out = min(length, size).

    Output pixel j averages the input span [j, j+1) * length / out, each input pixel
    weighted by how much of it lies in the span. The span ends are computed in float32
    as tf.image.resize(method="area") computes them, so the weights are TensorFlow's
    (exact ones differ from them by up to 3e-5 of a pixel's value). A span is longer
    than a pixel, so each input pixel lies in one span or two.
    """
    out = min(length, size)
    if out == length:
        return np.eye(length, dtype=np.float32)
    scale = np.float32(length) / np.float32(out)
    starts = np.arange(out, dtype=np.float32) * scale
    ends = np.arange(1, out + 1, dtype=np.float32) * scale
    index = np.arange(length)
    pixel = index.astype(np.float32)
    span = np.searchsorted(starts, pixel, side="right") - 1  # the span each pixel starts in
    weights = np.zeros((out, length), np.float32)
    weights[span, index] = np.minimum(pixel + 1, ends[span]) - np.maximum(pixel, starts[span])
    spills = (ends[span] < pixel + 1) & (span + 1 < out)  # the rest lies in the next span
    after = span[spills] + 1
    weights[after, index[spills]] = np.minimum(pixel[spills] + 1, ends[after]) - starts[after]
    return weights / scale


def network_batch(images: list[np.ndarray], size: int) -> np.ndarray:
    """Images from `prepare_for_network` as one float32 array [N,size,size,3]."""
    shapes = {image.shape for image in images}
    if shapes == {(size, size, 3)}:  # nothing to enlarge
        return np.stack(images)
    if len(shapes) == 1:  # one shape (a camera's, a dataset's): one op for the batch
        return _enlarger(size)(np.stack(images)).numpy()
    values = np.concatenate([image.reshape(-1) for image in images])
    heights_widths = np.array([image.shape[:2] for image in images], dtype=np.int32)
    return _packed_enlarger(size)(values, heights_widths).numpy()


@functools.cache
def _enlarger(size: int):
    import tensorflow as tf

    return tf.function(lambda images: enlarge(images, size),
                       input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])


@functools.cache
def _packed_enlarger(size: int):
    """Images of several shapes, flattened end to end, enlarged one by one in one graph call."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([None, 2], tf.int32)])
    def enlarge_packed(values, shapes):
        lengths = shapes[:, 0] * shapes[:, 1] * 3
        ends = tf.cumsum(lengths)
        starts = ends - lengths

        def one(i):
            return enlarge(tf.reshape(values[starts[i]:ends[i]], [shapes[i, 0], shapes[i, 1], 3]), size)

        return tf.map_fn(one, tf.range(tf.shape(shapes)[0]),
                         fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))

    return enlarge_packed


@dataclass
class DecodedBatch:
    """Every path of a batch in order, with why it could not be read (None if it could),
    and the pixels of the readable ones, in the same order: float32 [readable, S, S, 3]."""

    entries: list[tuple[Path, UnreadableImage | None]]
    pixels: np.ndarray | None = None  # None when nothing in the batch was readable


def decoded_batches(
    paths: Iterable[Path], size: int, batch_size: int, workers: int | None = None
) -> Iterator[DecodedBatch]:
    """The paths in batches, decoded on worker threads ahead of the consumer, each batch assembled
    (its photos enlarged into one array) on a thread of its own while the consumer runs the
    network on the batch before."""

    def load(path: Path):
        try:
            return path, prepare_for_network(path, size)
        except UnreadableImage as error:
            return path, error

    def assembled() -> Iterator[DecodedBatch]:
        decoded = bounded_map(load, paths, workers or default_workers(), window=4 * batch_size)
        while chunk := list(itertools.islice(decoded, batch_size)):
            readable = [pixels for _, pixels in chunk if not isinstance(pixels, UnreadableImage)]
            yield DecodedBatch(
                [(path, pixels if isinstance(pixels, UnreadableImage) else None) for path, pixels in chunk],
                network_batch(readable, size) if readable else None,
            )

    set_up_decoding()
    yield from ahead(assembled(), depth=1)


def progress(total: int, description: str, enabled: bool = True):
    """A progress bar on stderr with images/s; silent when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="img", file=sys.stderr,
                disable=None if enabled else True, dynamic_ncols=True)
