"""Command line: parse arguments, delegate to the library, turn errors into one line.

    python -m tensorguess train DIR [flags]
    python -m tensorguess guess DIR IMAGE [IMAGE...] [--json]
    python -m tensorguess sort DIR SRC DEST
    python -m tensorguess evaluate DIR LABELLED_DIR [OUT_DIR]
    python -m tensorguess export DIR [--format tflite,tflite-int8,coreml]
    python -m tensorguess serve DIR [--port 8080] [--host 127.0.0.1]
    python -m tensorguess fetch-module URL
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from dataclasses import fields
from pathlib import Path

from tensorguess import stderr_noise, strict_json
from tensorguess.config import SettingError, TrainConfig
from tensorguess.engine.select import ENGINES, PHOTO_TRANSPORTS

EXIT_USAGE = 2
EXIT_FAILED = 1

TRAIN_HELP = {
    "image_dir": "folder of category folders of images (default: DIR/data); with train/, val/ and "
    "test/ folders of category folders, that split is used",
    "labels_csv": "CSV naming each photo and its label (columns path and label, optionally split: "
    "train, val or test), paths relative to the CSV; instead of DIR/data's folders",
    "tfhub_module": "TF Hub module URL or handle, or a local SavedModel folder "
    "(default: $TFHUB_MODULE, else Inception v3)",
    "input_size": "module input height and width in pixels (default: from the module)",
    "input_range": "module input value range: 0,1 (TF Hub), -1,1 or 0,255 (default: 0,1)",
    "trust_graph": "load the module even if it holds operations that can do more than compute "
    "(read or write files...); only for a module whose maker you trust",
    "bottleneck_dir": "bottleneck cache folder (default: DIR/bottlenecks)",
    "bottleneck_batch_size": "images per batch when computing bottlenecks",
    "engine": "where bottlenecks are computed: local (this process) or ray (a Ray cluster: "
    "pip install -r requirements-ray.txt)",
    "ray_address": "the Ray cluster of --engine ray (default: RAY_ADDRESS, else one running or "
    "started on this machine)",
    "ray_photos": "--engine ray: paths (workers read the photos: a filesystem every node sees) "
    "or bytes (this machine reads them and sends them)",
    "how_many_training_steps": "training steps",
    "learning_rate": "learning rate of the final layer",
    "train_batch_size": "images per training step",
    "hidden_units": "a ReLU layer of this many units before the softmax (0: retrain.py's single layer)",
    "dropout_rate": "share of each layer's inputs dropped at random while training",
    "label_smoothing": "train towards labels smoothed by this much (0: none)",
    "optimizer": "sgd (retrain.py's), momentum (SGD with momentum 0.9) or adam",
    "weight_decay": "decoupled weight decay of the head's weights, per step (0: none)",
    "validation_batch_size": "images per validation evaluation; -1 uses all",
    "test_batch_size": "images for the final test; -1 uses all",
    "eval_step_interval": "evaluate every this many steps",
    "testing_percentage": "percentage of images kept for the final test",
    "near_duplicate_threshold": "photos whose features are at least this similar (cosine), or "
    "identical, are kept in one split (default: automatic, 0.90 or more; see README); 1 joins "
    "only identical features",
    "validation_percentage": "percentage of images kept for validation",
    "random_seed": "seed for a reproducible run (default: random, written to train_log.json)",
    "print_misclassified_test_images": "list the test images the classifier got wrong",
    "output_graph": "frozen graph to write (default: DIR/retrained_graph.pb)",
    "output_labels": "labels file to write (default: DIR/retrained_labels.txt)",
    "saved_model_dir": "SavedModel folder to write (default: DIR/saved_model)",
    "train_log": "training log to write (default: DIR/train_log.json)",
    "final_tensor_name": "name of the output softmax in the graph",
    "augment": "train also on this many distorted variants of each training photo (never of "
    "validation or test photos), their bottlenecks cached like the photos' own (default: 0; 10 "
    "when one of retrain.py's --flip_left_right, --random_crop, --random_scale, "
    "--random_brightness is given)",
    "augment_flip": "chance of a mirror image, %% (default: 50)",
    "augment_crop": "at most this %% of each side cut off, the rest enlarged back (default: 20)",
    "augment_scale": "a further zoom of up to this %% (default: 20)",
    "augment_rotation": "rotation of up to this many degrees either way (default: 10)",
    "augment_brightness": "brightness within +- this %% (default: 20)",
    "augment_contrast": "contrast within +- this %% (default: 20)",
    "augment_saturation": "saturation within +- this %% (default: 20)",
    "augment_noise": "Gaussian noise of up to this %% of the full range (default: 2)",
    "augment_blur": "a blur or a sharpening of up to this %% of a 3x3 Gaussian's (default: 30)",
    "augment_cutout": "a grey square of up to this %% of the side (default: 0, off)",
    "flip_left_right": "retrain.py's: mirror images among the variants (turns --augment on)",
    "random_crop": "retrain.py's: --augment_crop, in %% (turns --augment on)",
    "random_scale": "retrain.py's: --augment_scale, in %% (turns --augment on)",
    "random_brightness": "retrain.py's: --augment_brightness, in %% (turns --augment on)",
    "fine_tune": "after the head, train the module's last layers with it on the training photos, "
    "decoded and distorted (the --augment_* recipe) every epoch; keeps the epoch the validation "
    "split likes best; resumes from DIR/fine_tune_checkpoint after an interruption",
    "fine_tune_layers": "layers of the module trained by --fine_tune, counted from its output, or all",
    "fine_tune_learning_rate": "Adam's learning rate for --fine_tune",
    "fine_tune_epochs": "epochs of --fine_tune (passes over the training photos)",
    "fine_tune_batch_size": "photos per step of --fine_tune",
    "class_weights": "balanced: draw training images uniformly and weight the loss by inverse "
    "class frequency; none: draw each batch class-uniformly, as retrain.py",
    "calibrate": "temperature scaling fitted on the validation split: auto applies it when it "
    "lowers the validation NLL, on always (the bare flag), off never",
    "summaries_dir": "write TensorBoard scalars into a new run-<time> folder inside this folder "
    "(never deleted)",
    "report_dir": "evaluation report of the test split (default: DIR/report)",
}
CHOICES = {"engine": ENGINES, "ray_photos": PHOTO_TRANSPORTS,
           "class_weights": ("none", "balanced"), "calibrate": ("auto", "on", "off"),
           "optimizer": ("sgd", "momentum", "adam")}

IN_DIR = ("image_dir", "labels_csv", "bottleneck_dir", "output_graph", "output_labels", "saved_model_dir",
          "train_log", "summaries_dir", "report_dir")


class UsageError(Exception):
    pass


def fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"tensor-guess: {message}", file=sys.stderr)
    return code


WRAPPERS = {"train": "train.sh", "guess": "guess.sh", "sort": "guessDir.sh",
            "evaluate": "evaluate.sh", "export": "export.sh", "serve": "serve.sh"}


class Parser(argparse.ArgumentParser):
    """argparse, and a hint when a file name that starts with '-' was taken for a flag."""

    argv: list[str] = []  # the arguments being parsed, set by main()

    def error(self, message: str):
        dashed = [arg for arg in self.argv if arg.startswith("-") and os.path.lexists(arg)]
        if dashed:
            wrapper = WRAPPERS.get(self.prog.split()[-1], "guess.sh")
            message += (f"; {dashed[0]!r} was read as a flag: put file names that start with '-' "
                        f"after '--' ({wrapper} DIR -- {dashed[0]})")
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tensorguess", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train", help="retrain the final layer on DIR/data/<category>/ images",
        description="Retrain a classifier on DIR/data/<category>/ images. Relative paths given "
        "to flags are taken inside DIR.",
    )
    train.add_argument("dir", type=Path, help="the tf_files folder")
    defaults = TrainConfig()
    for item in fields(TrainConfig):
        default = getattr(defaults, item.name)
        flag = f"--{item.name}"
        if isinstance(default, bool):
            train.add_argument(flag, action="store_true", help=TRAIN_HELP[item.name])
            continue
        kind = {"input_size": int, "random_seed": int, "near_duplicate_threshold": float,
                "augment": int}.get(item.name, float if item.name.startswith("augment_") else type(default))
        if kind in (Path, type(None)):
            kind = str
        shown = "" if default is None or item.name in IN_DIR or item.name == "tfhub_module" else (
            f" (default: {default})")
        extra = {"choices": CHOICES[item.name]} if item.name in CHOICES else {}
        if item.name == "calibrate":
            extra.update(nargs="?", const="on")
        train.add_argument(flag, type=kind, default=None, help=TRAIN_HELP[item.name] + shown, **extra)
    train.add_argument("--export", metavar="FORMATS", help="after training, export these formats "
                       "as export.sh does (comma-separated: tflite, tflite-int8, coreml)")

    guess = commands.add_parser("guess", help="print the scores of every label for images")
    guess.add_argument("dir", type=Path, help="the tf_files folder holding the trained graph")
    guess.add_argument("images", type=Path, nargs="+", help="image files to classify")
    guess.add_argument("--json", action="store_true", help="print JSON instead of text")
    _graph_flags(guess)
    _tta_flag(guess)

    sort = commands.add_parser("sort", help="copy each image of SRC to DEST/<label>--<score>.<ext>")
    sort.add_argument("dir", type=Path, help="the tf_files folder holding the trained graph")
    sort.add_argument("source", type=Path, help="folder of images to sort (only read)")
    sort.add_argument("dest", type=Path, help="folder to copy into (created if missing)")
    _graph_flags(sort)
    _engine_flags(sort)

    evaluate = commands.add_parser(
        "evaluate", help="score a folder-per-class set and write an evaluation report",
        description="Score LABELLED_DIR/<label>/ images with the classifier in DIR and write "
        "report.json, report.html and figures into OUT_DIR (default: DIR/report-<name of "
        "LABELLED_DIR>). Our own report files in OUT_DIR are replaced; nothing else is touched.",
    )
    evaluate.add_argument("dir", type=Path, help="the tf_files folder holding the trained graph")
    evaluate.add_argument("labelled", type=Path, help="folder of label folders of images (only read)")
    evaluate.add_argument("out", type=Path, nargs="?", help="report folder (created if missing)")
    _graph_flags(evaluate)
    _tta_flag(evaluate)
    _engine_flags(evaluate)

    export = commands.add_parser(
        "export", help="write the classifier in DIR as TFLite (float, int8) and Core ML",
        description="Export the classifier trained in DIR (without retraining) and print, and "
        "write into DIR/report, each format's accuracy on the test split and its agreement "
        "with the .pb.",
    )
    export.add_argument("dir", type=Path, help="the tf_files folder holding the trained graph")
    export.add_argument("--format", default=",".join(EXPORT_FORMATS),
                        help="comma-separated formats (default: all of "
                        f"{', '.join(EXPORT_FORMATS)})")
    export.add_argument("--output_graph", default="retrained_graph.pb",
                        help="graph inside DIR (default: retrained_graph.pb)")
    export.add_argument("--output_labels", default="retrained_labels.txt",
                        help="labels inside DIR (default: retrained_labels.txt)")
    export.add_argument("--final_tensor_name", default="final_result",
                        help="output tensor name (default: final_result)")
    export.add_argument("--trust_graph", action="store_true",
                        help="export a graph holding operations that can do more than compute")

    _serve_parser(commands)

    fetch = commands.add_parser("fetch-module", help="download a TF Hub module into the cache")
    fetch.add_argument("handle", help="TF Hub module URL or handle")
    return parser


EXPORT_FORMATS = ("tflite", "tflite-int8", "coreml")  # export/formats.py's FORMATS, without importing it
RUN_MODELS = ("pb", "saved_model", "tflite", "tflite-int8")  # serve/models.py's MODELS


def _serve_parser(commands) -> None:
    from tensorguess.serve.limits import Limits

    serve = commands.add_parser(
        "serve", help="serve the classifier over HTTP: an API and a page with a live camera",
        description="Serve the classifier in DIR over HTTP: POST /predict, TF Serving's "
        "POST /v1/models/NAME:predict, GET /labels, GET /healthz, and a page at /.")
    serve.add_argument("dir", type=Path, help="the tf_files folder holding the trained graph")
    serve.add_argument("--port", type=int, default=8080, help="TCP port (default: 8080; 0: any free one)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0: every "
                       "network)")
    limits = Limits()
    serve.add_argument("--queue_size", type=int, default=limits.queue_size,
                       help="photos waiting to be scored before requests get 503 "
                       f"(default: {limits.queue_size})")
    serve.add_argument("--batch_wait_ms", type=float, default=limits.batch_wait_ms,
                       help="how long a photo waits for others to be scored with it "
                       f"(default: {limits.batch_wait_ms:g})")
    serve.add_argument("--max_body_mb", type=float, default=limits.max_body_mb,
                       help=f"largest request body in MB (default: {limits.max_body_mb:g})")
    serve.add_argument("--timeout", type=float, default=limits.timeout_s,
                       help=f"seconds to receive a request and to score it (default: {limits.timeout_s:g})")
    serve.add_argument("--header_timeout", type=float, default=limits.header_timeout_s,
                       help="seconds a connection has to send a request's headers, after it opens or after "
                       f"its last answer; then it is closed (default: {limits.header_timeout_s:g})")
    serve.add_argument("--allowed_hosts", default="",
                       help="more host names the server answers to, separated by commas ('*': any), for "
                       "a name of this machine or a proxy in front (default: only the addresses it "
                       "listens on; on 127.0.0.1 also localhost and [::1])")
    serve.add_argument("--no_token", action="store_true",
                       help="serve beyond this machine (--host other than loopback) without a token; "
                       "otherwise the token is taken from TG_SERVE_TOKEN, and clients send "
                       "'Authorization: Bearer TOKEN' (the page: open /?token=TOKEN once)")
    # The address users reach the server at, when it differs from --host: serve.sh passes the host
    # side of Docker's published port, the container listening on 0.0.0.0.
    serve.add_argument("--shown_host", help=argparse.SUPPRESS)
    _graph_flags(serve)


def _graph_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="pb", choices=RUN_MODELS,
                        help="format to score with: pb (default), saved_model, or the TFLite "
                        "models export.sh writes (tflite, tflite-int8)")
    parser.add_argument("--output_graph", default="retrained_graph.pb",
                        help="graph inside DIR (default: retrained_graph.pb)")
    parser.add_argument("--output_labels", default="retrained_labels.txt",
                        help="labels inside DIR (default: retrained_labels.txt)")
    parser.add_argument("--final_tensor_name", default="final_result",
                        help="output tensor name (default: final_result)")
    parser.add_argument("--batch_size", type=int, default=32, help="images per batch")
    parser.add_argument("--trust_graph", action="store_true",
                        help="run the graph even if it holds operations that can do more than "
                        "compute (read or write files...); only for a graph whose maker you trust")


def _engine_flags(parser: argparse.ArgumentParser) -> None:
    for name in ("engine", "ray_address", "ray_photos"):
        default = getattr(TrainConfig(), name)
        parser.add_argument(f"--{name}", default=default, choices=CHOICES.get(name),
                            help=TRAIN_HELP[name] + (f" (default: {default})" if default else ""))


def _tta_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: score each photo as the mean over itself, its "
                        "mirror image and 4 corner crops (6x the work; see docs/benchmarks.md)")


def train_config(args: argparse.Namespace) -> TrainConfig:
    """Flags over TFHUB_MODULE over defaults; relative paths inside DIR."""
    base = args.dir
    cfg = TrainConfig()
    env_module = os.environ.get("TFHUB_MODULE")
    if env_module:
        cfg.tfhub_module = env_module
    for item in fields(TrainConfig):
        value = getattr(args, item.name)
        if item.name in IN_DIR:
            chosen = value if value is not None else getattr(cfg, item.name)
            value = None if chosen is None else base / chosen
        if value is not None and value is not False:
            setattr(cfg, item.name, value)
    try:
        cfg.check()
    except SettingError as error:
        raise UsageError(str(error)) from error
    return cfg


def require_dir(path: Path) -> None:
    if not path.is_dir():
        raise UsageError(f"{path} is not a folder; give the tf_files folder as the first argument")


def run_train(args) -> int:
    from tensorguess.retrain import retrain

    require_dir(args.dir)
    chosen = _export_formats(args.export) if args.export else None  # checked before training
    cfg = train_config(args)
    if cfg.engine == "ray":
        from tensorguess.engine.select import require_ray

        require_ray()  # before a photo is read
    retrain(cfg)
    if chosen:
        from tensorguess.deploy import export

        export(args.dir, chosen, graph=str(cfg.output_graph), labels_name=str(cfg.output_labels),
               final_tensor_name=cfg.final_tensor_name,
               report_dir=cfg.report_dir,
               warn=lambda line: print(line, file=sys.stderr, flush=True))
    return 0


def _export_formats(text: str) -> list[str]:
    from tensorguess.export.formats import ExportError, parse_formats

    try:
        return parse_formats(text)
    except ExportError as error:
        raise UsageError(str(error)) from error


def run_export(args) -> int:
    from tensorguess.deploy import export

    require_dir(args.dir)
    export(args.dir, _export_formats(args.format), args.output_graph, args.output_labels,
           args.final_tensor_name, trust_graph=args.trust_graph,
           warn=lambda line: print(line, file=sys.stderr, flush=True))
    return 0


def _classifier(args):
    from tensorguess.serve.models import open_classifier

    require_dir(args.dir)
    if args.batch_size < 1:
        raise UsageError(f"--batch_size must be at least 1, not {args.batch_size}")
    engine = getattr(args, "engine", "local")
    if engine == "ray":
        from tensorguess.engine.select import require_ray

        require_ray()  # before the graph is loaded
        if args.model != "pb":
            raise UsageError(f"--engine ray scores with --model pb, not {args.model}")
    classifier = open_classifier(args.dir, args.model, args.output_graph, args.output_labels,
                                 args.final_tensor_name, trust_graph=args.trust_graph,
                                 tta=getattr(args, "tta", False))
    if engine != "ray":
        return classifier
    from tensorguess.engine.ray_engine import RayEngine
    from tensorguess.engine.select import ray_address

    try:
        cluster = RayEngine(ray_address(args.ray_address), args.ray_photos,
                            warn=lambda line: print(line, file=sys.stderr, flush=True))
    except BaseException:
        classifier.close()
        raise
    return cluster.classifier(classifier, args.dir / args.output_graph, args.dir / args.output_labels,
                              args.final_tensor_name, args.trust_graph, getattr(args, "tta", False))


def run_guess(args) -> int:
    from tensorguess.data.images import Skipped, printable

    failed = 0
    documents = []
    with _classifier(args) as classifier:
        for index, result in enumerate(classifier.score_files(args.images, args.batch_size)):
            if isinstance(result, Skipped):
                failed += 1
                print(result.warning(), file=sys.stderr)
                documents.append({"image": str(result.path), "error": result.reason})
                continue
            ranked = classifier.ranked(result.scores)
            if args.json:
                documents.append({"image": str(result.path), "label": ranked[0][0],
                                  "score": ranked[0][1], "scores": dict(ranked)})
                continue
            if len(args.images) > 1:
                print(f"{'' if index == 0 else chr(10)}==> {printable(result.path)} <==")
            for label, score in ranked:
                print(f"{label} (score = {score:.5f})")
            sys.stdout.flush()
    if args.json:
        print(strict_json.dumps(documents, indent=1))
    return EXIT_FAILED if failed else 0


def run_sort(args) -> int:
    from tensorguess.serve.sort import MANIFEST, SortError, check_dest, sort_folder

    if not args.source.is_dir():
        raise UsageError(f"source folder {args.source} does not exist or is not a folder")
    if args.source.resolve() == args.dest.resolve():
        raise UsageError("SRC and DEST must be different folders: sources are never touched")
    try:
        check_dest(args.dest)  # before the graph is loaded
    except SortError as error:
        raise UsageError(str(error)) from error
    with _classifier(args) as classifier:
        summary = sort_folder(classifier, args.source, args.dest, args.batch_size,
                              warn=lambda line: print(line, file=sys.stderr, flush=True))
    counts = ", ".join(f"{label} {n}" for label, n in sorted(summary.per_label.items()))
    if summary.already_sorted:
        print(f"Skipped {summary.already_sorted} photos of {args.source} already sorted into "
              f"{args.dest} by this classifier (recorded in {MANIFEST})")
    print(f"Copied {summary.copied} images into {args.dest}" + (f" ({counts})" if counts else "")
          + (f"; {summary.unreadable} unreadable, listed in {args.dest / MANIFEST}"
             if summary.unreadable else ""))
    return 0


def run_serve(args) -> int:
    import math

    from tensorguess.serve import server
    from tensorguess.serve.http_app import build_app
    from tensorguess.serve.limits import Limits

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be a TCP port, 0 to 65535, not {args.port}")
    for flag, value, least in (("--queue_size", args.queue_size, 1),
                               ("--batch_wait_ms", args.batch_wait_ms, 0),
                               ("--max_body_mb", args.max_body_mb, 0.001),
                               ("--timeout", args.timeout, 0.001),
                               ("--header_timeout", args.header_timeout, 0.001)):
        if not (math.isfinite(value) and value >= least):
            raise UsageError(f"{flag} must be at least {least:g}, not {value:g}")
    limits = Limits(max_batch=args.batch_size, batch_wait_ms=args.batch_wait_ms, queue_size=args.queue_size,
                    max_body_mb=args.max_body_mb, timeout_s=args.timeout,
                    header_timeout_s=args.header_timeout)
    access = _serve_access(args)
    with _classifier(args) as classifier:
        app = build_app(classifier, limits, access=access)
        server.run(app, args.host, args.port, str(args.dir / args.output_graph),
                   say=lambda line: print(line, flush=True),
                   warn=lambda line: print(line, file=sys.stderr, flush=True),
                   shown_host=args.shown_host, timeout_s=args.timeout, header_timeout_s=args.header_timeout,
                   needs_token=access.token is not None)
    return 0


def _serve_access(args):
    """serve's Access: the hosts it answers to, and its token (TG_SERVE_TOKEN), which a server
    reached beyond this machine must have unless --no_token says otherwise."""
    from tensorguess.serve.access import TOKEN_ENV, Access, AccessError, is_loopback

    reached_at = args.shown_host or args.host  # in Docker, the address the port is published on
    token = os.environ.get(TOKEN_ENV) or None
    if token and args.no_token:
        raise UsageError(f"{TOKEN_ENV} is set and --no_token is given; choose one")
    if not token and not args.no_token and not is_loopback(reached_at):
        raise UsageError(f"listening on {reached_at}, beyond this machine, needs a token: set {TOKEN_ENV} "
                         "(clients send 'Authorization: Bearer TOKEN'; the page: open /?token=TOKEN once), "
                         "or give --no_token to answer anyone who can reach it")
    hosts = tuple(host for host in (args.host, args.shown_host) if host)
    allowed = tuple(name.strip() for name in args.allowed_hosts.split(",") if name.strip())
    try:
        return Access(hosts=hosts, allowed_hosts=allowed, token=token)
    except AccessError as problem:
        raise UsageError(str(problem)) from None


def run_evaluate(args) -> int:
    from tensorguess.report.document import check_out_dir, console_lines, write
    from tensorguess.report.evaluate import evaluate_folder

    if not args.labelled.is_dir() and not args.labelled.is_file():
        raise UsageError(f"labelled folder {args.labelled} does not exist or is not a folder "
                         "(or a labels CSV)")
    labelled = args.labelled.resolve()
    is_csv = labelled.is_file()
    photos = labelled.parent if is_csv else labelled
    out = (args.out or args.dir / f"report-{labelled.stem if is_csv else labelled.name}").resolve()
    if out.is_relative_to(photos):
        raise UsageError(f"the report folder {out} is inside {photos}; choose one outside it")
    check_out_dir(out)
    train_log, log_path = _train_log(args.dir)
    with _classifier(args) as classifier:
        from tensorguess.serve.models import model_path

        evaluation = evaluate_folder(classifier, labelled,
                                     str(model_path(args.dir, args.model, args.output_graph)),
                                     args.batch_size,
                                     warn=lambda line: print(line, file=sys.stderr, flush=True),
                                     train_log=train_log, train_log_path=log_path)
    report = write(out, evaluation)
    accuracy = "n/a" if report["accuracy"] is None else f"{report['accuracy'] * 100:.1f}%"
    print(f"Evaluation accuracy = {accuracy} (N={report['n']})")
    for line in console_lines(report):
        print(line)
    if report["unreadable_files"]:
        print(f"{len(report['unreadable_files'])} unreadable file(s) skipped, listed in report.json")
    print(f"Wrote the report into {out}: report.html, report.json, confusion_matrix.png, reliability.png")
    if report["n"] == 0:
        print(f"tensor-guess: no photo in {labelled} could be scored "
              f"({len(report['unreadable_files'])} unreadable); nothing was evaluated", file=sys.stderr)
        return 1
    return 0


def _train_log(folder: Path) -> tuple[dict | None, Path]:
    """DIR/train_log.json, if train.sh wrote one there: what evaluate checks leaks against."""
    from tensorguess.data.images import open_regular  # Pillow only for the commands that read photos

    path = folder / "train_log.json"
    try:
        with open_regular(path) as handle:
            log = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        return None, path
    return (log if isinstance(log, dict) else None), path


def run_fetch(args) -> int:
    from tensorguess.features.modules import resolve_path

    print(resolve_path(args.handle))
    return 0


class Terminated(BaseException):
    """SIGTERM (docker stop, systemd, kill): ended like Ctrl-C, with one line and no traceback."""


def _terminate(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    stderr_noise.quiet()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(argv: list[str] | None) -> int:
    Parser.argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from tensorguess.data.dataset import DatasetError
    from tensorguess.engine.select import EngineError
    from tensorguess.export.coreml import CoreMLCheckError
    from tensorguess.export.formats import ExportError
    from tensorguess.features.modules import ModuleError
    from tensorguess.head.fine_tune import FineTuneError
    from tensorguess.head.train import TrainingDiverged
    from tensorguess.publish import PublishError
    from tensorguess.report.document import ReportError
    from tensorguess.report.evaluate import EvaluationError
    from tensorguess.serve.predict import ClassifierError
    from tensorguess.serve.server import ServeError
    from tensorguess.serve.sort import SortError

    handlers = {"train": run_train, "guess": run_guess, "sort": run_sort,
                "evaluate": run_evaluate, "export": run_export, "serve": run_serve,
                "fetch-module": run_fetch}
    try:
        return handlers[args.command](args)
    except UsageError as error:
        return fail(str(error), EXIT_USAGE)
    except (DatasetError, ModuleError, ClassifierError, EvaluationError, ReportError, SortError,
            TrainingDiverged, ExportError, CoreMLCheckError, ServeError, FineTuneError,
            EngineError, PublishError) as error:
        return fail(str(error))
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except Terminated:
        return fail("terminated", 143)


if __name__ == "__main__":
    sys.exit(main())
