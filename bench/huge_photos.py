"""Huge photos: guessDir's peak memory over 12000x12000 photos, and what reduced decoding does to scores.

    python bench/huge_photos.py [--out bench/results/huge_photos.json] [--huge 3] [--workers 2 16]
                                [--margins 2 4 6 8] [--skip-scores] [--skip-memory]

1. Scores. Real photos larger than the network needs, made in a temporary folder from
   ../shared: the 3024x3024 phone photo of sign-digits (EXIF-rotated), its downscales
   and crops, and mosaics of flowers photos at their own resolution, as JPEGs (q 90)
   and a few PNGs. Each is scored by two softmax heads (numpy logistic regression on
   MobileNet v1 features of 100 flowers photos per class) once decoded at full size and
   shrunk as before, and once through pipeline.prepare_for_network: as shipped, with
   JPEGs decoded at 1/2 (what a JPEG over the budget gets), and with every JPEG
   reduced as far as each images.DRAFT_MARGIN of --margins allows (what a tiny budget
   would do). Reported: the largest change of any score, and of the features. Ordinary
   photos (all of superheroes and flowers) are checked to give the same pixels as before.
2. Memory. --huge 12000x12000 JPEGs and one 12000x12000 PNG (real superheroes photos
   upscaled, plus noise so that they compress like photos), and 4 ordinary photos, in a
   temporary folder. `python -m tensorguess sort DIR SRC DEST` runs over it with a
   classifier trained on 12 photos of each superhero (100 steps, seed 1), with
   TG_DECODE_WORKERS of each --workers, both ways:
     ours      as shipped: reduced decoding and the decode budget;
     baseline  pipeline.decode_reduced off (FULL_SIZE) and TG_DECODE_BUDGET_MPIX=0: every
               photo decoded at full size and shrunk by TensorFlow, with no limit.
   The figure is the child's peak RSS (ru_maxrss from os.wait4). Every run has an
   address-space limit (RLIMIT_AS) of 14 GB, less where that would leave this machine
   under 6 GB, so that a baseline that wants more fails alone (reported as
   "out_of_memory", with its peak so far) rather than starving the machine's other work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common

FLOWERS = common.SHARED / "datasets" / "flowers"
PHONE_PHOTO = common.SIGN_DIGITS / "7" / "IMG_5935.JPG"  # 3024x3024, EXIF orientation 6
SIZE = 224  # MobileNet v1's input side
HUGE_SIDE = 12000


# --- 1. scores --------------------------------------------------------------------------------------

def large_photos(folder: Path) -> list[Path]:
    """Real photos of 1792 to 5376 px a side, at their own resolution, as JPEG and some as PNG.

    1792, 2688 and 3584 are 2 x DRAFT_MARGIN x 224 for margins 4, 6 and 8: the sides
    at which a photo is decoded at half size and lands on the fewest pixels allowed.
    """
    from PIL import Image, ImageOps

    folder.mkdir()
    made: dict[str, Image.Image] = {}
    with Image.open(PHONE_PHOTO) as phone:
        upright = ImageOps.exif_transpose(phone)
    for side in (2688, 1792):
        made[f"phone-{side}"] = upright.resize((side, side), Image.LANCZOS)
    for name, box in {"crop-nw": (0, 0, 1792, 1792), "crop-se": (1232, 1232, 3024, 3024),
                      "crop-wide": (0, 600, 3024, 2400)}.items():
        made[f"phone-{name}"] = upright.crop(box)
    tiles = flower_tiles()
    for copy in range(2):
        for width, height in [(1792, 1792), (2688, 2688), (3584, 3584), (4480, 4480), (5376, 5376),
                              (3584, 1792)]:
            mosaic = Image.new("RGB", (width, height))
            for top in range(0, height, 200):
                for left in range(0, width, 300):
                    mosaic.paste(next(tiles), (left, top))
            made[f"flowers-{width}x{height}-{copy}"] = mosaic
    paths = [folder / "phone.jpg"]
    shutil.copy(PHONE_PHOTO, paths[0])  # the original file: its EXIF orientation, its encoder
    for name, image in made.items():
        image.save(folder / f"{name}.jpg", quality=90)
        paths.append(folder / f"{name}.jpg")
    for name in ("phone-2688", "phone-crop-wide", "flowers-2688x2688-0", "flowers-5376x5376-1"):
        made[name].save(folder / f"{name}.png", compress_level=1)
        paths.append(folder / f"{name}.png")
    return paths


def flower_tiles():
    """300x200 centre crops of the flowers photos, in a stable order, endlessly."""
    from PIL import Image

    while True:
        for path in common.image_files(*sorted(p for p in FLOWERS.iterdir() if p.is_dir())):
            with Image.open(path) as photo:
                if photo.width >= 300 and photo.height >= 200:
                    left, top = (photo.width - 300) // 2, (photo.height - 200) // 2
                    yield photo.convert("RGB").crop((left, top, left + 300, top + 200))


def flowers_heads(features_of) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Two softmax heads on the features of 100 photos per flower class: name -> (W, b, held-out accuracy).

    "retrain": train.sh's defaults (4000 steps of SGD, learning rate 0.01, class-uniform
    batches of 100), what a user's classifier is. "sharp": 3000 full-batch steps at
    learning rate 0.5, an overfit head whose scores move far more for the same change
    of features: the stricter test.
    """
    classes = sorted(p for p in FLOWERS.iterdir() if p.is_dir())
    train, held_out = [], []
    for label, folder in enumerate(classes):
        photos = common.image_files(folder)
        train += [(p, label) for p in photos[:100]]
        held_out += [(p, label) for p in photos[100:150]]
    x = features_of([p for p, _ in train])
    y = np.array([label for _, label in train])
    test_x = features_of([p for p, _ in held_out])
    test_y = np.array([label for _, label in held_out])
    truth = np.eye(len(classes))
    order, counts = np.argsort(y, kind="stable"), np.bincount(y)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rng = np.random.default_rng(1)
    heads = {}
    for name, steps, rate, batch in (("retrain", 4000, 0.01, 100), ("sharp", 3000, 0.5, None)):
        weights, biases = rng.normal(0, 0.001, (x.shape[1], len(classes))), np.zeros(len(classes))
        for _ in range(steps):
            if batch:  # a class uniformly at random, then a photo of it, as retrain.py draws
                picked = rng.integers(0, len(classes), batch)
                chosen = order[offsets[picked] + (rng.random(batch) * counts[picked]).astype(int)]
            else:
                chosen = slice(None)
            error = softmax(x[chosen] @ weights + biases) - truth[y[chosen]]
            weights -= rate * x[chosen].T @ error / len(error)
            biases -= rate * error.mean(axis=0)
        accuracy = float(np.mean(np.argmax(test_x @ weights + biases, 1) == test_y))
        heads[name] = (weights, biases, accuracy)
    return heads


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def score_changes(margins: list[int]) -> dict:
    """How far each way of decoding moves the scores of real photos from a full-size decode."""
    import tensorflow as tf

    from tensorguess.data import decode_budget, images
    from tensorguess.features import pipeline
    from tensorguess.features.modules import resize_image

    module = tf.saved_model.load(str(common.MODULE))

    def features(pixels: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([module(tf.constant(np.stack(pixels[i:i + 32]))).numpy()
                               for i in range(0, len(pixels), 32)]).astype(np.float64)

    def as_before(path: Path) -> np.ndarray:  # the decode and resize of the previous version
        return resize_image(images.read_image(path), SIZE).numpy()

    def as_now(path: Path, budget: int | None = None) -> np.ndarray:
        """prepare_for_network's pixels, enlarged as a batch is, with a decode budget of `budget`."""
        shipped = decode_budget.shared()
        decode_budget._shared = decode_budget.DecodeBudget(budget) if budget else shipped
        try:
            return pipeline.network_batch([pipeline.prepare_for_network(path, SIZE)], SIZE)[0]
        finally:
            decode_budget._shared = shipped

    def half_size(path: Path) -> int:  # a budget that the photo fits in once decoded at 1/2
        from PIL import Image

        with Image.open(path) as image:
            return -(-image.width // 2) * -(-image.height // 2)

    started = time.perf_counter()
    ordinary = common.image_files(*sorted(p for p in common.SUPERHEROES.iterdir() if p.is_dir()),
                                  *sorted(p for p in FLOWERS.iterdir() if p.is_dir()))
    unchanged = sum(np.array_equal(pipeline.prepare_for_network(p, SIZE), as_before_shrunk(p))
                    for p in ordinary)
    heads = flowers_heads(lambda paths: features([as_before(p) for p in paths]))

    with tempfile.TemporaryDirectory(prefix="bench-huge-scores-") as temp:
        photos = large_photos(Path(temp) / "large")
        before = features([as_before(p) for p in photos])

        def changes(now: np.ndarray) -> dict:
            relative = np.linalg.norm(now - before, axis=1) / np.linalg.norm(before, axis=1)
            entry: dict = {"max_relative_feature_change": float(relative.max())}
            for name, (weights, biases, _) in heads.items():
                change = np.abs(softmax(now @ weights + biases) - softmax(before @ weights + biases)).max(1)
                phone = [c for c, p in zip(change, photos, strict=True) if p.name.startswith("phone")]
                entry[name] = {"max_score_change": float(change.max()),
                               "mean_score_change": float(change.mean()),
                               "worst_photo": photos[int(change.argmax())].name,
                               "max_score_change_phone_photos": float(max(phone))}
            return entry

        ways = {"shipped (no photo here is over the budget: full decode, shrunk in bands)":
                features([as_now(p) for p in photos]),
                "JPEGs decoded at 1/2 where DRAFT_MARGIN allows (2688 px a side and more), "
                "as a JPEG over the default budget is":
                features([as_now(p, half_size(p)) if p.suffix == ".jpg" else as_now(p) for p in photos])}
        original = images.DRAFT_MARGIN
        try:
            for margin in margins:  # a budget of 1 pixel: every JPEG reduced as far as the margin lets it
                images.DRAFT_MARGIN = margin
                ways[f"every JPEG reduced as far as DRAFT_MARGIN {margin} allows"] = features(
                    [as_now(p, 1) for p in photos])
        finally:
            images.DRAFT_MARGIN = original
        sizes = {}
        for p in photos:
            from PIL import Image

            with Image.open(p) as image:
                sizes[p.name] = "x".join(map(str, image.size))
        results = {way: changes(now) for way, now in ways.items()}
    return {
        "ordinary_photos": len(ordinary),
        "ordinary_photos_with_identical_pixels": int(unchanged),
        "heads": "softmax regression on MobileNet v1 features of 100 flowers photos per class",
        "heads_held_out_accuracy": {name: round(head[2], 3) for name, head in heads.items()},
        "large_photos": sizes,
        "draft_margin_shipped": original,
        "changes_from_a_full_size_decode": results,
        "seconds": round(time.perf_counter() - started, 1),
    }


def as_before_shrunk(path: Path) -> np.ndarray:
    """prepare_for_network's pixels as the previous version made them (full decode, TF shrink)."""
    from tensorguess.data.images import read_image
    from tensorguess.features.modules import shrink_to_fit

    image = read_image(path)
    if image.shape[0] > SIZE or image.shape[1] > SIZE:
        return shrink_to_fit(image, SIZE).numpy()
    return image.astype(np.float32) * np.float32(1 / 255)


# --- 2. memory --------------------------------------------------------------------------------------

def huge_photos(folder: Path, count: int) -> list[str]:
    """`count` 12000x12000 JPEGs and one PNG from real photos, plus 4 ordinary photos."""
    from PIL import Image

    folder.mkdir()
    sources = [sorted((common.SUPERHEROES / name).iterdir()) for name in ("elsa", "darth_vader")]
    rng = np.random.default_rng(1)
    noise = rng.integers(-12, 13, size=(1000, 1000, 3), dtype=np.int16)  # tiled: cheap to make
    for index in range(count + 1):
        with Image.open(sources[index % 2][index // 2]) as photo:
            pixels = np.asarray(photo.convert("RGB").resize((HUGE_SIDE, HUGE_SIDE), Image.BILINEAR)).copy()
        for top in range(0, HUGE_SIDE, 1000):  # in tiles: no int16 copy of the whole image
            for left in range(0, HUGE_SIDE, 1000):
                tile = pixels[top:top + 1000, left:left + 1000]
                tile[...] = np.clip(tile + noise, 0, 255)
        image = Image.fromarray(pixels)
        del pixels
        if index < count:
            image.save(folder / f"huge-{index}.jpg", quality=90)
        else:
            image.save(folder / "huge.png", compress_level=1)
        del image
    for index, photo in enumerate(sources[0][:2] + sources[1][:2]):
        shutil.copy(photo, folder / f"ordinary-{index}{photo.suffix.lower()}")
    return sorted(f"{p.name} ({p.stat().st_size / 1e6:.0f} MB)" for p in folder.iterdir())


def train_classifier(work: Path) -> None:
    """tests/bats/test_helper.bash's train_small_classifier, through the package's own CLI."""
    for name in ("darth_vader", "elsa"):
        (work / "data" / name).mkdir(parents=True)
        for photo in sorted((common.SUPERHEROES / name).iterdir())[:12]:
            shutil.copy(photo, work / "data" / name)
    subprocess.run([sys.executable, "-m", "tensorguess", "train", str(work),
                    "--tfhub_module", str(common.MODULE), "--how_many_training_steps", "100",
                    "--random_seed", "1"], check=True, env=child_env({}), stdout=subprocess.DEVNULL)


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(common.REPO / "src"), "TF_CPP_MIN_LOG_LEVEL": "2", **extra}
    for name in ("TG_DECODE_BUDGET_MPIX", "TG_DECODE_WORKERS"):
        if name not in extra:
            env.pop(name, None)
    return env


# The baseline's child: the package's CLI with reduced decoding off (pipeline's hook for this).
FULL_SIZE = ("import sys; from tensorguess.features import pipeline; pipeline.decode_reduced = False; "
             "from tensorguess.cli import main; sys.exit(main(sys.argv[1:]))")


def memory_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


# Runs the command given after it as its child and writes that child's peak RSS (KiB) and
# exit status to the file named first. Measuring from this small process matters: a
# child's ru_maxrss includes the address space it was forked from, so a child of this
# benchmark (which holds TensorFlow and a module) would report at least this one's size.
MEASURE = """
import os, resource, subprocess, sys
result, limit, command = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
child = subprocess.Popen(command, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
_, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
open(result, "w").write(f"{usage.ru_maxrss} {child.returncode}")
"""


def peak_rss(command: list[str], env: dict[str, str], limit: int) -> dict:
    """Run `command`; its peak RSS in MB, seconds, exit status, under an address-space limit."""
    started = time.perf_counter()
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as result:
        run = subprocess.run([sys.executable, "-c", MEASURE, result.name, str(limit), *command], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
        max_rss, status = map(int, Path(result.name).read_text().split())
    errors = run.stderr.decode(errors="replace").strip()
    outcome = {"peak_rss_mb": round(max_rss / 1024), "seconds": round(time.perf_counter() - started, 1),
               "exit_status": status}
    if status != 0:
        outcome["out_of_memory"] = any(sign in errors for sign in
                                       ("MemoryError", "OOM when allocating", "bad_alloc"))
        outcome["stderr_tail"] = errors.splitlines()[-1:]
    return outcome


def memory(count: int, workers: list[int]) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-huge-memory-") as temp:
        work = Path(temp)
        train_classifier(work / "tf_files")
        source = work / "photos"
        files = huge_photos(source, count)
        common.warm_page_cache(sorted(source.iterdir()))
        limit = max(2 << 30, min(memory_available() - (6 << 30), 14 << 30))
        runs: dict[str, dict] = {}
        ways = {"ours": (["-m", "tensorguess"], {}),
                "baseline": (["-c", FULL_SIZE], {"TG_DECODE_BUDGET_MPIX": "0"})}
        for worker_count in workers:
            for way, (program, settings) in ways.items():
                name = f"{way}, {worker_count} workers"
                dest = work / f"sorted-{way}-{worker_count}"
                command = [sys.executable, *program, "sort", str(work / "tf_files"), str(source), str(dest)]
                env = child_env({**settings, "TG_DECODE_WORKERS": str(worker_count)})
                runs[name] = peak_rss(command, env, limit)
                manifest = dest / "guesses.jsonl"
                runs[name]["sorted"] = len(manifest.read_text().splitlines()) if manifest.exists() else 0
                print(name, runs[name], file=sys.stderr, flush=True)
                shutil.rmtree(dest, ignore_errors=True)
        for name, pattern in (("the JPEGs and ordinary photos only", "*.jpg"),
                              ("the 4 ordinary photos only", "ordinary-*")):
            subset = work / name.replace(" ", "-")
            subset.mkdir()
            for photo in sorted(source.glob(pattern)):
                os.link(photo, subset / photo.name)
            for worker_count in workers:
                runs[f"ours, {worker_count} workers, {name}"] = peak_rss(
                    [sys.executable, "-m", "tensorguess", "sort", str(work / "tf_files"), str(subset),
                     str(work / f"sorted-{subset.name}-{worker_count}")],
                    child_env({"TG_DECODE_WORKERS": str(worker_count)}), limit)
    return {"photos": files, "address_space_limit_gb": round(limit / (1 << 30), 1), "runs": runs}


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--huge", type=int, default=3, help="12000x12000 JPEGs (a PNG is added)")
    parse.add_argument("--workers", type=int, nargs="+", default=[2, 16])
    parse.add_argument("--margins", type=int, nargs="+", default=[2, 4, 6, 8])
    parse.add_argument("--skip-scores", action="store_true")
    parse.add_argument("--skip-memory", action="store_true")
    args = parse.parse_args()
    common.quiet_tensorflow()
    results = {"benchmark": "huge_photos", "machine": common.machine()}
    if not args.skip_scores:
        results["scores"] = score_changes(args.margins)
        print(results["scores"], file=sys.stderr, flush=True)
    if not args.skip_memory:
        results["memory"] = memory(args.huge, args.workers)
    common.finish(results, args.out)


if __name__ == "__main__":
    main()
