"""export: write the classifier in DIR in other formats (TFLite float and int8, Core ML)."""

from __future__ import annotations

import argparse

from tensorguess.commands.common import dir_argument, model_of, warn
from tensorguess.errors import UsageError
from tensorguess.model_dir import EXPORTS, FINAL_TENSOR, GRAPH, LABELS

DESCRIPTION = ("Export the classifier trained in DIR (without retraining) and print, and write into "
               "DIR/report, each format's accuracy on the test split and its agreement with the .pb.")
FORMATS = tuple(EXPORTS)


def add_arguments(export: argparse.ArgumentParser) -> None:
    dir_argument(export)
    export.add_argument("--format", default=",".join(FORMATS),
                        help=f"comma-separated formats (default: all of {', '.join(FORMATS)})")
    export.add_argument("--output_graph", default=GRAPH,
                        help=f"graph inside DIR (default: {GRAPH})")
    export.add_argument("--output_labels", default=LABELS,
                        help=f"labels inside DIR (default: {LABELS})")
    export.add_argument("--final_tensor_name", default=FINAL_TENSOR,
                        help=f"output tensor name (default: {FINAL_TENSOR})")
    export.add_argument("--trust_graph", action="store_true",
                        help="export a graph holding operations that can do more than compute")


def export_formats(text: str) -> list[str]:
    """--format's list, checked (a UsageError names what is wrong)."""
    from tensorguess.export.formats import ExportError, parse_formats

    try:
        return parse_formats(text)
    except ExportError as error:
        raise UsageError(str(error)) from error


def run(args) -> int:
    kind = model_of(args)
    kind.function("export")(args.dir, export_formats(args.format), args.output_graph, args.output_labels,
                            args.final_tensor_name, trust_graph=args.trust_graph, warn=warn)
    return 0
