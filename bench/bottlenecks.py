"""Bottleneck extraction from files on disk against the module's own speed on ready tensors.

    python bench/bottlenecks.py [--out bench/results/bottlenecks.json]

All on the MobileNet v1 1.0 224 feature vector, every sign-digits and superheroes image:
  A     compile_features() on one pre-built float32 [32,224,224,3] batch, run in as many
        batches as extract() makes (the compute limit); timed before and after ours.
  ours  bottlenecks.extract(paths, cache=None, batch_size=32): hash, decode and resize on
        worker threads while the module runs the batch before.
  B     retrain.py's loop: read, decode (PIL), resize, run the module on a batch of 1.
Also timed, to explain the gap: decode + resize alone, on one thread and through the pipeline.
Every phase reports wall seconds and the CPU seconds of this process (all threads).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common

BATCH = 32


def module_only(run, count: int) -> None:
    """The module alone over `count` images, in batches of BATCH as extract() makes them."""
    batch = np.random.default_rng(0).random((BATCH, 224, 224, 3), dtype=np.float32)
    for size in [BATCH] * (count // BATCH) + ([count % BATCH] if count % BATCH else []):
        run(batch[:size]).numpy()


def one_at_a_time(run, paths: list[Path], size: int) -> None:
    """retrain.py's way: every image read, decoded, resized and run on its own."""
    import tensorflow as tf

    from tensorguess.images import read_image
    from tensorguess.modules import resize_image

    for path in paths:
        run(tf.expand_dims(resize_image(read_image(path), size), 0)).numpy()


def decode_one_thread(paths: list[Path], size: int) -> None:
    from tensorguess.pipeline import load_for_network

    for path in paths:
        load_for_network(path, size)


def decode_pipeline(paths: list[Path], size: int) -> None:
    from tensorguess.pipeline import decoded_batches

    for _ in decoded_batches(paths, size, BATCH):
        pass


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    common.quiet_tensorflow()
    machine = common.machine()
    from tensorguess import bottlenecks, modules
    from tensorguess.images import content_hash
    from tensorguess.pipeline import default_workers

    paths = common.image_files(common.SIGN_DIGITS, common.SUPERHEROES)
    megabytes = common.warm_page_cache(paths) / 1e6
    # extract() runs the module once per distinct content: A covers as many images, B every path.
    distinct = len({content_hash(path) for path in paths})
    spec, loaded = modules.resolve(str(common.MODULE))
    size = spec.input_size

    # What tracing a fresh compile_features costs (extract() makes one per call).
    run = bottlenecks.compile_features(spec, loaded)
    warm_batch = np.zeros((BATCH, size, size, 3), np.float32)
    first_call, _ = common.timed(lambda: run(warm_batch).numpy())
    for _ in range(3):
        run(warm_batch).numpy()
    steady_call, _ = common.timed(lambda: run(warm_batch).numpy())

    # extract() would trace its own function: hand it the warmed one, so the timed call is
    # the steady state (the trace cost is reported apart, above). Warm every path up once.
    bottlenecks.compile_features = lambda _spec, _loaded: run
    bottlenecks.extract(paths[:2 * BATCH], spec, loaded, cache=None, batch_size=BATCH)
    one_at_a_time(run, paths[:8], size)

    def ours():
        return bottlenecks.extract(paths, spec, loaded, cache=None, batch_size=BATCH, warn=lambda _: None)

    phases = {
        "A_before": (distinct, lambda: module_only(run, distinct)),
        "ours": (distinct, ours),
        "A_after": (distinct, lambda: module_only(run, distinct)),
        "B": (len(paths), lambda: one_at_a_time(run, paths, size)),
        "decode_resize_one_thread": (len(paths), lambda: decode_one_thread(paths, size)),
        "decode_resize_pipeline_no_model": (len(paths), lambda: decode_pipeline(paths, size)),
    }
    figures = {}
    for name, (count, work) in phases.items():
        wall, cpu, result = common.measured(work)
        figures[name] = {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                         "images_per_second": round(count / wall, 1),
                         "cpu_ms_per_image": round(1000 * cpu / count, 2)}
        if name == "ours":
            assert result.computed == distinct and not result.skipped
            figures[name]["seconds_in_extract_loop"] = round(result.seconds, 2)

    a_seconds = (figures["A_before"]["seconds"] + figures["A_after"]["seconds"]) / 2
    a_cpu = (figures["A_before"]["cpu_seconds"] + figures["A_after"]["cpu_seconds"]) / 2
    ours_rate, b_rate = figures["ours"]["images_per_second"], figures["B"]["images_per_second"]
    common.finish({
        "benchmark": "bottlenecks",
        "machine": machine,
        "images": len(paths),
        "distinct_images": distinct,
        "megabytes_on_disk": round(megabytes, 1),
        "batch_size": BATCH,
        "workers": default_workers(),
        "trace_seconds_of_a_fresh_compile_features": round(first_call - steady_call, 2),
        "phases": figures,
        "ratios": {
            "ours_over_A": round(ours_rate / (distinct / a_seconds), 3),
            "ours_over_A_cpu": round(a_cpu / figures["ours"]["cpu_seconds"], 3),
            "ours_over_B": round(ours_rate / b_rate, 2),
        },
    }, args.out)


if __name__ == "__main__":
    main()
