"""guessDir over 3,000 photos with the .pb, the float TFLite and the int8 TFLite; batch-1 latency.

    python bench/deploy.py [--out bench/results/deploy.json] [--images 3000] [--rounds 2]

First (not timed in the comparison) trains a classifier on sign-digits (1000 steps, seed 1)
with `python -m tensorguess train`, then exports it with `python -m tensorguess export
--format tflite,tflite-int8`. The photos are all of sign-digits and then flowers, copied
into one flat folder. Each round sorts them once per format, in turn, each into a new DEST:
  pb           score.models.open_classifier(DIR, "pb") + sort.folder.sort
  tflite       the same with "tflite"       (LiteRT, XNNPACK, one thread per core)
  tflite-int8  the same with "tflite-int8"
so every way decodes, resizes, copies and records alike; only the network differs. The best
round of each is compared. Batch-1 latency: one decoded photo [1,224,224,3] run 50 times
(after 5 warm-up runs) through each format's network alone; the median is given.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

FLOWERS = common.SHARED / "datasets" / "flowers"
FORMATS = ("pb", "tflite", "tflite-int8")


def train_and_export(work: Path) -> dict:
    (work / "data").mkdir()
    for folder in sorted(common.SIGN_DIGITS.iterdir()):
        (work / "data" / folder.name).symlink_to(folder, target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(common.REPO / "src")}
    train = [sys.executable, "-m", "tensorguess", "train", str(work), "--tfhub_module",
             str(common.MODULE), "--how_many_training_steps", "1000", "--random_seed", "1"]
    train_s, _ = common.timed(subprocess.run, train, check=True, env=env, stdout=subprocess.DEVNULL)
    export = [sys.executable, "-m", "tensorguess", "export", str(work), "--format", "tflite,tflite-int8"]
    export_s, done = common.timed(subprocess.run, export, check=True, env=env, capture_output=True,
                                  text=True)
    table = [line for line in done.stdout.splitlines() if line.startswith(("pb ", "tflite"))]
    return {"train_seconds": round(train_s, 1), "export_seconds": round(export_s, 1),
            "table": table}


def pick_photos(source: Path, count: int) -> int:
    source.mkdir()
    photos = (common.image_files(*sorted(p for p in common.SIGN_DIGITS.iterdir() if p.is_dir()))
              + common.image_files(*sorted(p for p in FLOWERS.iterdir() if p.is_dir())))[:count]
    for i, photo in enumerate(photos):
        shutil.copy2(photo, source / f"{i:05d}_{photo.name}")
    return len(photos)


def latency_ms(classifier, pixels) -> float:
    run = classifier.run if hasattr(classifier, "run") else (lambda x: classifier._run(x)[0])
    for _ in range(5):
        run(pixels)
    times = []
    for _ in range(50):
        started = time.perf_counter()
        run(pixels)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


def main() -> None:
    args = common.parser(__doc__.splitlines()[0])
    args.add_argument("--images", type=int, default=3000)
    args.add_argument("--rounds", type=int, default=2)
    options = args.parse_args()
    common.quiet_tensorflow()
    from tensorguess.features.pipeline import decoded_batches
    from tensorguess.score.models import open_classifier
    from tensorguess.sort import folder

    results = {"machine": common.machine()}
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp) / "tf_files"
        work.mkdir()
        results["setup"] = train_and_export(work)
        source = Path(temp) / "photos"
        results["images"] = pick_photos(source, options.images)
        common.warm_page_cache(sorted(source.iterdir()))
        sizes = {name: (work / file).stat().st_size for name, file in
                 (("pb", "retrained_graph.pb"), ("tflite", "retrained_graph.tflite"),
                  ("tflite-int8", "retrained_graph_int8.tflite"))}

        def sort_with(model):
            def way(round_):
                dest = Path(temp) / f"sorted-{model}-{round_}"
                with open_classifier(work, model) as classifier:
                    summary = folder.sort(classifier, source, dest, 32, warn=lambda line: None)
                return summary.copied
            return way

        rounds = common.alternate({model: sort_with(model) for model in FORMATS}, options.rounds)
        best, best_cpu = rounds.best()
        agreement = _agreement(Path(temp), options.rounds - 1)
        photo = sorted(source.iterdir())[0]
        pixels = next(iter(decoded_batches([photo], 224, 1))).pixels
        latency = {}
        for model in FORMATS:
            with open_classifier(work, model) as classifier:
                latency[model] = latency_ms(classifier, pixels)
    n = results["images"]
    results.update({
        "threads": os.cpu_count(),
        "file_bytes": sizes,
        "seconds": rounds.seconds, "cpu_seconds": rounds.cpu_seconds,
        "copied": rounds.results,
        "images_per_second": {model: round(n / best[model], 1) for model in FORMATS},
        "cpu_ms_per_image": {model: round(best_cpu[model] / n * 1000, 2) for model in FORMATS},
        "speedup_over_pb": {model: round(best["pb"] / best[model], 2) for model in FORMATS},
        "cpu_speedup_over_pb": {model: round(best_cpu["pb"] / best_cpu[model], 2) for model in FORMATS},
        "label_agreement_with_pb": agreement,
        "batch1_latency_ms": latency,
    })
    common.finish(results, options.out)


def _agreement(temp: Path, round_: int) -> dict:
    """Share of photos each format gave the .pb's label, from the last round's manifests."""
    import json

    def labels(model):
        lines = (temp / f"sorted-{model}-{round_}" / "guesses.jsonl").read_text().splitlines()
        return {r["source"]: r.get("label") for r in map(json.loads, lines)}

    reference = labels("pb")
    return {model: round(sum(reference[s] == label for s, label in labels(model).items())
                         / len(reference), 4) for model in FORMATS}


if __name__ == "__main__":
    main()
