"""The chosen hidden layer's final training: fewer steps against the default 4,000, seeds 1-3.

    python bench/hidden_steps.py [--steps 1500 4000] [--seeds 1 2 3] [--cache /tmp/hidden-steps]
                                 [--out bench/results/hidden_steps.json]

Sign-digits' bottlenecks (MobileNet v1 from ../shared; --cache: a cache folder of an earlier
run spares the pass), train.sh's split without its near-duplicate groups; the recipe
--recipe_mode auto chooses there (512 hidden, Adam 1e-3, dropout 0.2, smoothing 0.1, batches
of 100): validation and test accuracy and wall seconds of each. A lever of the rerun's time
(issue 23): taken only if validation and test say it loses nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import common
from recipes import DATASETS


def chosen_head():
    """The recipe --recipe_mode auto chooses on sign-digits (batches of 100, Adam 1e-3)."""
    from tensorguess.head.train import HeadSpec

    return HeadSpec(512, 0.2, 0.1, "adam")


def sign_digits_split(cache: Path):
    """(training Rows, (validation x, y), (test x, y), classes): sign-digits' bottlenecks (MobileNet
    v1 from ../shared, cached in `cache`) on train.sh's split without its near-duplicate groups."""
    from tensorguess.data import dataset
    from tensorguess.features import bottlenecks, modules
    from tensorguess.head.train import Rows

    spec, loaded = modules.resolve(str(common.SHARED / "models" / "mobilenet_v1_100_224" / "feature_vector"))
    image_set = dataset.discover(DATASETS["sign-digits"])
    extraction = bottlenecks.extract(image_set.all_files(), spec, loaded,
                                     bottlenecks.BottleneckCache(cache, spec))
    parts = dataset.split(image_set, image_set.files, 10, 10)
    paths, truth = parts.files("training")
    return (Rows(extraction.features, truth, extraction.row_of(paths)),
            parts.arrays("validation", extraction.matrix), parts.arrays("testing", extraction.matrix),
            len(image_set.labels))


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--steps", nargs="+", type=int, default=[1500, 4000])
    parse.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parse.add_argument("--cache", type=Path, default=Path("/tmp/hidden-steps"))
    args = parse.parse_args()
    common.quiet_tensorflow()
    from tensorguess.head.train import Rows, Schedule, train_head

    training, (val_x, val_y), (test_x, test_y), classes = sign_digits_split(args.cache)
    results: dict = {"machine": common.machine(), "runs": []}
    for seed in args.seeds:
        for steps in args.steps:
            wall, (layer, _) = common.timed(train_head, training, Rows(val_x, val_y), classes,
                                            Schedule(steps, 0.001, 100, -1, steps, seed), chosen_head())
            row = {"seed": seed, "steps": steps, "seconds": round(wall, 1),
                   "validation": float(np.mean(layer.logits(val_x).argmax(1) == val_y)),
                   "test": float(np.mean(layer.logits(test_x).argmax(1) == test_y))}
            results["runs"].append(row)
            print(row, time.strftime("%H:%M:%S"), flush=True)
    common.finish(results, args.out)


if __name__ == "__main__":
    main()
