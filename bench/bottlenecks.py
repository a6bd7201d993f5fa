"""Bottleneck extraction from files on disk against the module's own speed on ready tensors.

    python bench/bottlenecks.py [--out bench/results/bottlenecks.json] [--rounds 2] [--every N]

All on the MobileNet v1 1.0 224 feature vector, every sign-digits and superheroes image:
  A     compile_features() on the same images pre-decoded: decoded and resized to float32
        [32,224,224,3] batches before any timing, in the batches extract() makes (the
        module's own throughput, the compute limit).
  A_one_batch  the same, on one random batch run as many times: its input stays in the CPU
        caches, a stricter baseline than the issue asks for, kept for comparison.
  ours  bottlenecks.extract(paths, cache=None, batch_size=32): hash, decode and resize on
        worker threads while the module runs the batch before.
  B     retrain.py's loop: read, decode (PIL), resize, run the module on a batch of 1.
A, A_one_batch and ours alternate, --rounds times; the best round of each counts, and the
ratio of each round's A and ours (run back to back, under the same load) is given too.
Also timed, to explain the gap: decode + resize alone, on one thread and through the pipeline,
and the content hashing extract() does first (reading every file once more), alone.
Every phase reports wall seconds and the CPU seconds of this process (all threads); the
CPU figure hardly moves when other work shares the cores, the wall one does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

import common

BATCH = 32


def module_only(run, count: int) -> None:
    """The module alone over `count` images, in batches of BATCH as extract() makes them,
    every batch the same random one (so it stays in the CPU caches: a strict baseline)."""
    batch = np.random.default_rng(0).random((BATCH, 224, 224, 3), dtype=np.float32)
    for size in [BATCH] * (count // BATCH) + ([count % BATCH] if count % BATCH else []):
        run(batch[:size]).numpy()


def batches_on_one_thread(paths: list[Path], size: int) -> Iterator[np.ndarray]:
    """The images decoded and resized on this thread, in extract()'s batches."""
    from tensorguess.features.pipeline import network_batch, prepare_for_network

    for start in range(0, len(paths), BATCH):
        yield network_batch([prepare_for_network(p, size) for p in paths[start:start + BATCH]], size)


def module_on(run, batches: list[np.ndarray]) -> None:
    for batch in batches:
        run(batch).numpy()


def one_at_a_time(run, paths: list[Path], size: int) -> None:
    """retrain.py's way: every image read, decoded, resized and run on its own."""
    import tensorflow as tf

    from tensorguess.data.images import read_image
    from tensorguess.features.modules import resize_image

    for path in paths:
        run(tf.expand_dims(resize_image(read_image(path), size), 0)).numpy()


def decode_one_thread(paths: list[Path], size: int) -> None:
    for _ in batches_on_one_thread(paths, size):
        pass


def decode_pipeline(paths: list[Path], size: int) -> None:
    from tensorguess.features.pipeline import decoded_batches

    for _ in decoded_batches(paths, size, BATCH):
        pass


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--rounds", type=int, default=2, help="rounds of A and ours (default: 2)")
    parse.add_argument("--every", type=int, default=1,
                       help="every Nth image only, the two sets' mix kept (default: 1, all)")
    args = parse.parse_args()
    common.quiet_tensorflow()
    machine = common.machine()
    from tensorguess.data.images import content_hash
    from tensorguess.features import bottlenecks, modules
    from tensorguess.features.pipeline import default_workers

    paths = common.image_files(common.SIGN_DIGITS, common.SUPERHEROES)[::args.every]
    megabytes = common.warm_page_cache(paths) / 1e6
    # extract() runs the module once per distinct content: A covers as many images, B every path.
    first_of_each_content = list({content_hash(path): path for path in reversed(paths)}.values())[::-1]
    distinct = len(first_of_each_content)
    spec, loaded = modules.resolve(str(common.MODULE))
    size = spec.input_size

    # What tracing the module's function costs (once per loaded module).
    run = bottlenecks.compile_features(spec, loaded)
    warm_batch = np.zeros((BATCH, size, size, 3), np.float32)
    first_call, _ = common.timed(lambda: run(warm_batch).numpy())
    for _ in range(3):
        run(warm_batch).numpy()
    steady_call, _ = common.timed(lambda: run(warm_batch).numpy())

    # extract() reuses the function traced above (one per loaded module), so the timed calls
    # are the steady state (the trace cost is reported apart, above). Warm both paths up once.
    bottlenecks.extract(paths[:2 * BATCH], spec, loaded, cache=None, batch_size=BATCH)
    one_at_a_time(run, paths[:8], size)

    def ours():
        return bottlenecks.extract(paths, spec, loaded, cache=None, batch_size=BATCH, warn=lambda _: None)

    # A and ours alternate, --rounds times each, so both see the same load; best round counts.
    batches = list(batches_on_one_thread(first_of_each_content, size))  # before any timing
    schedule = [("A", distinct, lambda: module_on(run, batches)),
                ("A_one_batch", distinct, lambda: module_only(run, distinct)),
                ("ours", distinct, ours)] * args.rounds
    schedule += [
        ("B", len(paths), lambda: one_at_a_time(run, paths, size)),
        ("decode_resize_one_thread", len(paths), lambda: decode_one_thread(paths, size)),
        ("decode_resize_pipeline_no_model", len(paths), lambda: decode_pipeline(paths, size)),
        ("hash_only", len(paths), lambda: bottlenecks._digests(paths, None, default_workers())),
    ]
    rounds: dict[str, list[tuple[float, float]]] = {}
    counts: dict[str, int] = {}
    for name, count, work in schedule:
        wall, cpu, result = common.measured(work)
        rounds.setdefault(name, []).append((round(wall, 2), round(cpu, 2)))
        counts[name] = count
        if name == "ours":
            assert result.computed == distinct and not result.skipped
    figures = {}
    for name, measured in rounds.items():
        wall, cpu = min(w for w, _ in measured), min(c for _, c in measured)
        figures[name] = {"seconds_per_round": [w for w, _ in measured],
                         "cpu_seconds_per_round": [c for _, c in measured],
                         "images_per_second": round(counts[name] / wall, 1),
                         "cpu_ms_per_image": round(1000 * cpu / counts[name], 2)}

    rate = {name: figures[name]["images_per_second"] for name in figures}
    cpu_ms = {name: figures[name]["cpu_ms_per_image"] for name in figures}
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
            "ours_over_A": round(rate["ours"] / rate["A"], 3),
            # Each round's A and ours ran back to back, under the same load.
            "ours_over_A_per_round": [round(a / o, 3) for (a, _), (o, _) in
                                      zip(rounds["A"], rounds["ours"], strict=True)],
            "ours_over_A_cpu": round(cpu_ms["A"] / cpu_ms["ours"], 3),
            "ours_over_A_one_batch": round(rate["ours"] / rate["A_one_batch"], 3),
            "ours_over_A_one_batch_cpu": round(cpu_ms["A_one_batch"] / cpu_ms["ours"], 3),
            "ours_over_B": round(rate["ours"] / rate["B"], 2),
            "ours_over_B_cpu": round(cpu_ms["B"] / cpu_ms["ours"], 2),
        },
    }, args.out)


if __name__ == "__main__":
    main()
