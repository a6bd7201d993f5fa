"""The points' near-duplicate rule, measured: groups, chaining and copies caught on the hands and mouse.

    python bench/point_groups.py [--out bench/results/point_groups.json] [--sample 100] [--cache DIR]

Points have no classes, so the classes' automatic threshold cannot be used. For each keypoint
set and each cosine from 0.90 to 0.99, with MobileNet v1's pooled features and the product's
pair search (find_pairs, 32 partners a photo), three ways of joining pairs into groups:
  single    every pair at the threshold joins its two groups (the classes' way);
  complete  checks/point_groups.complete_linkage: groups merge, strongest pairs first, only
            when every two photos of the result are a pair at the threshold;
  rule      checks/point_groups.near_duplicate_groups, the product's: complete, then each photo
            left alone joins the group of its closest photo at the threshold.
For each: the groups of 2 or more, the photos in them, the largest group's share of the set,
and the pairs of photos put in one group that stay inside a known group of the set or cross
it. Known groups: on the hands, signers (a signer's ten digits have consecutive IMG numbers
across the digit folders; a run is cut where a digit repeats or the number jumps by more than
12); on the mouse (one video), frames at most 3 apart. `pairs` counts the pairs at the
threshold themselves (exact cosines), inside and across. `copies_caught`: a seeded sample
of --sample photos (a quarter of the mouse's) made into near-copies (JPEG 75, doubled, halved,
5% brighter, 2% cropped off each side and resized back), each kind added to the set on its
own: the share of copies in their photo's group (and each copy's cosine to its photo).
`nearest_other_photo`: each photo's highest cosine to another; `nearest_in_its_known_group`:
how often that photo is in the photo's known group.
"""

from __future__ import annotations

import random
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

import common

KEYPOINTS = common.SHARED / "datasets" / "keypoints"
THRESHOLDS = [0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99]
VARIANTS = ["jpeg75", "double+jpeg75", "half+jpeg75", "bright5", "crop2"]
SIGNER_GAP = 12  # IMG numbers further apart than this start a new signer
FRAMES_APART = 3  # mouse frames at most this far apart count as near-copies in time


def near_copy(image: Image.Image, variant: str) -> tuple[Image.Image, str]:
    """(the copy, the format to save it in): JPEG only where the variant re-encodes."""
    steps = variant.split("+")
    width, height = image.size
    for step in steps:
        if step == "double":
            image = image.resize((width * 2, height * 2), Image.BICUBIC)
        elif step == "half":
            image = image.resize((max(1, width // 2), max(1, height // 2)), Image.LANCZOS)
        elif step == "bright5":
            image = ImageEnhance.Brightness(image).enhance(1.05)
        elif step == "crop2":
            dx, dy = round(width * 0.02), round(height * 0.02)
            image = image.crop((dx, dy, width - dx, height - dy)).resize((width, height), Image.BICUBIC)
        elif step != "jpeg75":
            raise ValueError(step)
    return image, "JPEG" if "jpeg75" in steps else "PNG"


def signers(relatives: list[str]) -> np.ndarray:
    """A signer number for each hand photo: runs of IMG numbers cut where a digit repeats or a gap > 12."""
    order = sorted(range(len(relatives)),
                   key=lambda k: int(re.search(r"IMG_(\d+)", relatives[k]).group(1)))
    signer = np.zeros(len(relatives), np.int64)
    current, seen, previous = 0, set(), None
    for k in order:
        digit, number = relatives[k].split("/")[0], int(re.search(r"IMG_(\d+)", relatives[k]).group(1))
        if previous is not None and (digit in seen or number - previous > SIGNER_GAP):
            current, seen = current + 1, set()
        seen.add(digit)
        signer[k], previous = current, number
    return signer


def frames(relatives: list[str]) -> np.ndarray:
    return np.array([int(re.search(r"(\d+)\D*$", relative).group(1)) for relative in relatives])


def single_linkage(count: int, pairs: list[tuple[int, int, float]]) -> list[list[int]]:
    from tensorguess.data.grouped_split import Components

    components = Components(count)
    for i, j, _ in pairs:
        components.join((i, j))
    return [found for found in components.members() if len(found) > 1]


def inside_across(groups: list[list[int]], same: np.ndarray) -> tuple[int, int]:
    """Pairs of photos put in one group: (inside a known group, across known groups)."""
    inside = across = 0
    for group in groups:
        block = same[np.ix_(group, group)]
        inside += int((block.sum() - len(group)) // 2)
        across += int((~block).sum() // 2)
    return inside, across


def summary(groups: list[list[int]], count: int, same: np.ndarray) -> dict:
    inside, across = inside_across(groups, same)
    return {"groups": len(groups), "photos_grouped": sum(map(len, groups)),
            "largest_share": round(max([len(g) for g in groups] + [1]) / count, 4),
            "grouped_pairs_inside": inside, "grouped_pairs_across": across}


def caught(groups: list[list[int]], originals: list[int], count: int) -> float:
    """The share of copies (rows count.. of the set) in the group of their photo."""
    group_of = {i: k for k, group in enumerate(groups) for i in group}
    hits = [group_of.get(count + c, -1 - c) == group_of.get(original, -2 - c)
            for c, original in enumerate(originals)]
    return round(float(np.mean(hits)), 3)


def measure(name: str, keypoints, known: np.ndarray, spec, loaded, cache, sample: int, rng,
            work: Path) -> dict:
    from tensorguess.checks.point_groups import complete_linkage, near_duplicate_groups, point_groups
    from tensorguess.data.images import read_rgb
    from tensorguess.features.bottlenecks import extract
    from tensorguess.features.near_duplicates import find_pairs

    instances = sorted(keypoints.instances, key=lambda instance: instance.relative)
    paths = [instance.path for instance in instances]
    extraction = extract(paths, spec, loaded, cache)
    digests = [extraction.digests[path] for path in paths]
    assert len(set(digests)) == len(paths), f"{name}: photos with the same content"
    matrix = extraction.matrix(paths)
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    cosines = unit @ unit.T
    upper = np.triu(np.ones_like(known), 1)
    pairs = find_pairs(digests, matrix, THRESHOLDS[0])
    count = len(paths)

    chosen = sorted(rng.sample(range(count), min(sample, count)))
    (work / name).mkdir(parents=True)
    copies: dict[str, list[tuple[int, int, float]]] = {}
    copy_cosines: dict[str, dict[str, float]] = {}
    for variant in VARIANTS:
        made = []
        for k in chosen:
            copy, fmt = near_copy(read_rgb(paths[k]), variant)
            made.append(work / name / f"{k}-{variant}.{'jpg' if fmt == 'JPEG' else 'png'}")
            copy.save(made[-1], fmt, **({"quality": 75} if fmt == "JPEG" else {}))
        found = extract(made, spec, loaded, cache)
        to_photo = np.einsum("ij,ij->i", unit[chosen], found.matrix(made)) / np.linalg.norm(
            found.matrix(made), axis=1)
        copy_cosines[variant] = quantiles(to_photo)
        copies[variant] = find_pairs(digests + [found.digests[path] for path in made],
                                     np.concatenate([matrix, found.matrix(made)]), THRESHOLDS[0])

    rows = []
    for threshold in THRESHOLDS:
        at = [pair for pair in pairs if pair[2] >= threshold]
        exact = (cosines >= threshold) & upper
        row = {"threshold": threshold,
               "pairs_inside": int((exact & known).sum()), "pairs_across": int((exact & ~known).sum())}
        ways = {"single": single_linkage, "complete": complete_linkage,
                "rule": lambda n, p: near_duplicate_groups(n, p)[0]}
        for way, join in ways.items():
            row[way] = summary(join(count, at), count, known)
            row[way]["copies_caught"] = {
                variant: caught(join(count + len(chosen), [p for p in found if p[2] >= threshold]), chosen,
                                count) for variant, found in copies.items()}
        rows.append(row)
        print(f"{name} {threshold:.2f} pairs {row['pairs_inside']}/{row['pairs_across']} | "
              + " | ".join(f"{way}: {row[way]['groups']} groups, largest {row[way]['largest_share']:.3f}, "
                           f"grouped {row[way]['grouped_pairs_inside']}/{row[way]['grouped_pairs_across']}, "
                           f"caught {row[way]['copies_caught']}" for way in ways),
              flush=True)
    product = point_groups(keypoints, extraction, warn=print)
    np.fill_diagonal(cosines, -1.0)
    nearest = cosines.argmax(axis=1)
    return {"photos": count, "copies_of": len(chosen),
            "nearest_other_photo": quantiles(cosines.max(axis=1)),
            "nearest_in_its_known_group": round(float(known[np.arange(count), nearest].mean()), 4),
            "copy_to_its_photo": copy_cosines, "rows": rows, "product_lines": product.lines}


def quantiles(values: np.ndarray) -> dict[str, float]:
    """The least, median and greatest of some cosines."""
    return {"min": round(float(values.min()), 4), "median": round(float(np.median(values)), 4),
            "max": round(float(values.max()), 4)}


def main() -> None:
    from tensorguess.data.keypoint_rows import PIXEL_CENTRE
    from tensorguess.data.keypoints import read_keypoints
    from tensorguess.features import modules
    from tensorguess.features.bottlenecks import BottleneckCache

    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--sample", type=int, default=100, help="hand photos made into near-copies")
    parse.add_argument("--cache", type=Path, help="bottleneck cache to reuse (default: a temporary one)")
    args = parse.parse_args()
    common.quiet_tensorflow()
    quiet = [].append
    hands = read_keypoints(KEYPOINTS / "sign-digits-hands.json", common.SIGN_DIGITS, warn=quiet, say=quiet)
    mouse = read_keypoints(KEYPOINTS / "openfield-mouse" / "keypoints.json", origin=PIXEL_CENTRE,
                           warn=quiet, say=quiet)
    results: dict = {"machine": common.machine(), "module": "mobilenet_v1_100_224", "sets": {}}
    spec, loaded = modules.resolve(str(common.MODULE))
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as temporary:
        cache = BottleneckCache(args.cache or Path(temporary) / "cache", spec)
        for name, keypoints, sample in (("hands", hands, args.sample), ("mouse", mouse, args.sample // 4)):
            relatives = sorted(instance.relative for instance in keypoints.instances)
            if name == "hands":
                signer = signers(relatives)
                known = signer[:, None] == signer[None, :]
            else:
                frame = frames(relatives)
                known = np.abs(frame[:, None] - frame[None, :]) <= FRAMES_APART
            results["sets"][name] = measure(name, keypoints, known, spec, loaded, cache, sample, rng,
                                            Path(temporary) / "copies")
            if name == "hands":
                results["sets"][name]["signers"] = int(signer.max()) + 1
    common.finish(results, args.out)


if __name__ == "__main__":
    main()
