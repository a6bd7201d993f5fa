"""Bottleneck extraction from files on disk against the module's own speed on ready tensors.

    python bench/bottlenecks.py [--out bench/results/bottlenecks.json]

All on the MobileNet v1 1.0 224 feature vector, every sign-digits and superheroes image:
  A     compile_features() on one pre-built float32 [32,224,224,3] batch, run as many
        times as it takes to cover the same number of images (the compute limit).
  ours  bottlenecks.extract(paths, cache=None, batch_size=32): hash, decode and resize on
        worker threads while the module runs the batch before.
  B     retrain.py's loop: read, decode (PIL), resize, run the module on a batch of 1.
Also timed, to explain the gap: decode + resize alone, on one thread and through the pipeline.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

import common

BATCH = 32


def images_per_second(count: int, seconds: float) -> float:
    return round(count / seconds, 1)


def time_module_only(run, count: int) -> float:
    """Seconds for the module alone over `count` images in batches of BATCH, as extract batches them."""
    batch = np.random.default_rng(0).random((BATCH, 224, 224, 3), dtype=np.float32)
    sizes = [BATCH] * (count // BATCH) + ([count % BATCH] if count % BATCH else [])
    started = time.perf_counter()
    for size in sizes:
        run(batch[:size]).numpy()
    return time.perf_counter() - started


def time_one_at_a_time(run, paths: list[Path], size: int) -> float:
    """retrain.py's way: every image read, decoded, resized and run on its own."""
    import tensorflow as tf

    from tensorguess.images import read_image
    from tensorguess.modules import resize_image

    started = time.perf_counter()
    for path in paths:
        run(tf.expand_dims(resize_image(read_image(path), size), 0)).numpy()
    return time.perf_counter() - started


def time_decode_only(paths: list[Path], size: int) -> tuple[float, float]:
    """(one thread, the pipeline's threads) seconds to read, decode and resize every image."""
    from tensorguess.pipeline import decoded_batches, load_for_network

    serial, _ = common.timed(lambda: [load_for_network(path, size) for path in paths])
    threaded, _ = common.timed(lambda: sum(len(b) for b in decoded_batches(paths, size, BATCH)))
    return serial, threaded


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    common.quiet_tensorflow()
    from tensorguess import bottlenecks, modules
    from tensorguess.images import content_hash
    from tensorguess.pipeline import default_workers

    paths = common.image_files(common.SIGN_DIGITS, common.SUPERHEROES)
    megabytes = common.warm_page_cache(paths) / 1e6
    # extract() runs the module once per distinct content: A covers as many images, B every path.
    count = len({content_hash(path) for path in paths})
    spec, loaded = modules.resolve(str(common.MODULE))
    size = spec.input_size

    # Tracing cost of a fresh compile_features (extract() makes one per call).
    run = bottlenecks.compile_features(spec, loaded)
    warm_batch = np.zeros((BATCH, size, size, 3), np.float32)
    first_call, _ = common.timed(lambda: run(warm_batch).numpy())
    for _ in range(3):
        run(warm_batch).numpy()
    steady_call, _ = common.timed(lambda: run(warm_batch).numpy())
    run(warm_batch[:1]).numpy()

    # extract() would compile and trace its own function: hand it the warmed one instead,
    # so the timed call is the steady state (the trace cost is reported apart, above).
    bottlenecks.compile_features = lambda _spec, _loaded: run
    bottlenecks.extract(paths[:2 * BATCH], spec, loaded, cache=None, batch_size=BATCH)
    time_one_at_a_time(run, paths[:8], size)

    module_before = time_module_only(run, count)
    ours, extraction = common.timed(
        bottlenecks.extract, paths, spec, loaded, cache=None, batch_size=BATCH, warn=lambda line: None
    )
    module_after = time_module_only(run, count)
    one_at_a_time = time_one_at_a_time(run, paths, size)
    decode_serial, decode_threaded = time_decode_only(paths, size)

    assert extraction.computed == count and not extraction.skipped
    module_seconds = (module_before + module_after) / 2
    rates = {
        "A_module_on_tensors": images_per_second(count, module_seconds),
        "ours_extract": images_per_second(count, ours),
        "B_one_at_a_time": images_per_second(len(paths), one_at_a_time),
    }
    common.finish({
        "benchmark": "bottlenecks",
        "machine": common.machine(),
        "images": len(paths),
        "distinct_images": count,
        "megabytes_on_disk": round(megabytes, 1),
        "batch_size": BATCH,
        "workers": default_workers(),
        "seconds": {
            "A_module_on_tensors_before": round(module_before, 2),
            "A_module_on_tensors_after": round(module_after, 2),
            "ours_extract_wall": round(ours, 2),
            "ours_extract_loop_only": round(extraction.seconds, 2),
            "B_one_at_a_time": round(one_at_a_time, 2),
            "decode_resize_one_thread": round(decode_serial, 2),
            "decode_resize_pipeline_no_model": round(decode_threaded, 2),
            "trace_fresh_compile_features": round(first_call - steady_call, 2),
        },
        "images_per_second": rates,
        "ratios": {
            "ours_over_A": round(rates["ours_extract"] / rates["A_module_on_tensors"], 3),
            "ours_over_B": round(rates["ours_extract"] / rates["B_one_at_a_time"], 2),
            "A_runs_of_32": math.ceil(count / BATCH),
        },
    }, args.out)


if __name__ == "__main__":
    main()
