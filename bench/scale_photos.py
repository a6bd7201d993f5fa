"""Make N real JPEGs of assorted sizes from ../shared's flowers, for the scale benchmark.

    python bench/scale_photos.py FOLDER COUNT [--workers 2]

Photo i is a deterministic function of i alone (seeded by i): a flowers photo of the
class i falls in (classes in proportion to their size in the set), a random crop of
45-100% of each side, scaled so its long side is 160-720 px, sometimes mirrored or
darkened, re-encoded as JPEG at quality 60-95 with a random chroma subsampling. So the
first 1,000 photos of a 100,000 set are exactly the 1,000 set, and a set grows by
appending. Written as FOLDER/<class>/s<i>.jpg, skipping files that already exist (an
interrupted run resumes). Nothing here is committed: the photos are a pure function of
../shared and the seed.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import common

FLOWERS = common.SHARED / "datasets" / "flowers"


def sources() -> list[tuple[str, list[Path]]]:
    return [(folder.name, sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg")))
            for folder in sorted(FLOWERS.iterdir()) if folder.is_dir()]


def class_of(i: int, weights: np.ndarray) -> int:
    """The class photo i belongs to: a stratified, deterministic interleaving by size."""
    return int(np.searchsorted(np.cumsum(weights), (i * 0.6180339887498949) % 1.0, side="right"))


def make_one(job: tuple[int, str, Path, Path]) -> int:
    from PIL import Image, ImageEnhance, ImageOps

    i, label, source, target = job
    if target.exists():
        return 0
    rng = np.random.default_rng([20261201, i])
    with Image.open(source) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    width, height = image.size
    crop_w = int(width * rng.uniform(0.45, 1.0))
    crop_h = int(height * rng.uniform(0.45, 1.0))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    image = image.crop((left, top, left + crop_w, top + crop_h))
    long_side = int(rng.integers(160, 721))
    scale = long_side / max(crop_w, crop_h)
    image = image.resize((max(1, round(crop_w * scale)), max(1, round(crop_h * scale))),
                         Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    if rng.random() < 0.3:
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.6, 1.3))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    image.save(partial, "JPEG", quality=int(rng.integers(60, 96)),
               subsampling=int(rng.choice([0, 1, 2])))
    os.replace(partial, target)
    return 1


def jobs(folder: Path, count: int, start: int = 0):
    classes = sources()
    weights = np.array([len(files) for _, files in classes], dtype=np.float64)
    weights /= weights.sum()
    for i in range(start, count):
        label, files = classes[class_of(i, weights)]
        pick = np.random.default_rng([7, i]).integers(len(files))
        yield i, label, files[pick], folder / label / f"s{i:06d}.jpg"


def make(folder: Path, count: int, workers: int = 2) -> int:
    """Make photos 0..count-1 in folder; returns how many were written now."""
    with ProcessPoolExecutor(workers) as pool:
        return sum(pool.map(make_one, jobs(folder, count), chunksize=256))


def main() -> None:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("folder", type=Path)
    parse.add_argument("count", type=int)
    parse.add_argument("--workers", type=int, default=2)
    args = parse.parse_args()
    written = make(args.folder, args.count, args.workers)
    print(f"{written} photos written, {args.count} in {args.folder}")


if __name__ == "__main__":
    main()
