"""The decode pipeline gives exactly the pixels of modules.resize_image, batched or not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import MOBILENET_V1
from PIL import Image

from tensorguess.data.images import UnreadableImage, read_image
from tensorguess.features.modules import resize_image
from tensorguess.features.pipeline import bounded_map, decoded_batches, network_batch, prepare_for_network

SIZE = 64
# Enlarged, shrunk in one or both directions, exactly the network size, tiny.
SHAPES = [(40, 30), (100, 50), (50, 100), (64, 64), (64, 30), (300, 200), (1, 1)]


def write_images(folder: Path) -> list[Path]:
    rng = np.random.default_rng(7)
    paths = []
    for i, (height, width) in enumerate(SHAPES):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_batched_resize_equals_resize_image_bit_for_bit(tmp_path):
    paths = write_images(tmp_path)
    expected = np.stack([resize_image(read_image(p), SIZE).numpy() for p in paths])
    batched = network_batch([prepare_for_network(p, SIZE) for p in paths], SIZE)
    assert batched.shape == (len(paths), SIZE, SIZE, 3)
    np.testing.assert_array_equal(batched, expected)


@pytest.mark.parametrize("shape", [(40, 30), (64, 64), (300, 200)])
def test_a_batch_of_one_shape_equals_resize_image_bit_for_bit(tmp_path, shape):
    rng = np.random.default_rng(3)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(paths[-1])
    expected = np.stack([resize_image(read_image(p), SIZE).numpy() for p in paths])
    batched = network_batch([prepare_for_network(p, SIZE) for p in paths], SIZE)
    np.testing.assert_array_equal(batched, expected)


def test_prepared_images_never_exceed_the_network_size(tmp_path):
    for path in write_images(tmp_path):
        height, width, _ = prepare_for_network(path, SIZE).shape
        assert height <= SIZE and width <= SIZE


def test_decoded_batches_keep_order_and_name_unreadable_files(tmp_path):
    paths = write_images(tmp_path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really")
    order = paths[:3] + [broken] + paths[3:]
    batches = list(decoded_batches(order, SIZE, batch_size=3, workers=2))
    entries = [entry for batch in batches for entry in batch.entries]
    assert [path for path, _ in entries] == order
    assert [isinstance(error, UnreadableImage) for _, error in entries] == [p == broken for p in order]
    pixels = np.concatenate([b.pixels for b in batches if b.pixels is not None])
    expected = np.stack([resize_image(read_image(p), SIZE).numpy() for p in paths])
    np.testing.assert_array_equal(pixels, expected)


def test_a_batch_of_only_unreadable_files_has_no_pixels(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    (batch,) = decoded_batches([empty], SIZE, batch_size=4)
    assert batch.pixels is None and "empty" in str(batch.entries[0][1])


@pytest.mark.parametrize("workers", [1, 3])
def test_bounded_map_keeps_order_with_a_small_window(workers):
    assert list(bounded_map(lambda x: x * x, range(50), workers, window=2)) == [x * x for x in range(50)]


@pytest.mark.parametrize("shape", [(448, 448), (448, 50), (90, 300)])
def test_shrinking_averages_instead_of_aliasing(shape):
    # One-pixel stripes along every side that shrinks: a resize that samples instead of
    # averaging shows stripes or a solid colour; an antialiased one shows even grey.
    height, width = shape
    rows, cols = np.indices(shape)
    stripes = np.where(((rows if height > SIZE else 0) + (cols if width > SIZE else 0)) % 2, 255, 0)
    image = np.repeat(stripes[..., None], 3, axis=2).astype(np.uint8)
    resized = resize_image(image, SIZE).numpy()
    assert resized.shape == (SIZE, SIZE, 3)
    # (Sampling gives std 0.5 or a mean of 0 or 1; boxes of an odd number of rows, 3/7 and 4/7.)
    assert abs(resized.mean() - 0.5) < 0.02 and resized.std() < 0.1


def test_the_resize_is_part_of_the_module_identity(monkeypatch):
    from tensorguess.features import modules

    spec, _ = modules.resolve(str(MOBILENET_V1))
    monkeypatch.setattr(modules, "RESIZE_SCHEME", "something-else")
    changed, _ = modules.resolve(str(MOBILENET_V1))
    assert spec.identity != changed.identity and spec.cache_name != changed.cache_name


def test_extracting_twice_with_one_module_traces_once(tmp_path):
    from tensorguess.features import bottlenecks, modules

    paths = write_images(tmp_path)
    spec, loaded = modules.resolve(str(MOBILENET_V1))
    first = bottlenecks.extract(paths[:2], spec, loaded, cache=None)
    run = bottlenecks.compile_features(spec, loaded)
    traces = run.experimental_get_tracing_count()
    second = bottlenecks.extract(paths[:2], spec, loaded, cache=None)
    assert bottlenecks.compile_features(spec, loaded) is run
    assert run.experimental_get_tracing_count() == traces == 1
    for path in paths[:2]:
        np.testing.assert_array_equal(first.vector(path), second.vector(path))


def test_ahead_keeps_order_raises_the_producer_s_error_and_stops_with_its_consumer():
    import threading

    from tensorguess.features.pipeline import ahead

    assert list(ahead(iter(range(100)), depth=3)) == list(range(100))

    def failing():
        yield 1
        raise ValueError("broken photo")

    items = ahead(failing(), depth=2)
    assert next(items) == 1
    with pytest.raises(ValueError, match="broken photo"):
        next(items)
    made = []

    def endless():
        for number in range(10**9):
            made.append(number)
            yield number

    before = threading.active_count()
    for number in ahead(endless(), depth=2):
        if number == 5:
            break
    assert len(made) <= 5 + 2 + 2 and threading.active_count() == before
