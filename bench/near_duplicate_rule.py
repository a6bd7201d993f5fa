"""The automatic near-duplicate threshold against fixed ones, on every shared photo set.

    python bench/near_duplicate_rule.py [--out bench/results/near_duplicate_rule.json]
        [--models v1 v2] [--sample 100] [--cache DIR]

A fixed cosine does not carry from one set to another: on sign-digits (hands on one
background) distinct photos are as close as near-copies elsewhere. For each set and
model this measures, at the threshold data_checks.automatic_threshold picks (the
product's code) and at fixed 0.90 and 0.95: the share of near-copies caught (made as
in near_duplicate_threshold.py: JPEG 75, 2% crop, +5% brightness and combinations),
the share of real photos joined to another distinct photo, and the largest group
(exact duplicates and near pairs, transitively).
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import numpy as np

import common
import near_duplicate_threshold as copies


def measure(name: str, folder: Path, spec, loaded, cache, sample: int, rng, work: Path) -> dict:
    from tensorguess.checks.data_checks import automatic_threshold
    from tensorguess.data.images import content_hash

    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    paths, labels = [], []
    for folder_of_class in classes:
        found = common.image_files(folder_of_class)
        paths += found
        labels += [folder_of_class.name] * len(found)
    features = copies.features(paths, spec, loaded, cache)
    digests = [content_hash(p) for p in paths]
    chosen = rng.sample(range(len(paths)), sample)
    (work / name).mkdir(parents=True, exist_ok=True)
    made = copies.make_copies([paths[i] for i in chosen], work / name)
    unit = copies.unit(features)
    copy_cosines = np.concatenate([
        np.sum(copies.unit(copies.features(made[v], spec, loaded, cache)) * unit[chosen], axis=1)
        for v in copies.CHOOSING])
    similar = unit @ unit.T
    same = np.array(digests)[:, None] == np.array(digests)[None, :]
    np.fill_diagonal(similar, -1)
    nearest_distinct = np.where(same, -1, similar).max(axis=1)
    rule = automatic_threshold(features, labels, digests)
    result = {"photos": len(paths), "automatic": round(rule, 4), "at": {}}
    for label, threshold in (("automatic", rule), ("0.90", 0.90), ("0.95", 0.95)):
        sizes = copies.groups(len(paths), similar, same & ~np.eye(len(paths), dtype=bool), threshold)
        result["at"][label] = {
            "threshold": round(threshold, 4),
            "copies_caught": round(float(np.mean(copy_cosines >= threshold)), 4),
            "photos_joined": round(float(np.mean(nearest_distinct >= threshold)), 4),
            "largest_group": int(sizes.max()),
        }
    return result


def main() -> None:
    from tensorguess.features import modules
    from tensorguess.features.bottlenecks import BottleneckCache

    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--models", nargs="+", default=["v1", "v2"], choices=sorted(copies.MODELS))
    parse.add_argument("--sample", type=int, default=100, help="photos per set made into near-copies")
    parse.add_argument("--cache", type=Path, help="bottleneck cache to reuse (default: a temporary one)")
    args = parse.parse_args()
    common.quiet_tensorflow()
    rng = random.Random(0)
    results: dict = {"machine": common.machine(), "models": {}}
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        for model in args.models:
            spec, loaded = modules.resolve(str(copies.MODELS[model]))
            cache = BottleneckCache(args.cache or work / "cache", spec)
            results["models"][model] = {}
            for name, folder in copies.SETS.items():
                found = measure(name, folder, spec, loaded, cache, args.sample, rng, work / model)
                results["models"][model][name] = found
                for label, row in found["at"].items():
                    print(f"{model} {name:12s} {label:9s} t={row['threshold']:.3f} copies caught "
                          f"{row['copies_caught']:.3f}, photos joined {row['photos_joined']:.3f}, "
                          f"largest group {row['largest_group']}", flush=True)
    common.finish(results, args.out)


if __name__ == "__main__":
    main()
