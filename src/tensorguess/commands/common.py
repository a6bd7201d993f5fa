"""What several commands share: the flags that open a model, and opening it by its kind."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tensorguess import kinds
from tensorguess.commands.settings import setting, setting_help
from tensorguess.errors import UsageError
from tensorguess.model_dir import FINAL_TENSOR, GRAPH, LABELS, SCORED_FORMATS


def warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def require_dir(path: Path) -> None:
    if not path.is_dir():
        raise UsageError(f"{path} is not a folder; give the tf_files folder as the first argument")


def dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, help="the tf_files folder holding the trained graph")


def graph_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="pb", choices=SCORED_FORMATS,
                        help="format to score with: pb (default), saved_model, or the TFLite "
                        "models export.sh writes (tflite, tflite-int8)")
    parser.add_argument("--output_graph", default=GRAPH,
                        help=f"graph inside DIR (default: {GRAPH})")
    parser.add_argument("--output_labels", default=LABELS,
                        help=f"labels inside DIR (default: {LABELS})")
    parser.add_argument("--final_tensor_name", default=FINAL_TENSOR,
                        help=f"output tensor name (default: {FINAL_TENSOR})")
    parser.add_argument("--batch_size", type=int, default=32, help="images per batch")
    parser.add_argument("--trust_graph", action="store_true",
                        help="run the graph even if it holds operations that can do more than "
                        "compute (read or write files...); only for a graph whose maker you trust")


def engine_flags(parser: argparse.ArgumentParser) -> None:
    """train's --engine, --ray_address and --ray_photos, for scoring."""
    for name in ("engine", "ray_address", "ray_photos"):
        item = setting(name)
        parser.add_argument(f"--{name}", default=item.default, choices=item.metadata["choices"],
                            help=setting_help(item))


def tta_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: score each photo as the mean over itself, its "
                        "mirror image and 4 corner crops (6x the work; see docs/benchmarks.md)")


def model_of(args) -> kinds.Kind:
    """The kind of the model in DIR (a folder, or a UsageError)."""
    require_dir(args.dir)
    return kinds.of_model(args.dir)


def open_scorer(args, kind: kinds.Kind):
    """The scorer of the model in DIR, opened by its kind's function (on Ray with --engine ray)."""
    if args.batch_size < 1:
        raise UsageError(f"--batch_size must be at least 1, not {args.batch_size}")
    engine = getattr(args, "engine", "local")
    if engine == "ray":
        from tensorguess.engine.choice import require_ray

        require_ray()  # before the graph is loaded
        if args.model != "pb":
            raise UsageError(f"--engine ray scores with --model pb, not {args.model}")
    classifier = kind.function("open_model")(args.dir, args.model, args.output_graph, args.output_labels,
                                             args.final_tensor_name, trust_graph=args.trust_graph,
                                             tta=getattr(args, "tta", False))
    if engine != "ray":
        return classifier
    from tensorguess.engine.choice import ray_address
    from tensorguess.engine.ray_engine import RayEngine

    try:
        cluster = RayEngine(ray_address(args.ray_address), args.ray_photos, warn=warn)
    except BaseException:
        classifier.close()
        raise
    return cluster.classifier(classifier, args.dir / args.output_graph, args.dir / args.output_labels,
                              args.final_tensor_name, args.trust_graph, getattr(args, "tta", False))
