"""Decode images on worker threads while the network runs on the batches before them."""

from __future__ import annotations

import functools
import itertools
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .images import UnreadableImage, read_image
from .modules import enlarge, shrink_to_fit


def default_workers() -> int:
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


def prepare_for_network(path: Path, size: int) -> np.ndarray:
    """Read and decode one image for `network_batch`: float32 in [0,1], at most size x size.

    The first step of `resize_image` (shrinking) runs here, on a worker thread, where
    the full-size pixels are, so no batch ever holds a full-size photo; the second
    (enlarging) runs in `network_batch` on the whole batch at once. Together they
    give exactly the pixels of `resize_image` on the whole image.
    """
    image = read_image(path)
    if image.shape[0] > size or image.shape[1] > size:
        return shrink_to_fit(image, size).numpy()
    # Bit for bit what tf.image.convert_image_dtype does, without a TensorFlow call.
    return image.astype(np.float32) * np.float32(1 / 255)


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
    """The paths in batches, decoded on worker threads ahead of the consumer."""

    def load(path: Path):
        try:
            return path, prepare_for_network(path, size)
        except UnreadableImage as error:
            return path, error

    decoded = bounded_map(load, paths, workers or default_workers(), window=4 * batch_size)
    while chunk := list(itertools.islice(decoded, batch_size)):
        readable = [pixels for _, pixels in chunk if not isinstance(pixels, UnreadableImage)]
        yield DecodedBatch(
            [(path, pixels if isinstance(pixels, UnreadableImage) else None) for path, pixels in chunk],
            network_batch(readable, size) if readable else None,
        )


def progress(total: int, description: str, enabled: bool = True):
    """A progress bar on stderr with images/s; silent when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="img", file=sys.stderr,
                disable=None if enabled else True, dynamic_ncols=True)
