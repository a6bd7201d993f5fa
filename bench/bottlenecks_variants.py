"""What would bring extract() nearer the module's own speed: pipeline variants tried in a copy.

    python bench/bottlenecks_variants.py [--out bench/results/bottlenecks_variants.json] [--every 3]
                                         [--rounds 3]

Runs bottlenecks.extract() (steady state, cache=None, batch 32) over every --every'th image of
sign-digits + superheroes, each time with one change patched into tensorguess.pipeline, and
A (the module alone on a ready float batch, as many images) right before each, so every
variant gets its own ratio to A under the same load; --rounds rounds, the best one of each counts:
  as_is           the code as it is (decode workers = max(2, nproc))
  workers_1       one decode worker thread
  plain_enlarge   resize with antialias only when the image shrinks: on enlarging it changes
                  nothing (checked here on every sign-digits image) and costs a third
  plain_enlarge_workers_1   both
Wall and process-CPU figures are given, as in bench/bottlenecks.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common
from bottlenecks import BATCH, module_only


def load_plain_when_enlarging(path: Path, size: int) -> np.ndarray:
    """pipeline.load_for_network, with the antialiasing filter only where it changes pixels."""
    import tensorflow as tf

    from tensorguess.images import read_image

    image = read_image(path)
    shrinking = image.shape[0] > size or image.shape[1] > size
    pixels = tf.image.convert_image_dtype(image, tf.float32)
    return tf.image.resize(pixels, [size, size], method="bilinear", antialias=shrinking).numpy()


def largest_difference(paths: list[Path], size: int) -> float:
    """Largest pixel difference between the two resizes over `paths`."""
    from tensorguess.pipeline import load_for_network

    return max(float(np.abs(load_for_network(p, size) - load_plain_when_enlarging(p, size)).max())
               for p in paths)


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--every", type=int, default=3, help="use every n-th image (default: 3)")
    parse.add_argument("--rounds", type=int, default=3, help="rounds over all variants (default: 3)")
    args = parse.parse_args()
    common.quiet_tensorflow()
    machine = common.machine()
    from tensorguess import bottlenecks, modules, pipeline

    all_paths = common.image_files(common.SIGN_DIGITS, common.SUPERHEROES)
    paths = all_paths[::args.every]
    common.warm_page_cache(paths)
    spec, loaded = modules.resolve(str(common.MODULE))
    size = spec.input_size
    run = bottlenecks.compile_features(spec, loaded)
    module_only(run, 4 * BATCH)
    bottlenecks.compile_features = lambda _spec, _loaded: run
    as_is = pipeline.load_for_network

    variants = {
        "as_is": (as_is, None),
        "workers_1": (as_is, 1),
        "plain_enlarge": (load_plain_when_enlarging, None),
        "plain_enlarge_workers_1": (load_plain_when_enlarging, 1),
    }
    walls: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    cpus: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (load, workers) in variants.items():
            pipeline.load_for_network = load
            bottlenecks.extract(paths[:BATCH], spec, loaded, None, BATCH, workers=workers)
            a_wall, a_cpu, _ = common.measured(module_only, run, len(paths))
            wall, cpu, result = common.measured(
                bottlenecks.extract, paths, spec, loaded, None, BATCH, workers=workers, warn=lambda _: None
            )
            assert result.computed == len(paths)
            walls[name].append((a_wall, wall))
            cpus[name].append((a_cpu, cpu))
    figures = {}
    for name in variants:
        a_wall, wall = (min(column) for column in zip(*walls[name], strict=True))
        a_cpu, cpu = (min(column) for column in zip(*cpus[name], strict=True))
        figures[name] = {
            "images_per_second": round(len(paths) / wall, 1),
            "A_images_per_second": round(len(paths) / a_wall, 1),
            "cpu_ms_per_image": round(1000 * cpu / len(paths), 2),
            "A_cpu_ms_per_image": round(1000 * a_cpu / len(paths), 2),
            "ours_over_A_per_round": [round(a / o, 3) for a, o in walls[name]],
            "ours_over_A": round(a_wall / wall, 3),
            "ours_over_A_cpu": round(a_cpu / cpu, 3),
        }
    pipeline.load_for_network = as_is

    digits = common.image_files(common.SIGN_DIGITS)
    common.finish({
        "benchmark": "bottlenecks_variants",
        "machine": machine,
        "images": len(paths),
        "default_workers": pipeline.default_workers(),
        "variants": figures,
        "plain_enlarge_largest_pixel_difference_on_sign_digits": largest_difference(digits, size),
    }, args.out)


if __name__ == "__main__":
    main()
