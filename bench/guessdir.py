"""guessDir on 500 photos: tensor-guess's batched sort against the old one-run-per-image loop.

    python bench/guessdir.py [--out bench/results/guessdir.json] [--images 500] [--rounds 2]
                             [--int8_images 1200]

First trains a classifier on the superheroes set (200 steps, not timed) with
`python -m tensorguess train`, then sorts the same 500 sign-digits photos
(copied into a temporary folder) each way below, in turn, --rounds times:
  old   label_dir.py of xblaster/tensor-guess: import the graph into a tf.compat.v1
        session, then per file read its bytes, run 'final_result:0' fed
        'DecodeJpeg/contents:0', copy it to DEST/<label>--<str(score)[2:7]>.jpg.
  ours  predict.Classifier(graph, labels) + sort.folder.sort(classifier, src, dest).
All timings include loading the graph; the best round of each is compared. CPU seconds
(this process, all threads) are given too: they hardly move when other work shares the cores.

Then (--int8_images > 0) the classifier is exported as tflite-int8 (not timed), and
--int8_images photos (sign-digits, then flowers: 100x100 and up to 320 px) are sorted
with the float graph (`pb`) and with `tflite-int8`, in turn, --rounds times, beside the
network alone on the same photos decoded before any timing (the baseline: what int8 gains
where nothing else runs), and the stages around it, each alone:
  decode      decoded_batches() over the photos, no network;
  copy        sort.folder.sort with a stand-in classifier giving each photo the int8
              model's scores at once (listing, copying, the note, the manifest);
so int8/pb for the whole sort can be read against int8/pb for the network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import common


def train_classifier(work: Path) -> float:
    """Train into `work` on the superheroes class folders; returns the seconds it took."""
    (work / "data").mkdir()
    for folder in sorted(common.SUPERHEROES.iterdir()):
        (work / "data" / folder.name).symlink_to(folder, target_is_directory=True)
    command = [sys.executable, "-m", "tensorguess", "train", str(work),
               "--tfhub_module", str(common.MODULE), "--how_many_training_steps", "200",
               "--random_seed", "1"]
    env = {**os.environ, "PYTHONPATH": str(common.REPO / "src")}
    seconds, _ = common.timed(subprocess.run, command, check=True, env=env, stdout=subprocess.DEVNULL)
    return seconds


def pick_photos(source: Path, count: int) -> None:
    """Copy `count` sign-digits photos, an equal share of each digit, into one flat folder."""
    source.mkdir()
    folders = sorted(p for p in common.SIGN_DIGITS.iterdir() if p.is_dir())
    per_folder = -(-count // len(folders))
    photos = [p for folder in folders for p in sorted(folder.iterdir())[:per_folder]][:count]
    for photo in photos:
        shutil.copy2(photo, source / f"{photo.parent.name}_{photo.name}")


def sort_old_way(graph_path: Path, labels_path: Path, source: Path, dest: Path) -> int:
    """label_dir.py's loop, in TF 2's compat.v1 (its prints left out)."""
    import tensorflow as tf

    labels = [line.rstrip() for line in labels_path.read_text().splitlines()]
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph_path.read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    dest.mkdir()
    files = sorted(f for f in source.iterdir() if f.is_file())
    with tf.compat.v1.Session(graph=graph) as session:
        softmax = session.graph.get_tensor_by_name("final_result:0")
        for file in files:
            predictions = session.run(softmax, {"DecodeJpeg/contents:0": file.read_bytes()})
            best = predictions[0].argsort()[::-1][0]
            name = f"{labels[best]}--{str(predictions[0][best])[2:7]}.jpg"
            shutil.copyfile(file, dest / name)
    return len(files)


def sort_our_way(graph_path: Path, labels_path: Path, source: Path, dest: Path) -> int:
    from tensorguess.score.predict import Classifier
    from tensorguess.sort import folder

    with Classifier(graph_path, labels_path) as classifier:
        summary = folder.sort(classifier, source, dest, warn=lambda line: None)
    return summary.copied + summary.unreadable


FLOWERS = common.SHARED / "datasets" / "flowers"


def pick_mixed(source: Path, count: int) -> None:
    """`count` photos, sign-digits' then flowers', into one flat folder (bench/deploy.py's set)."""
    source.mkdir()
    photos = (common.image_files(*sorted(p for p in common.SIGN_DIGITS.iterdir() if p.is_dir()))
              + common.image_files(*sorted(p for p in FLOWERS.iterdir() if p.is_dir())))[:count]
    for number, photo in enumerate(photos):
        shutil.copy2(photo, source / f"{number:05d}_{photo.name}")


class ReadyScores:
    """A stand-in classifier that gives each photo scores computed before (the copy stage alone)."""

    def __init__(self, classifier, scores: dict):
        self.labels, self.digest, self.scores = classifier.labels, classifier.digest, scores
        self.ranked = classifier.ranked

    def score_files(self, paths, batch_size=32, show_progress=False):
        from tensorguess.score.predict import Scored

        return (Scored(path, self.scores[path]) for path in paths)


def int8_against_float(work: Path, count: int, rounds: int) -> dict:
    """The int8 sort against the float graph's, beside the network alone and the other stages."""
    from tensorguess.features.pipeline import decoded_batches
    from tensorguess.score.models import open_classifier
    from tensorguess.sort import folder

    env = {**os.environ, "PYTHONPATH": str(common.REPO / "src")}
    subprocess.run([sys.executable, "-m", "tensorguess", "export", str(work), "--format", "tflite-int8"],
                   check=True, env=env, capture_output=True)
    source = work / "mixed"
    pick_mixed(source, count)
    paths = sorted(source.iterdir())
    common.warm_page_cache(paths)
    batches = [batch.pixels for batch in decoded_batches(paths, 224, 32)]  # before any timing
    models = {name: open_classifier(work, name) for name in ("pb", "tflite-int8")}
    runs = {name: (model.run if hasattr(model, "run") else (lambda x, model=model: model._run(x)[0]))
            for name, model in models.items()}
    for run in runs.values():
        run(batches[0])  # warm up
    scores = {}
    for path, result in zip(paths, models["tflite-int8"].score_files(paths), strict=True):
        scores[path] = result.scores

    def network(name):
        return lambda round_: [runs[name](batch) for batch in batches]

    def sort(name):
        def way(round_):
            dest = work / f"sorted-{name}-{round_}"
            return folder.sort(models[name], source, dest, 32, warn=lambda line: None).copied
        return way

    def decode(round_):
        return sum(1 for _ in decoded_batches(paths, 224, 32))

    def copy(round_):
        stand_in = ReadyScores(models["tflite-int8"], scores)
        return folder.sort(stand_in, source, work / f"copied-{round_}", 32, warn=lambda line: None).copied

    measured = common.alternate({"network_pb": network("pb"), "network_int8": network("tflite-int8"),
                                 "sort_pb": sort("pb"), "sort_int8": sort("tflite-int8"),
                                 "decode": decode, "copy": copy}, rounds)
    for model in models.values():
        model.close()
    best, best_cpu = measured.best()
    return {
        "images": count,
        "seconds_per_round": measured.seconds,
        "cpu_seconds_per_round": measured.cpu_seconds,
        "images_per_second": {name: round(count / s, 1) for name, s in best.items()},
        "cpu_ms_per_image": {name: round(1000 * s / count, 2) for name, s in best_cpu.items()},
        "ratios": {
            "sort_int8_over_pb": round(best["sort_pb"] / best["sort_int8"], 2),
            "sort_int8_over_pb_cpu": round(best_cpu["sort_pb"] / best_cpu["sort_int8"], 2),
            "network_int8_over_pb": round(best["network_pb"] / best["network_int8"], 2),
            "network_int8_over_pb_cpu": round(best_cpu["network_pb"] / best_cpu["network_int8"], 2),
            # Each round's two sorts ran back to back, under the same load.
            "sort_int8_over_pb_per_round": [round(p / i, 2) for p, i in
                                            zip(measured.seconds["sort_pb"], measured.seconds["sort_int8"],
                                                strict=True)],
        },
    }


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--images", type=int, default=500)
    parse.add_argument("--rounds", type=int, default=2)
    parse.add_argument("--int8_images", type=int, default=1200,
                       help="photos the int8 and float sorts are compared on (0: not compared)")
    args = parse.parse_args()
    common.quiet_tensorflow()
    machine = common.machine()

    with tempfile.TemporaryDirectory(prefix="bench-guessdir-") as temp:
        work = Path(temp)
        training = train_classifier(work)
        graph, labels = work / "retrained_graph.pb", work / "retrained_labels.txt"
        source = work / "photos"
        pick_photos(source, args.images)
        common.warm_page_cache(sorted(source.iterdir()))

        ways = {name: (lambda round_, sort=sort, name=name:
                       sort(graph, labels, source, work / f"{name}-{round_}"))
                for name, sort in (("old", sort_old_way), ("ours", sort_our_way))}
        rounds = common.alternate(ways, args.rounds)
        assert all(count == args.images for count in rounds.results.values()), rounds.results
        int8 = int8_against_float(work, args.int8_images, args.rounds) if args.int8_images else None

    best, best_cpu = rounds.best()
    common.finish({
        "benchmark": "guessdir",
        "machine": machine,
        "images": args.images,
        "training_seconds_not_compared": round(training, 1),
        "seconds_per_round": rounds.seconds,
        "cpu_seconds_per_round": rounds.cpu_seconds,
        "best_seconds": best,
        "images_per_second": {name: round(args.images / s, 1) for name, s in best.items()},
        "cpu_ms_per_image": {name: round(1000 * s / args.images, 2) for name, s in best_cpu.items()},
        "ratios": {
            "ours_speedup_over_old": round(best["old"] / best["ours"], 2),
            "ours_speedup_over_old_cpu": round(best_cpu["old"] / best_cpu["ours"], 2),
        },
        "int8_against_float": int8,
    }, args.out)


if __name__ == "__main__":
    main()
