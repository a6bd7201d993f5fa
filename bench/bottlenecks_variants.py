"""What brings extract() nearer the module's own speed: pipeline variants, each against A.

    python bench/bottlenecks_variants.py [--out bench/results/bottlenecks_variants.json] [--every 3]
                                         [--rounds 3]

Runs bottlenecks.extract() (steady state, cache=None, batch 32) over every --every'th image of
sign-digits + superheroes, each time with one change patched into tensorguess.features.pipeline, and
A (the module alone on a ready float batch, as many images) right before each, so every
variant gets its own ratio to A under the same load; --rounds rounds, the best one of each counts:
  as_is              the code as it is (decode workers: pipeline.default_workers())
  workers_1          one decode worker thread
  workers_2          two decode worker threads
  per_image_resize   every image resized alone on its worker thread (eager), no batched enlarge
  always_antialias   session 1's pipeline: per image, TensorFlow's antialiased bilinear resize
                     (the mean pixel difference to today's area-then-bilinear resize is given)
Wall and process-CPU figures are given, as in bench/bottlenecks.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common
from bottlenecks import BATCH, module_only


def load_always_antialiased(path: Path, size: int) -> np.ndarray:
    """The session-1 pipeline: every image resized on its worker, with the antialiasing filter."""
    import tensorflow as tf

    from tensorguess.data.images import read_image

    pixels = tf.image.convert_image_dtype(read_image(path), tf.float32)
    return tf.image.resize(pixels, [size, size], method="bilinear", antialias=True).numpy()


def load_resized_per_image(path: Path, size: int) -> np.ndarray:
    """Every image resized on its worker thread, one eager call each (antialias only to shrink)."""
    from tensorguess.data.images import read_image
    from tensorguess.features.modules import resize_image

    return resize_image(read_image(path), size).numpy()


def mean_difference(paths: list[Path], size: int) -> float:
    """Mean absolute pixel difference (0..1 scale) between today's resize and session 1's."""
    return float(np.mean([np.abs(load_resized_per_image(p, size) - load_always_antialiased(p, size)).mean()
                          for p in paths]))


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--every", type=int, default=3, help="use every n-th image (default: 3)")
    parse.add_argument("--rounds", type=int, default=3, help="rounds over all variants (default: 3)")
    args = parse.parse_args()
    common.quiet_tensorflow()
    machine = common.machine()
    from tensorguess.data.images import content_hash
    from tensorguess.features import bottlenecks, modules, pipeline

    all_paths = common.image_files(common.SIGN_DIGITS, common.SUPERHEROES)
    paths = all_paths[::args.every]
    distinct = len({content_hash(path) for path in paths})
    common.warm_page_cache(paths)
    spec, loaded = modules.resolve(str(common.MODULE))
    size = spec.input_size
    run = bottlenecks.compile_features(spec, loaded)
    module_only(run, 4 * BATCH)
    as_is = pipeline.prepare_for_network

    variants = {
        "as_is": (as_is, None),
        "workers_1": (as_is, 1),
        "workers_2": (as_is, 2),
        "per_image_resize": (load_resized_per_image, None),
        "always_antialias": (load_always_antialiased, None),
    }
    walls: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    cpus: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (load, workers) in variants.items():
            pipeline.prepare_for_network = load
            bottlenecks.extract(paths[:BATCH], spec, loaded, None, BATCH, workers=workers)
            a_wall, a_cpu, _ = common.measured(module_only, run, distinct)
            wall, cpu, result = common.measured(
                bottlenecks.extract, paths, spec, loaded, None, BATCH, workers=workers, warn=lambda _: None
            )
            assert result.computed == distinct
            walls[name].append((a_wall, wall))
            cpus[name].append((a_cpu, cpu))
    figures = {}
    for name in variants:
        a_wall, wall = (min(column) for column in zip(*walls[name], strict=True))
        a_cpu, cpu = (min(column) for column in zip(*cpus[name], strict=True))
        figures[name] = {
            "images_per_second": round(distinct / wall, 1),
            "A_images_per_second": round(distinct / a_wall, 1),
            "cpu_ms_per_image": round(1000 * cpu / distinct, 2),
            "A_cpu_ms_per_image": round(1000 * a_cpu / distinct, 2),
            "ours_over_A_per_round": [round(a / o, 3) for a, o in walls[name]],
            "ours_over_A": round(a_wall / wall, 3),
            "ours_over_A_cpu": round(a_cpu / cpu, 3),
        }
    pipeline.prepare_for_network = as_is

    digits = common.image_files(common.SIGN_DIGITS)
    heroes = common.image_files(common.SUPERHEROES)
    common.finish({
        "benchmark": "bottlenecks_variants",
        "machine": machine,
        "images": len(paths),
        "distinct_images": distinct,
        "default_workers": pipeline.default_workers(),
        "variants": figures,
        "mean_pixel_difference_to_session_1_resize": {
            "sign_digits_enlarged": round(mean_difference(digits[::10], size), 6),
            "superheroes_shrunk": round(mean_difference(heroes[::5], size), 6),
        },
    }, args.out)


if __name__ == "__main__":
    main()
