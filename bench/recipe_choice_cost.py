"""The recipe choice's own cost, before and after issue 23's second pass, in one process.

    python bench/recipe_choice_cost.py [--dataset sign-digits] [--seeds 1 2 3] [--rounds 1]
                                       [--cache /tmp/recipe-choice-cost]
                                       [--out bench/results/recipe_choice_cost.json]

Only `recipe_choice.choose()`, on the cached bottlenecks of the set's training part (the
split train.sh makes, without its near-duplicate groups), MobileNet v1 from ../shared:
- before: 3 folds of every candidate, 1,000 steps a fold (the first pass's budget);
- after: the budget now (2 folds from 1,000 training photos, the hidden layer's folds 300 steps),
  logit adjustment's tau chosen on the out-of-fold logits.
Both in this process, alternated, wall and CPU seconds (the CPU figure moves little when other
processes share the cores), with each way's out-of-fold scores and what it chose.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import common
from recipes import DATASETS


def before_settings(recipe_choice):
    """The module's constants as the first pass had them: (LARGE_SET, CANDIDATES)."""
    old = tuple(dataclasses.replace(c, steps=recipe_choice.CV_STEPS) for c in recipe_choice.CANDIDATES)
    return 10**9, old


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--dataset", default="sign-digits", choices=sorted(DATASETS))
    parse.add_argument("--seeds", nargs="+", type=int, default=[1])
    parse.add_argument("--rounds", type=int, default=1)
    parse.add_argument("--cache", type=Path, default=Path("/tmp/recipe-choice-cost"))
    args = parse.parse_args()
    common.quiet_tensorflow()
    from tensorguess.config import TrainConfig
    from tensorguess.data import dataset
    from tensorguess.features import bottlenecks, modules
    from tensorguess.head import recipe_choice

    spec, loaded = modules.resolve(str(common.SHARED / "models" / "mobilenet_v1_100_224" / "feature_vector"))
    image_set = dataset.discover(DATASETS[args.dataset])
    cache = bottlenecks.BottleneckCache(args.cache, spec)
    extraction = bottlenecks.extract(image_set.all_files(), spec, loaded, cache)
    cfg = TrainConfig()
    parts = dataset.split(image_set, image_set.files, cfg.testing_percentage, cfg.validation_percentage)
    paths, truth = parts.files("training")
    rows = extraction.row_of(paths)
    now = (recipe_choice.LARGE_SET, recipe_choice.CANDIDATES)
    ways = {"before": before_settings(recipe_choice), "after": now}
    results: dict = {"machine": common.machine(), "dataset": args.dataset, "training_photos": len(truth),
                     "runs": []}
    for seed in args.seeds:
        for round_ in range(args.rounds):
            for name, (large, candidates) in ways.items():
                recipe_choice.LARGE_SET, recipe_choice.CANDIDATES = large, candidates
                try:
                    wall, cpu, choice = common.measured(recipe_choice.choose, cfg, extraction.features, rows,
                                                        truth, len(image_set.labels), seed)
                finally:
                    recipe_choice.LARGE_SET, recipe_choice.CANDIDATES = now
                log = choice.log
                results["runs"].append({"way": name, "seed": seed, "round": round_, "seconds": round(wall, 1),
                                        "cpu_seconds": round(cpu, 1), "chosen": log["chosen"],
                                        "tau": log["tau"], "folds": log["folds"],
                                        "candidates": log["candidates"]})
                print(name, seed, round(wall, 1), round(cpu, 1), log["line"], flush=True)
    common.finish(results, args.out)


if __name__ == "__main__":
    main()
