"""The near-duplicate threshold, measured: cosines of real photos to their near-copies and to each other.

    python bench/near_duplicate_threshold.py [--out bench/results/near_duplicate_threshold.json]
        [--models v1 v2] [--sample 150] [--cache DIR]

For each real photo set of ../shared (superheroes, sign-digits, flowers) and each model:
  copies    a seeded sample of --sample photos per set, each made into near-copies the way
            the issue's test makes them (JPEG quality 75, 2% cropped off each side and resized
            back, brightness +5%, and their combinations; plus a half-size copy, for
            information only); the cosine between each copy's features and its original's.
  distinct  for every photo, the highest cosine to any other photo of the set with other
            content (exact duplicates, same bytes, are left out: the digest joins them).
A good threshold sits above (nearly) all of `distinct` and below (nearly) all of `copies`;
the script prints the percentiles of both, the share of copies caught and of photos joined
at candidate thresholds, and the most similar distinct pairs, to look at.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

import common

SETS = {
    "superheroes": common.SUPERHEROES,
    "sign-digits": common.SIGN_DIGITS,
    "flowers": common.SHARED / "datasets" / "flowers",
}
MODELS = {
    "v1": common.SHARED / "models" / "mobilenet_v1_100_224" / "feature_vector",
    "v2": common.SHARED / "models" / "mobilenet_v2_100_224" / "feature_vector",
}
# The test makes these; "half" (half the size, quality 75) is reported but not used to choose.
VARIANTS = ["jpeg75", "crop2", "bright5", "crop2+jpeg75", "bright5+jpeg75", "crop2+bright5",
            "crop2+bright5+jpeg75", "half+jpeg75"]
CHOOSING = [v for v in VARIANTS if not v.startswith("half")]
CANDIDATES = [0.85, 0.88, 0.90, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98]
COPY_PERCENTILES = [0, 0.5, 1, 2, 5, 10, 50]
DISTINCT_PERCENTILES = [50, 90, 95, 99, 99.5, 100]


def near_copy(image: Image.Image, variant: str) -> tuple[Image.Image, str]:
    """(the copy, the format to save it in): JPEG only where the variant re-encodes."""
    steps = variant.split("+")
    width, height = image.size
    for step in steps:
        if step == "crop2":
            dx, dy = round(width * 0.02), round(height * 0.02)
            image = image.crop((dx, dy, width - dx, height - dy)).resize((width, height), Image.BICUBIC)
        elif step == "bright5":
            image = ImageEnhance.Brightness(image).enhance(1.05)
        elif step == "half":
            image = image.resize((max(1, width // 2), max(1, height // 2)), Image.LANCZOS)
        elif step != "jpeg75":
            raise ValueError(step)
    return image, "JPEG" if "jpeg75" in steps else "PNG"


def make_copies(originals: list[Path], folder: Path) -> dict[str, list[Path]]:
    from tensorguess.data.images import read_rgb

    copies: dict[str, list[Path]] = {variant: [] for variant in VARIANTS}
    for k, path in enumerate(originals):
        image = read_rgb(path)  # orientation applied, as the features see it
        for variant in VARIANTS:
            copy, fmt = near_copy(image, variant)
            target = folder / f"{k}-{variant}.{'jpg' if fmt == 'JPEG' else 'png'}"
            copy.save(target, fmt, **({"quality": 75} if fmt == "JPEG" else {}))
            copies[variant].append(target)
    return copies


def features(paths: list[Path], spec, loaded, cache) -> np.ndarray:
    from tensorguess.features.bottlenecks import extract

    result = extract(paths, spec, loaded, cache, batch_size=32)
    if result.skipped:
        raise SystemExit(f"unreadable: {result.skipped}")
    return result.matrix(paths)


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def percentiles(values: np.ndarray, at: list[float]) -> dict[str, float]:
    return {f"p{p:g}": round(float(np.percentile(values, p)), 4) for p in at}


def groups(count: int, similar: np.ndarray, same: np.ndarray, threshold: float) -> np.ndarray:
    """The size of the group of each photo when pairs at `threshold` and exact duplicates join."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    i, j = np.nonzero(np.triu((similar >= threshold) | same, 1))
    _, label = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(count, count)),
                                    directed=False)
    return np.bincount(label)[label]


def measure_set(name: str, folder: Path, spec, loaded, cache, sample: int, rng, work: Path) -> dict:
    from tensorguess.data.images import content_hash

    paths = common.image_files(*sorted(p for p in folder.iterdir() if p.is_dir()))
    digests = [content_hash(p) for p in paths]
    real = unit(features(paths, spec, loaded, cache))

    # Nearest photo of other content, for every photo.
    similar = real @ real.T
    same = np.array(digests)[:, None] == np.array(digests)[None, :]
    similar[same] = -1.0
    nearest = similar.max(axis=1)
    upper = np.triu(np.ones_like(same), 1) & ~same
    pair_cosines = similar[upper]
    top = np.argsort(-np.where(upper, similar, -1.0), axis=None)[:12]
    most_similar = [
        {"cosine": round(float(similar.flat[k]), 4),
         "a": str(paths[k // len(paths)].relative_to(folder)),
         "b": str(paths[k % len(paths)].relative_to(folder))}
        for k in top]

    chosen = sorted(rng.choice(len(paths), size=min(sample, len(paths)), replace=False).tolist())
    folder_of_copies = work / name
    folder_of_copies.mkdir()
    copies = make_copies([paths[k] for k in chosen], folder_of_copies)
    to_original: dict[str, np.ndarray] = {}
    for variant, copy_paths in copies.items():
        vectors = unit(features(copy_paths, spec, loaded, cache))
        to_original[variant] = np.einsum("ij,ij->i", vectors, real[chosen])
    used = np.concatenate([to_original[v] for v in CHOOSING])
    # Copies of one photo to each other, as when the original itself is not in the set.
    stacked = np.stack([unit(features(copies[v], spec, loaded, cache)) for v in CHOOSING], axis=1)
    between = np.einsum("kad,kbd->kab", stacked, stacked)
    first, second = np.triu_indices(len(CHOOSING), 1)
    copy_to_copy = between[:, first, second].ravel()
    sizes = {t: groups(len(paths), similar, same, t) for t in CANDIDATES}

    return {
        "photos": len(paths),
        "exact_duplicate_photos": int(len(paths) - len(set(digests))),
        "sampled": len(chosen),
        "copies": {variant: percentiles(values, COPY_PERCENTILES) for variant, values in to_original.items()},
        "copies_all_choosing": percentiles(used, COPY_PERCENTILES),
        "copy_to_copy": percentiles(copy_to_copy, COPY_PERCENTILES),
        "nearest_distinct": percentiles(nearest, DISTINCT_PERCENTILES),
        "at": {
            f"{t:.2f}": {
                "copies_caught": round(float(np.mean(used >= t)), 4),
                "copies_missed": int(np.sum(used < t)),
                "half_caught": round(float(np.mean(to_original["half+jpeg75"] >= t)), 4),
                "photos_joined": round(float(np.mean(nearest >= t)), 4),
                "distinct_pairs": int(np.sum(pair_cosines >= t)),
                "copy_to_copy_caught": round(float(np.mean(copy_to_copy >= t)), 4),
                "photos_in_groups": round(float(np.mean(sizes[t] > 1)), 4),
                "largest_group": int(sizes[t].max()),
                "most_partners": int((similar >= t).sum(axis=1).max()),
            }
            for t in CANDIDATES
        },
        "most_similar_distinct": most_similar,
    }


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["v1", "v2"])
    parse.add_argument("--sample", type=int, default=150, help="photos per set made into copies")
    parse.add_argument("--cache", type=Path, help="a bottleneck cache to reuse between runs")
    args = parse.parse_args()
    common.quiet_tensorflow()
    from tensorguess.features import modules
    from tensorguess.features.bottlenecks import BottleneckCache

    results: dict = {"machine": common.machine(), "variants": VARIANTS, "choosing": CHOOSING,
                     "sample_per_set": args.sample, "models": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models:
            spec, loaded = modules.resolve(str(MODELS[model]))
            cache = BottleneckCache(args.cache or Path(scratch) / "cache", spec)
            per_set = {}
            for name, folder in SETS.items():
                work = Path(scratch) / model
                work.mkdir(exist_ok=True)
                rng = np.random.default_rng(1)  # the same photos for every model
                per_set[name] = measure_set(name, folder, spec, loaded, cache, args.sample, rng, work)
            results["models"][model] = {"module": str(MODELS[model]), "sets": per_set}
    common.finish(results, args.out)


if __name__ == "__main__":
    main()
