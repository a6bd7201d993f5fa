"""Decode images on worker threads while the network runs on the batches before them."""

from __future__ import annotations

import itertools
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .images import UnreadableImage, read_image
from .modules import resize_image


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


def load_for_network(path: Path, size: int) -> np.ndarray:
    """Read, decode and resize one image: float32 [size,size,3] in [0,1]."""
    return resize_image(read_image(path), size).numpy()


def decoded_batches(
    paths: Iterable[Path], size: int, batch_size: int, workers: int | None = None
) -> Iterator[list[tuple[Path, np.ndarray | UnreadableImage]]]:
    """Batches of (path, pixels), or (path, UnreadableImage) for a file that failed."""

    def load(path: Path):
        try:
            return path, load_for_network(path, size)
        except UnreadableImage as error:
            return path, error

    decoded = bounded_map(load, paths, workers or default_workers(), window=4 * batch_size)
    while batch := list(itertools.islice(decoded, batch_size)):
        yield batch


def progress(total: int, description: str, enabled: bool = True):
    """A progress bar on stderr with images/s; silent when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="img", file=sys.stderr,
                disable=None if enabled else True, dynamic_ncols=True)
