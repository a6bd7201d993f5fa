"""--recipe_mode auto against the fixed recipes it chooses among, and the --fine_tune guard.

    python bench/recipe_choice.py [--datasets sign-digits flowers] [--seeds 1] [--fine-tune]
                                  [--work /tmp/recipe-choice] [--out bench/results/recipe_choice.json]

Each row is a real `retrain()` (train.sh's whole run) with MobileNet v1 on ../shared's
sets, the split train.sh makes (by content, near-duplicates kept on one side): the
figures are of the test split, which neither the choice nor any training reads.
First a cold run of the default (--recipe_mode auto), bottlenecks included; then, every
bottleneck cached, the default again (the rerun a user pays), and each candidate recipe
pinned with --recipe_mode fixed, in the same process: the baseline of the rerun's time is
the fixed default head's rerun. Wall seconds and this process's CPU seconds are both
reported: on a shared machine the wall time says more about the neighbours than the code.
With --fine-tune, the default with --fine_tune too (layers and epochs chosen by
validation): its validation accuracy against the head alone's on the same photos, and
what it kept.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import common
from recipes import DATASETS, config

AUTO = {"recipe_mode": "auto"}  # recipes.config pins each of its rows (fixed): the default, explicitly


def run(work: Path, images: Path, seed: int, settings: dict) -> dict:
    from tensorguess.retrain import retrain

    cfg = config(work, images, seed, settings)
    wall, cpu = time.perf_counter(), time.process_time()
    log = retrain(cfg, say=lambda line: None, warn=lambda line: None)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    report = json.loads((work / "report" / "report.json").read_text())
    steps = log["steps"]
    return {"settings": settings, "seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
            "accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "test_n": report["n"],
            "validation_accuracy": steps[-1]["validation_accuracy"] if steps else None,
            "recipe": {k: v for k, v in log["recipe"].items() if k != "line"}, "head": log["head"],
            "fine_tune": None if not log["fine_tune"] else {
                k: log["fine_tune"].get(k) for k in ("kept", "head_validation_accuracy", "tried",
                                                     "not_kept_because", "chosen_epoch", "layers_asked")}}


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--datasets", nargs="+", default=["sign-digits", "flowers"], choices=sorted(DATASETS))
    parse.add_argument("--seeds", nargs="+", type=int, default=[1])
    parse.add_argument("--fine-tune", action="store_true", help="also the default with --fine_tune")
    parse.add_argument("--work", type=Path, default=Path("/tmp/recipe-choice"))
    args = parse.parse_args()
    common.quiet_tensorflow()
    from tensorguess.head.recipe_choice import CANDIDATES

    results: dict = {"machine": common.machine(), "datasets": {}}
    for dataset in args.datasets:
        images, work = DATASETS[dataset], args.work / dataset
        work.mkdir(parents=True, exist_ok=True)
        rows: dict = {}
        for seed in args.seeds:
            if seed == args.seeds[0]:
                rows["auto, first run"] = run(work, images, seed, AUTO)  # fills the cache when cold
            rows[f"auto (the default), seed {seed}"] = run(work, images, seed, AUTO)
            for candidate in CANDIDATES:
                rows[f"fixed: {candidate.name}, seed {seed}"] = run(
                    work, images, seed, {"recipe_mode": "fixed", **candidate.settings})
            if args.fine_tune:
                rows[f"auto + --fine_tune, seed {seed}"] = run(work, images, seed,
                                                               {**AUTO, "fine_tune": True})
            print(json.dumps({dataset: rows}, indent=1), flush=True)
        baseline = rows[f"fixed: {CANDIDATES[0].name}, seed {args.seeds[0]}"]
        rerun = rows[f"auto (the default), seed {args.seeds[0]}"]
        rows["rerun ratio (auto / fixed default head), wall and CPU"] = {
            "wall": round(rerun["seconds"] / baseline["seconds"], 2),
            "cpu": round(rerun["cpu_seconds"] / baseline["cpu_seconds"], 2)}
        results["datasets"][dataset] = rows
    common.finish(results, args.out)


if __name__ == "__main__":
    main()
