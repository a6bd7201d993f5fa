"""The hidden layer's spread over seeds, and what averages it away: one 512-unit layer of 4,000 steps
against the mean logits of several such layers, each trained from its own seed.

    python bench/hidden_ensemble.py [--seeds 1 2 3 4 5] [--cache /tmp/hidden-steps]
                                    [--out bench/results/hidden_ensemble.json]

Sign-digits' bottlenecks (MobileNet v1 from ../shared; --cache: a cache folder of an earlier run
spares the pass) and train.sh's split (by content: the same 165 test photos whatever the seed), the
recipe --recipe_mode auto chooses there (512 hidden, Adam 1e-3, dropout 0.2, smoothing 0.1, batches
of 100). train.sh's test accuracy moved from 95.2% to 98.2% with --random_seed alone (issue 23's
target: 96%): the seed draws the layer's first weights and its batches, not the split. Averaging
the logits of k layers is one layer of k x 512 hidden units (the second weights divided by k), so
an average exports as today's graph does.

Ways, each per seed: `single` (today: one layer, 4,000 steps), `mean3-split` (3 layers of 1,333
steps: the same steps in all), `mean3` (3 layers of 4,000: three times the steps), `mean3-2000` (3 of
2,000: one and a half times), `mean2` (2 of 4,000: twice). Validation and test accuracy of each, its
wall seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import common
from hidden_steps import chosen_head, sign_digits_split

WAYS = {"single": (1, 4000), "mean3-split": (3, 1333), "mean3": (3, 4000), "mean3-2000": (3, 2000),
        "mean2": (2, 4000)}


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parse.add_argument("--ways", nargs="+", default=list(WAYS))
    parse.add_argument("--cache", type=Path, default=Path("/tmp/hidden-steps"))
    args = parse.parse_args()
    common.quiet_tensorflow()
    from tensorguess.head.train import Rows, Schedule, train_head

    training, (val_x, val_y), (test_x, test_y), classes = sign_digits_split(args.cache)
    head = chosen_head()
    results: dict = {"machine": common.machine(), "test_n": len(test_y), "runs": []}
    for seed in args.seeds:
        for way in args.ways:
            members, steps = WAYS[way]
            started = time.perf_counter()
            val_logits, test_logits = 0.0, 0.0
            for member in range(members):
                layer, _ = train_head(training, Rows(val_x, val_y), classes,
                                      Schedule(steps, 0.001, 100, -1, steps, seed + 1000 * member), head)
                val_logits = val_logits + layer.logits(val_x) / members
                test_logits = test_logits + layer.logits(test_x) / members
            row = {"seed": seed, "way": way, "seconds": round(time.perf_counter() - started, 1),
                   "validation": round(float(np.mean(val_logits.argmax(1) == val_y)), 4),
                   "test": round(float(np.mean(test_logits.argmax(1) == test_y)), 4)}
            results["runs"].append(row)
            print(row, time.strftime("%H:%M:%S"), flush=True)
    for way in args.ways:
        tests = [row["test"] for row in results["runs"] if row["way"] == way]
        results.setdefault("summary", {})[way] = {"test_mean": round(float(np.mean(tests)), 4),
                                                  "test_min": min(tests), "test_max": max(tests)}
    common.finish(results, args.out)


if __name__ == "__main__":
    main()
